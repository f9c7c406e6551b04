"""Features: known values on a hand-made frame, equality with the Handbook's pandas code,
point-in-time correctness, late labels, and the daily snapshots for Feast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level4_fraud import schema
from level4_fraud.data import late_labels_from
from level4_fraud.features import (
    EVENT_TIMESTAMP,
    FEATURES_BASELINE,
    SECONDS_CAP,
    TERMINAL_FRAUD_TIMES,
    TERMINAL_RECENCY_FEATURES,
    daily_snapshots,
    feature_names,
    transaction_features,
)
from level4_fraud.simulate import SimulatorConfig, simulate

D0 = pd.Timestamp("2018-04-01")  # a Sunday


def _tiny() -> pd.DataFrame:
    """Five transactions whose windows are worked out by hand in the tests below."""
    rows = [
        # id, when, customer, terminal, amount, fraud
        (0, D0 + pd.Timedelta(hours=5), 1, 10, 10.0, 0),
        (1, D0 + pd.Timedelta(hours=20), 1, 10, 30.0, 1),
        (2, D0 + pd.Timedelta(days=2, hours=9), 1, 11, 20.0, 0),
        (3, D0 + pd.Timedelta(days=8, hours=12), 1, 10, 40.0, 0),
        (4, D0 + pd.Timedelta(days=9, hours=9), 2, 10, 50.0, 0),
    ]
    df = pd.DataFrame(
        rows, columns=["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]
    )
    df["TX_TIME_SECONDS"] = ((df.TX_DATETIME - D0) // pd.Timedelta(seconds=1)).astype("int64")
    df["TX_TIME_DAYS"] = df.TX_TIME_SECONDS // 86400
    df["TX_FRAUD_SCENARIO"] = df.TX_FRAUD
    return df


def test_known_values_on_a_hand_made_frame() -> None:
    f = transaction_features(_tiny(), windows=(1, 7), delay_days=7)
    assert list(f.columns) == feature_names((1, 7))
    col = lambda name: f[name].tolist()  # noqa: E731
    assert col("TX_DURING_WEEKEND") == [1, 1, 0, 0, 0]  # 2018-04-01 is a Sunday
    assert col("TX_DURING_NIGHT") == [1, 0, 0, 0, 0]  # hour <= 6
    assert col("TX_HOUR") == [5, 20, 9, 12, 9]
    # card windows (t - w, t], current included
    assert col("CUSTOMER_ID_NB_TX_1DAY_WINDOW") == [1, 2, 1, 1, 1]
    assert col("CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW") == [10, 20, 20, 40, 50]
    assert col("CUSTOMER_ID_NB_TX_7DAY_WINDOW") == [1, 2, 3, 2, 1]
    assert col("CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW") == [10, 20, 20, 30, 50]
    # terminal windows (t - 7 - w, t - 7]: id3 (day 8 12:00) sees (day 0 12:00, day 1 12:00] for
    # w = 1 -> id1 (a fraud); id4 (day 9 09:00) sees nothing for w = 1, id0 and id1 for w = 7.
    assert col("TERMINAL_ID_NB_TX_1DAY_WINDOW") == [0, 0, 0, 1, 0]
    assert col("TERMINAL_ID_RISK_1DAY_WINDOW") == [0, 0, 0, 1.0, 0]
    assert col("TERMINAL_ID_NB_TX_7DAY_WINDOW") == [0, 0, 0, 2, 2]
    assert col("TERMINAL_ID_RISK_7DAY_WINDOW") == [0, 0, 0, 0.5, 0.5]
    # request-time: previous card transactions over the longest window (7 days), current excluded
    assert col("AMOUNT_TO_CUSTOMER_MEAN") == [1.0, 3.0, 1.0, 2.0, 1.0]
    assert col("SECONDS_SINCE_LAST_TX") == [
        SECONDS_CAP,
        15 * 3600,
        37 * 3600,
        (6 * 24 + 3) * 3600,
        SECONDS_CAP,
    ]
    # fraud recency over the longest delayed window (t - 14, t - 7]: id3 (day 8 12:00) and id4
    # (day 9 09:00) see id1 (day 0 20:00, terminal 10), the only fraud; the rest see none: 7 + 7
    last, first = col("TERMINAL_ID_DAYS_SINCE_LAST_FRAUD"), col("TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD")
    assert last == first == pytest.approx([14, 14, 14, 7 + 16 / 24, 8 + 13 / 24])


def test_habit_features_known_values_on_a_hand_made_frame() -> None:
    """Habit window (t - 2 days - 7 days, t - 2 days]: id2 (day 2 09:00) sees id0 only; id3
    (day 8 12:00) sees id0, id1, id2 (amounts 10, 30, 20: mean 20, sample std 10)."""
    f = transaction_features(_tiny(), windows=(1, 7), habit=(2, 7))
    assert f["AMOUNT_TO_CUSTOMER_HABIT"].tolist() == [1.0, 1.0, 2.0, 2.0, 1.0]
    assert f["AMOUNT_ZSCORE_CUSTOMER_HABIT"].tolist() == [0.0, 0.0, 0.0, 2.0, 0.0]
    # since the habit ended, (t - 2 days, t): id3 sees nothing (day 6 12:00 on); id2 has a habit
    # mean of 10 and sees id1 (30 > 3 x 10 is false: equal is not above)
    assert f["CUSTOMER_ID_NB_LARGE_SINCE_HABIT"].tolist() == [0, 0, 0, 0, 0]
    bigger = _tiny()
    bigger.loc[1, "TX_AMOUNT"] = 31.0
    g = transaction_features(bigger, windows=(1, 7), habit=(2, 7))
    assert g["CUSTOMER_ID_NB_LARGE_SINCE_HABIT"].tolist() == [0, 0, 1, 0, 0]
    assert "AMOUNT_TO_CUSTOMER_HABIT" not in transaction_features(_tiny(), windows=(1,), habit=None)


def test_habit_features_match_a_brute_force_window(sim) -> None:
    """Every row's habit against its card's transactions in (t - lag - days, t - lag], by hand."""
    tx, _, _ = sim
    lag, days = 3, 10
    f = transaction_features(tx, habit=(lag, days))
    t = tx[schema.TX_DATETIME].to_numpy()
    card, amount = tx[schema.CUSTOMER_ID].to_numpy(), tx[schema.TX_AMOUNT].to_numpy()
    rng = np.random.default_rng(0)
    checked = 0
    for i in rng.choice(len(tx), 400, replace=False):
        end = t[i] - np.timedelta64(lag, "D")
        past = amount[(card == card[i]) & (t <= end) & (t > end - np.timedelta64(days, "D"))]
        if not len(past):
            assert f["AMOUNT_TO_CUSTOMER_HABIT"].iloc[i] == 1.0
            assert f["AMOUNT_ZSCORE_CUSTOMER_HABIT"].iloc[i] == 0.0
        if len(past) >= 2:
            checked += 1
            z = (amount[i] - past.mean()) / max(past.std(ddof=1), 1.0)
            assert f["AMOUNT_TO_CUSTOMER_HABIT"].iloc[i] == pytest.approx(amount[i] / past.mean())
            assert f["AMOUNT_ZSCORE_CUSTOMER_HABIT"].iloc[i] == pytest.approx(z, rel=1e-6, abs=1e-9)
        since = (card == card[i]) & (t > end) & (np.arange(len(tx)) < i)
        large = (amount[since] > 3.0 * past.mean()).sum() if len(past) else 0
        assert f["CUSTOMER_ID_NB_LARGE_SINCE_HABIT"].iloc[i] == large
    assert checked > 200
    assert f["CUSTOMER_ID_NB_LARGE_SINCE_HABIT"].max() > 0  # the count was exercised


def test_result_is_indexed_like_the_input_whatever_its_order() -> None:
    tiny = _tiny()
    shuffled = tiny.sample(frac=1, random_state=1).set_index(pd.Index([50, 40, 30, 20, 10]))
    f = transaction_features(shuffled, windows=(1, 7))
    assert f.index.tolist() == [50, 40, 30, 20, 10]
    expected = transaction_features(tiny, windows=(1, 7))
    by_id = f.set_index(shuffled[schema.TRANSACTION_ID].to_numpy()).sort_index()
    pd.testing.assert_frame_equal(by_id.reset_index(drop=True), expected.reset_index(drop=True))


def test_distance_from_home_with_the_side_tables() -> None:
    customers = pd.DataFrame(
        {"CUSTOMER_ID": [1, 2], "x_customer_id": [0.0, 10.0], "y_customer_id": [0.0, 10.0]}
    )
    terminals = pd.DataFrame(
        {"TERMINAL_ID": [10, 11], "x_terminal_id": [3.0, 0.0], "y_terminal_id": [4.0, 1.0]}
    )
    f = transaction_features(_tiny(), windows=(1,), customers=customers, terminals=terminals)
    assert f["DISTANCE_FROM_HOME"].tolist() == pytest.approx([5, 5, 1, 5, np.hypot(7, 6)])


def test_richer_field_features_known_values() -> None:
    tiny = _tiny()
    tiny["CHANNEL"] = pd.Categorical(["pos", "ecom", "ecom", "ecom", "atm"])
    tiny["DEVICE_ID"] = [-1, 7, 7, 8, -1]
    tiny["COUNTRY"] = pd.Categorical(["FR", "FR", "FR", "US", "DE"])
    tiny["MERCHANT_CATEGORY"] = pd.Categorical(["grocery", "online_retail", "online_retail", "travel", "atm"])
    tiny["CURRENCY"] = pd.Categorical(["EUR", "EUR", "EUR", "USD", "EUR"])
    tiny.loc[1, "TX_DATETIME"] = D0 + pd.Timedelta(hours=5, minutes=30)  # within the hour of id0
    tiny.loc[0, "TX_AMOUNT"] = 2.0
    tiny.loc[1, "TX_AMOUNT"] = 1.5
    customers = pd.DataFrame(
        {
            "CUSTOMER_ID": [1, 2],
            "x_customer_id": [0.0, 0.0],
            "y_customer_id": [0.0, 0.0],
            "home_country": ["FR", "DE"],
        }
    )
    terminals = pd.DataFrame(
        {"TERMINAL_ID": [10, 11], "x_terminal_id": [0.0, 0.0], "y_terminal_id": [0.0, 0.0]}
    )
    f = transaction_features(tiny, windows=(1,), customers=customers, terminals=terminals, categoricals=True)
    assert f["IS_ECOM"].tolist() == [0, 1, 1, 1, 0]
    assert f["IS_ATM"].tolist() == [0, 0, 0, 0, 1]
    assert f["NEW_DEVICE"].tolist() == [0, 1, 0, 1, 0]  # card-present rows have no device
    assert f["NEW_COUNTRY"].tolist() == [1, 0, 0, 1, 1]
    assert f["NEW_TERMINAL"].tolist() == [1, 0, 1, 0, 1]
    assert f["FOREIGN_COUNTRY"].tolist() == [0, 0, 0, 1, 0]
    assert f["CUSTOMER_ID_NB_TX_1H_WINDOW"].tolist() == [1, 2, 1, 1, 1]
    assert f["SMALL_AMOUNT_BURST_1H"].tolist() == [1, 2, 0, 0, 0]
    assert f["CHANNEL"].astype(str).tolist() == ["pos", "ecom", "ecom", "ecom", "atm"]


def _handbook_reference(tx: pd.DataFrame, windows=(1, 7, 30), delay=7) -> pd.DataFrame:
    """The Handbook's own feature code (chapter 3.4): pandas rolling per customer and terminal."""
    tx = tx.copy()

    def customer(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values("TX_DATETIME", kind="mergesort")
        g.index = g.TX_DATETIME
        for w in windows:
            s = g["TX_AMOUNT"].rolling(f"{w}d").sum()
            n = g["TX_AMOUNT"].rolling(f"{w}d").count()
            g[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = list(n)
            g[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = list(s / n)
        return g.reset_index(drop=True)

    def terminal(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values("TX_DATETIME", kind="mergesort")
        g.index = g.TX_DATETIME
        nf_d = g["TX_FRAUD"].rolling(f"{delay}d").sum()
        nt_d = g["TX_FRAUD"].rolling(f"{delay}d").count()
        for w in windows:
            nf = g["TX_FRAUD"].rolling(f"{delay + w}d").sum() - nf_d
            nt = g["TX_FRAUD"].rolling(f"{delay + w}d").count() - nt_d
            g[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = list(nt)
            g[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = list(nf / nt)
        return g.reset_index(drop=True).fillna(0)

    parts = [customer(g) for _, g in tx.groupby("CUSTOMER_ID")]
    out = pd.concat(parts).sort_values("TRANSACTION_ID")
    parts = [terminal(g) for _, g in out.groupby("TERMINAL_ID")]
    out = pd.concat(parts).sort_values("TRANSACTION_ID")
    out["TX_DURING_WEEKEND"] = (out.TX_DATETIME.dt.weekday >= 5).astype(int)
    out["TX_DURING_NIGHT"] = (out.TX_DATETIME.dt.hour <= 6).astype(int)
    return out.reset_index(drop=True)[FEATURES_BASELINE]


def test_equals_the_handbooks_pandas_rolling_code() -> None:
    cfg = SimulatorConfig(handbook=True, n_customers=80, n_terminals=120, nb_days=45, seed=5)
    tx, _, _ = simulate(cfg)
    ours = transaction_features(tx)[FEATURES_BASELINE]
    ref = _handbook_reference(tx)
    np.testing.assert_allclose(ours.to_numpy(dtype=float), ref.to_numpy(dtype=float), rtol=1e-9, atol=1e-9)
    assert ours["TERMINAL_ID_RISK_30DAY_WINDOW"].max() > 0  # the comparison covered real risks


@pytest.fixture(scope="module")
def sim() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    cfg = SimulatorConfig(
        n_customers=200, n_terminals=400, nb_days=50, seed=11, compromised_terminals_per_day=20
    )
    return simulate(cfg)


def test_appending_future_transactions_changes_no_earlier_row(sim) -> None:
    tx, customers, terminals = sim
    cut = tx[schema.TX_DATETIME].searchsorted(pd.Timestamp("2018-04-30 13:00"))
    full = transaction_features(tx, customers=customers, terminals=terminals)
    past = transaction_features(tx.iloc[:cut], customers=customers, terminals=terminals)
    pd.testing.assert_frame_equal(full.iloc[:cut], past)
    # and the future really does feed later rows (the check above could not pass vacuously)
    assert not full.iloc[cut:]["CUSTOMER_ID_NB_TX_30DAY_WINDOW"].equals(
        transaction_features(tx.iloc[cut:])["CUSTOMER_ID_NB_TX_30DAY_WINDOW"]
    )


def test_same_second_later_transaction_is_not_seen() -> None:
    tiny = _tiny()
    twin = tiny.iloc[[3]].assign(TRANSACTION_ID=5, TX_AMOUNT=1000.0)  # same card, same second, after id3
    f = transaction_features(pd.concat([tiny, twin], ignore_index=True), windows=(1,))
    assert f["CUSTOMER_ID_NB_TX_1DAY_WINDOW"].tolist() == [1, 2, 1, 1, 1, 2]
    assert f["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"].tolist()[3] == 40.0


def test_changing_labels_inside_the_delay_changes_no_feature(sim) -> None:
    tx, _, _ = sim
    t_cut = pd.Timestamp("2018-05-01")
    base = transaction_features(tx)
    flipped = tx.copy()
    recent = flipped[schema.TX_DATETIME] > t_cut - pd.Timedelta(days=7)
    flipped.loc[recent, schema.TX_FRAUD] = 1 - flipped.loc[recent, schema.TX_FRAUD]
    after = transaction_features(flipped)
    before_cut = (tx[schema.TX_DATETIME] <= t_cut).to_numpy()
    pd.testing.assert_frame_equal(base[before_cut], after[before_cut])
    risk = [c for c in base.columns if "RISK" in c]
    assert not base.loc[~before_cut, risk].equals(after.loc[~before_cut, risk])
    for col in TERMINAL_RECENCY_FEATURES:  # the labels do feed the recency, once known
        assert not base.loc[~before_cut, col].equals(after.loc[~before_cut, col])


def test_late_labels_known_values() -> None:
    tiny = _tiny()
    tiny["TX_FRAUD"] = tiny["TX_FRAUD"].astype(float)
    tiny.loc[1, "TX_FRAUD"] = np.nan  # id1's label is not in the folder: it comes late
    tiny[schema.LABELLED] = tiny["TX_FRAUD"].notna()
    labels = pd.DataFrame(
        {
            "TRANSACTION_ID": [1],
            "TX_DATETIME": [tiny.loc[1, "TX_DATETIME"]],
            "CUSTOMER_ID": [1],
            "TERMINAL_ID": [10],
            "TX_FRAUD": [1],
            "LABEL_AVAILABLE_FROM": [D0 + pd.Timedelta(days=9)],
        }
    )
    f = transaction_features(tiny, windows=(1, 7), labels=labels)
    # id3 (day 8 12:00): id1 is in both windows but its label arrives on day 9 -> not used;
    # id0's label (0) is known -> 7-day risk 0/1, 1-day risk: no known label -> 0
    assert f.loc[3, "TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 1 and f.loc[3, "TERMINAL_ID_RISK_1DAY_WINDOW"] == 0
    assert f.loc[3, "TERMINAL_ID_NB_TX_7DAY_WINDOW"] == 2 and f.loc[3, "TERMINAL_ID_RISK_7DAY_WINDOW"] == 0
    # id4 (day 9 09:00): the label has arrived -> 1 fraud of 2 labelled
    assert f.loc[4, "TERMINAL_ID_RISK_7DAY_WINDOW"] == 0.5
    # available exactly at the transaction's time: used ("at or after LABEL_AVAILABLE_FROM")
    at = labels.assign(LABEL_AVAILABLE_FROM=tiny.loc[3, "TX_DATETIME"])
    assert transaction_features(tiny, windows=(7,), labels=at).loc[3, "TERMINAL_ID_RISK_7DAY_WINDOW"] == 0.5
    # without the late file the unlabelled row counts as a transaction but not in the risk
    none = transaction_features(tiny, windows=(7,))
    assert (
        none.loc[4, "TERMINAL_ID_NB_TX_7DAY_WINDOW"] == 2 and none.loc[4, "TERMINAL_ID_RISK_7DAY_WINDOW"] == 0
    )
    # recency: id3 does not know id1's fraud yet (none known: 7 + 7), id4 does (day 0 20:00)
    assert f.loc[3, "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD"] == 14
    assert f.loc[4, "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD"] == pytest.approx(8 + 13 / 24)
    assert f.loc[4, "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD"] == pytest.approx(8 + 13 / 24)
    assert none.loc[4, "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD"] == 14


def test_a_late_label_is_not_used_before_it_is_available(sim) -> None:
    tx, _, _ = sim
    unlabelled = tx.assign(**{schema.TX_FRAUD: np.nan, schema.LABELLED: False})
    labels = late_labels_from(tx, delay_days=7, jitter_days=20, seed=3)
    base = transaction_features(unlabelled, labels=labels)
    t_cut = pd.Timestamp("2018-05-05 12:00")
    # flip every label that becomes available after t_cut
    later = labels[schema.LABEL_AVAILABLE_FROM] > t_cut
    flipped = labels.copy()
    flipped.loc[later, schema.TX_FRAUD] = 1 - flipped.loc[later, schema.TX_FRAUD]
    after = transaction_features(unlabelled, labels=flipped)
    upto = (tx[schema.TX_DATETIME] < t_cut).to_numpy()
    pd.testing.assert_frame_equal(base[upto], after[upto])
    risk = [c for c in base.columns if "RISK" in c]
    assert not base.loc[~upto, risk].equals(after.loc[~upto, risk])
    for col in TERMINAL_RECENCY_FEATURES:
        assert not base.loc[~upto, col].equals(after.loc[~upto, col])
    assert base.loc[upto, "TERMINAL_ID_RISK_30DAY_WINDOW"].max() > 0  # labels did arrive before t_cut
    assert base.loc[upto, "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD"].min() < 37  # and frauds among them


def test_late_labels_match_a_brute_force_count(sim) -> None:
    tx, _, _ = sim
    sub = tx[tx[schema.TX_TIME_DAYS] < 30].reset_index(drop=True)
    unlabelled = sub.assign(**{schema.TX_FRAUD: np.nan, schema.LABELLED: False})
    labels = late_labels_from(sub, delay_days=5, jitter_days=10, seed=1)
    f = transaction_features(unlabelled, windows=(7,), delay_days=7, labels=labels)
    rng = np.random.default_rng(0)
    t = sub[schema.TX_DATETIME].to_numpy()
    avail = labels.set_index(schema.TRANSACTION_ID).loc[
        sub[schema.TRANSACTION_ID], schema.LABEL_AVAILABLE_FROM
    ]
    avail = avail.to_numpy()
    fraud = sub[schema.TX_FRAUD].to_numpy()
    checked = 0
    for i in rng.choice(np.flatnonzero(sub[schema.TX_TIME_DAYS] >= 10), 300, replace=False):
        hi, lo = t[i] - np.timedelta64(7, "D"), t[i] - np.timedelta64(14, "D")
        inwin = (sub[schema.TERMINAL_ID].to_numpy() == sub.loc[i, schema.TERMINAL_ID]) & (t > lo) & (t <= hi)
        known = inwin & (avail <= t[i])
        assert f.loc[i, "TERMINAL_ID_NB_TX_7DAY_WINDOW"] == inwin.sum()
        expected = fraud[known].sum() / known.sum() if known.any() else 0.0
        assert f.loc[i, "TERMINAL_ID_RISK_7DAY_WINDOW"] == pytest.approx(expected)
        checked += int(known.any() and known.sum() < inwin.sum())
    assert checked > 5  # some windows held labels not yet available


def _random_terminals_with_late_labels(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """600 transactions on 4 terminals over 70 days, a third fraud, some at the same second.

    Half the labels are in the frame; the others come late, in any order: available from 0 to 25
    days after their transaction (so before, at and after the 7-day delay), and a few of the
    in-frame ones get an earlier late copy. Returns the frame, the late labels and, per row,
    when its label is usable (the reference's own computation, NaT when never).
    """
    rng = np.random.default_rng(seed)
    n = 600
    seconds = np.sort(rng.integers(0, 70 * 86_400, n))
    seconds[rng.choice(n - 1, 30, replace=False) + 1] = seconds[rng.choice(n - 1, 30, replace=False)]
    when = D0 + pd.to_timedelta(np.sort(seconds), unit="s")
    fraud = (rng.random(n) < 0.33).astype(float)
    tx = pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n),
            "TX_DATETIME": when,
            "CUSTOMER_ID": rng.integers(0, 50, n),
            "TERMINAL_ID": rng.integers(0, 4, n),
            "TX_AMOUNT": rng.uniform(1, 100, n),
            "TX_FRAUD": fraud,
        }
    )
    late = rng.random(n) < 0.5
    early_copy = ~late & (rng.random(n) < 0.1)
    avail = when + pd.to_timedelta(7, unit="D")
    late_from = when + pd.to_timedelta(rng.uniform(0, 25, n), unit="D")
    early_from = when + pd.to_timedelta(rng.uniform(0, 7, n), unit="D")
    tx.loc[late, "TX_FRAUD"] = np.nan
    tx[schema.LABELLED] = ~late
    rows = late | early_copy
    labels = pd.DataFrame(
        {
            "TRANSACTION_ID": tx.loc[rows, "TRANSACTION_ID"],
            "TX_FRAUD": fraud[rows].astype(int),
            "LABEL_AVAILABLE_FROM": np.where(late[rows], late_from[rows], early_from[rows]),
        }
    )
    usable = np.where(late, late_from, np.where(early_copy, early_from, avail))
    return tx, labels, np.asarray(usable, dtype="datetime64[ns]"), fraud


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_terminal_fraud_recency_equals_a_brute_force_over_known_labels(seed: int) -> None:
    tx, labels, usable, fraud = _random_terminals_with_late_labels(seed)
    f = transaction_features(tx, windows=(1, 7, 21), delay_days=7, labels=labels)
    t, term = tx["TX_DATETIME"].to_numpy(), tx["TERMINAL_ID"].to_numpy()
    day = np.timedelta64(1, "D")
    fill = 21 + 7
    expected = np.full((len(tx), 2), float(fill))
    partly_known = 0
    for i in range(len(tx)):
        hi = t[i] - 7 * day
        inwin = (term == term[i]) & (t > hi - 21 * day) & (t <= hi) & (fraud == 1)
        known = inwin & (usable <= t[i])
        partly_known += int(known.any() and known.sum() < inwin.sum())
        if known.any():
            expected[i] = (t[i] - t[known].max()) / day, (t[i] - t[known].min()) / day
    np.testing.assert_allclose(f[TERMINAL_RECENCY_FEATURES].to_numpy(), expected, rtol=1e-12)
    assert partly_known > 20  # windows held frauds whose labels were not known yet
    assert (expected[:, 0] < expected[:, 1]).sum() > 100  # latest and earliest differ


def test_daily_snapshots_hold_the_known_fraud_times_of_the_midnight() -> None:
    """Each terminal snapshot's fraud times, turned into days at the snapshot's own midnight,
    are the batch features of a transaction at that midnight (same windows, same labels)."""
    from level4_fraud.features import recency_days, recency_fill

    tx, labels, _, _ = _random_terminals_with_late_labels(3)
    _, terms = daily_snapshots(tx, windows=(7, 21), delay_days=7, labels=labels)
    assert terms[EVENT_TIMESTAMP].dt.normalize().eq(terms[EVENT_TIMESTAMP]).all()
    probes = terms.rename(columns={EVENT_TIMESTAMP: "TX_DATETIME"})[["TERMINAL_ID", "TX_DATETIME"]]
    probes = probes.assign(
        TRANSACTION_ID=-1 - np.arange(len(probes)), CUSTOMER_ID=999, TX_AMOUNT=1.0, TX_FRAUD=np.nan
    )
    probes[schema.LABELLED] = False
    both = pd.concat([tx, probes], ignore_index=True)
    # unlabelled probes change no terminal's frauds; a probe sorts before a transaction at its second
    batch = transaction_features(both, windows=(7, 21), delay_days=7, labels=labels).iloc[len(tx) :]
    now_s = (terms[EVENT_TIMESTAMP] - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()
    served = recency_days(now_s, *(terms[c].to_numpy() for c in TERMINAL_FRAUD_TIMES), recency_fill((7, 21)))
    for name in TERMINAL_RECENCY_FEATURES:
        np.testing.assert_allclose(served[name], batch[name].to_numpy(), rtol=1e-9, err_msg=name)
    assert (batch[TERMINAL_RECENCY_FEATURES[0]] < 28).mean() > 0.5  # most snapshots know a fraud


def test_daily_snapshots_give_a_point_in_time_join_the_midnight_values(sim) -> None:
    tx, _, _ = sim
    labels = late_labels_from(tx, delay_days=7, jitter_days=10, seed=2)
    unlabelled = tx.assign(**{schema.TX_FRAUD: np.nan, schema.LABELLED: False})
    cards, terms = daily_snapshots(unlabelled, windows=(1, 7), delay_days=7, labels=labels)
    assert cards[EVENT_TIMESTAMP].dt.normalize().eq(cards[EVENT_TIMESTAMP]).all()  # midnights
    assert cards[EVENT_TIMESTAMP].max() == tx[schema.TX_DATETIME].max().normalize() + pd.Timedelta(days=1)
    # each transaction joined to the latest snapshot at or before it = its values at that midnight
    events = tx[[schema.TRANSACTION_ID, schema.TX_DATETIME, schema.CUSTOMER_ID, schema.TERMINAL_ID]].copy()
    events = events[events[schema.TX_DATETIME] >= pd.Timestamp("2018-04-15")].sample(400, random_state=0)
    events = events.sort_values(schema.TX_DATETIME)
    j_c = pd.merge_asof(
        events,
        cards.sort_values(EVENT_TIMESTAMP),
        left_on=schema.TX_DATETIME,
        right_on=EVENT_TIMESTAMP,
        by=schema.CUSTOMER_ID,
        direction="backward",
    )
    j_t = pd.merge_asof(
        events,
        terms.sort_values(EVENT_TIMESTAMP),
        left_on=schema.TX_DATETIME,
        right_on=EVENT_TIMESTAMP,
        by=schema.TERMINAL_ID,
        direction="backward",
    )
    t_all = tx[schema.TX_DATETIME].to_numpy()
    avail = labels.set_index(schema.TRANSACTION_ID).loc[
        tx[schema.TRANSACTION_ID], schema.LABEL_AVAILABLE_FROM
    ]
    avail = avail.to_numpy()
    for k in range(len(events)):
        midnight = events[schema.TX_DATETIME].iloc[k].normalize().to_datetime64()
        c = (tx[schema.CUSTOMER_ID] == events[schema.CUSTOMER_ID].iloc[k]).to_numpy()
        n7 = int((c & (t_all > midnight - np.timedelta64(7, "D")) & (t_all <= midnight)).sum())
        assert (
            0
            if pd.isna(j_c["CUSTOMER_ID_NB_TX_7DAY_WINDOW"].iloc[k])
            else j_c["CUSTOMER_ID_NB_TX_7DAY_WINDOW"].iloc[k]
        ) == n7
        tm = (tx[schema.TERMINAL_ID] == events[schema.TERMINAL_ID].iloc[k]).to_numpy()
        hi = midnight - np.timedelta64(7, "D")
        inwin = tm & (t_all > hi - np.timedelta64(7, "D")) & (t_all <= hi)
        known = inwin & (avail <= midnight)
        got_nb = j_t["TERMINAL_ID_NB_TX_7DAY_WINDOW"].iloc[k]
        got_risk = j_t["TERMINAL_ID_RISK_7DAY_WINDOW"].iloc[k]
        assert (0 if pd.isna(got_nb) else got_nb) == inwin.sum()
        expected = tx[schema.TX_FRAUD].to_numpy()[known].sum() / known.sum() if known.any() else 0.0
        assert (0.0 if pd.isna(got_risk) else got_risk) == pytest.approx(expected)


def test_empty_input_gives_an_empty_frame() -> None:
    f = transaction_features(_tiny().iloc[:0], windows=(1, 7))
    assert len(f) == 0 and list(f.columns) == feature_names((1, 7))
