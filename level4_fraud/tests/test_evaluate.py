"""Prequential protocol and metrics: exact answers on hand-built frames and against the Handbook's code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from level4_fraud import schema
from level4_fraud.evaluate import (
    EvaluationConfig,
    average_precision,
    card_precision_at_k,
    card_precision_ceilings,
    cost_at_threshold,
    cost_optimal_threshold,
    fraud_metrics,
    handbook_starts,
    mean_over_folds,
    prequential_folds,
    recall_at_fpr,
    recall_by_scenario,
    roc_auc,
    train_test_split,
)
from level4_fraud.simulate import SimulatorConfig, simulate

D0 = pd.Timestamp("2018-04-01")


def _frame(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    """(day, card, fraud) rows -> a transactions frame, noon of each day."""
    df = pd.DataFrame(rows, columns=["day", "CUSTOMER_ID", "TX_FRAUD"])
    df["TX_DATETIME"] = D0 + pd.to_timedelta(df["day"], unit="D") + pd.Timedelta(hours=12)
    df["TX_AMOUNT"] = 10.0
    return df


def test_card_precision_at_k_known_answer() -> None:
    frame = _frame(
        [
            # day 0: card 1 (max .9, fraud), 2 (.8), 3 (.7, fraud)
            (0, 1, 0), (0, 1, 1), (0, 2, 0), (0, 3, 1),
            # day 1: card 1 again (.95), 2 (.2), 3 (.6), 4 (.5)
            (1, 1, 1), (1, 2, 0), (1, 3, 1), (1, 4, 0),
        ]
    )  # fmt: skip
    score = [0.9, 0.1, 0.8, 0.7, 0.95, 0.2, 0.6, 0.5]
    # day 0 top-2: cards 1 (fraud) and 2 -> 1/2; card 1 is now detected.
    # day 1 without card 1: top-2 = cards 3 (fraud) and 4 -> 1/2.
    mean, per_day = card_precision_at_k(frame, score, k=2)
    assert per_day == [0.5, 0.5] and mean == 0.5
    # keeping detected cards: day 1 top-2 = cards 1 and 3, both frauds -> 1.
    mean, per_day = card_precision_at_k(frame, score, k=2, remove_detected=False)
    assert per_day == [0.5, 1.0] and mean == 0.75
    # k larger than the day's cards: divided by k all the same (the Handbook's definition)
    _, per_day = card_precision_at_k(frame, score, k=5, remove_detected=False)
    assert per_day == [2 / 5, 2 / 5]


def _handbook_cp(predictions_df: pd.DataFrame, top_k: int) -> float:
    """The Handbook's card_precision_top_k (chapter 4.3), as published."""
    list_days = sorted(predictions_df["TX_TIME_DAYS"].unique())
    detected: list[int] = []
    per_day = []
    for day in list_days:
        df_day = predictions_df[predictions_df["TX_TIME_DAYS"] == day][
            ["predictions", "CUSTOMER_ID", "TX_FRAUD"]
        ]
        df_day = df_day[~df_day.CUSTOMER_ID.isin(detected)]
        df_day = (
            df_day.groupby("CUSTOMER_ID").max().sort_values(by="predictions", ascending=False).reset_index()
        )
        top = df_day.head(top_k)
        caught = list(top[top.TX_FRAUD == 1].CUSTOMER_ID)
        per_day.append(len(caught) / top_k)
        detected.extend(caught)
    return float(np.mean(per_day))


def test_card_precision_equals_the_handbooks_code_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    frame = _frame(
        [
            (int(d), int(c), int(f))
            for d, c, f in zip(
                rng.integers(0, 7, n), rng.integers(0, 800, n), rng.random(n) < 0.05, strict=True
            )
        ]
    )
    frame["TX_TIME_DAYS"] = frame["day"]
    score = rng.random(n)  # continuous: no ties, so the order is the same as the Handbook's
    ours, _ = card_precision_at_k(frame, score, k=100)
    assert ours == pytest.approx(_handbook_cp(frame.assign(predictions=score), 100))
    assert 0 < ours < 1


def test_recall_at_one_percent_fpr_known_answer() -> None:
    neg = np.arange(100) / 100  # 0.00 .. 0.99
    pos = np.array([0.995, 0.992, 0.985, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02])
    y = np.r_[np.zeros(100), np.ones(10)]
    s = np.r_[neg, pos]
    # one false positive allowed (0.99): positives scoring >= 0.985 -> 3 of 10
    assert recall_at_fpr(y, s, 0.01) == pytest.approx(0.3)
    assert recall_at_fpr(y, s, 0.02) == pytest.approx(0.3)
    assert recall_at_fpr(y, s, 0.0001) == pytest.approx(0.2)  # no false positive: 0.995, 0.992


def test_auc_and_ap_known_answers_and_degenerate_cases() -> None:
    y = [0, 0, 1, 1]
    assert roc_auc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # AP: ranks 0.8 (pos, P=1), 0.4 (neg), 0.35 (pos, P=2/3) -> (1 + 2/3) / 2
    assert average_precision(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(roc_auc([0, 0], [0.1, 0.2])) and math.isnan(average_precision([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0, 1], [0.1])


def test_cost_optimal_threshold_known_answers() -> None:
    y = [1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.1]
    amount = [100, 50, 30, 20, 10]
    # review cost 20: savings by alerts 1..5 = 80, 60, 70, 50, 30 -> alert only 0.9
    best = cost_optimal_threshold(y, s, amount, review_cost=20)
    assert (best.threshold, best.savings, best.n_alerts, best.frauds_caught) == (0.9, 80.0, 1, 1)
    # review cost 5: 95, 90, 115, 110, 105 -> threshold 0.7
    best = cost_optimal_threshold(y, s, amount, review_cost=5)
    assert (best.threshold, best.savings, best.amount_caught, best.review_cost) == (0.7, 115.0, 130.0, 15.0)
    # reviewing costs more than any fraud: alert nothing
    best = cost_optimal_threshold(y, s, amount, review_cost=200)
    assert best.threshold == math.inf and best.n_alerts == 0 and best.savings == 0.0
    # tied scores are alerted together: [0.9, 0.9] cannot be split
    best = cost_optimal_threshold([1, 0, 1], [0.9, 0.9, 0.5], [100, 0, 1], review_cost=60)
    assert best.threshold == math.inf  # 100 - 120 < 0 and 101 - 180 < 0
    # applying a threshold chosen elsewhere
    at = cost_at_threshold(y, s, amount, threshold=0.65, review_cost=5)
    assert (at.n_alerts, at.frauds_caught, at.savings) == (3, 2, 115.0)


def test_recall_by_scenario() -> None:
    got = recall_by_scenario([0, 1, 1, 2, 2, 2, 0, -1], [True, True, False, True, True, False, False, True])
    assert got == {"amount_over_220": 0.5, "compromised_terminal": pytest.approx(2 / 3)}


def test_train_test_split_known_cards_as_the_handbook() -> None:
    s = 10  # training days 10..16, delay 17..23, test 24..30
    rows = [
        (9, 50, 1),  # before training: not a training row and does not make card 50 known
        (12, 1, 1),  # card 1 defrauded in training -> removed from every test day
        (12, 2, 0),
        (17, 3, 1),  # card 3 defrauded on the first delay day -> known from test day 1 (day 25)
        (23, 4, 1),  # card 4 on the last delay day -> never known during the test week
        (24, 1, 0), (24, 3, 0), (24, 4, 0), (24, 50, 0),
        (25, 1, 0), (25, 3, 0), (25, 4, 0),
        (30, 3, 1), (30, 4, 1), (30, 2, 0),
        (31, 2, 0),  # after the test week
    ]  # fmt: skip
    tx = _frame(rows)
    fold = train_test_split(tx, D0 + pd.Timedelta(days=s))
    assert fold.test_start == D0 + pd.Timedelta(days=24) and fold.test_end == D0 + pd.Timedelta(days=31)
    assert tx.loc[fold.train_index, "day"].tolist() == [12, 12]
    test = tx.loc[fold.test_index, ["day", "CUSTOMER_ID"]].values.tolist()
    assert test == [[24, 3], [24, 4], [24, 50], [25, 4], [30, 4], [30, 2]]
    assert fold.removed_known_cards == 4  # card 1 on days 24, 25; card 3 on days 25, 30
    # every fraud of the training and delay weeks known from the first test day
    strict = train_test_split(tx, D0 + pd.Timedelta(days=s), known_cards="test_start")
    assert tx.loc[strict.test_index, ["day", "CUSTOMER_ID"]].values.tolist() == [[24, 50], [30, 2]]
    assert strict.train_index.equals(fold.train_index)


def _handbook_get_train_test_set(
    transactions_df, start_date_training, delta_train=7, delta_delay=7, delta_test=7
):
    """The Handbook's get_train_test_set (chapter 5.2), without its optional undersampling."""
    import datetime

    train_df = transactions_df[
        (start_date_training <= transactions_df.TX_DATETIME)
        & (start_date_training + datetime.timedelta(days=delta_train) > transactions_df.TX_DATETIME)
    ]
    test_df = []
    known_defrauded_customers = set(train_df[train_df.TX_FRAUD == 1].CUSTOMER_ID)
    start_tx_time_days_training = train_df.TX_TIME_DAYS.min()
    for day in range(delta_test):
        test_df_day = transactions_df[
            start_tx_time_days_training + delta_train + delta_delay + day == transactions_df.TX_TIME_DAYS
        ]
        test_df_day_delay_period = transactions_df[
            start_tx_time_days_training + delta_train + day - 1 == transactions_df.TX_TIME_DAYS
        ]
        new_defrauded_customers = set(
            test_df_day_delay_period[test_df_day_delay_period.TX_FRAUD == 1].CUSTOMER_ID
        )
        known_defrauded_customers = known_defrauded_customers.union(new_defrauded_customers)
        test_df_day = test_df_day[~test_df_day.CUSTOMER_ID.isin(known_defrauded_customers)]
        test_df.append(test_df_day)
    return train_df.sort_values("TRANSACTION_ID"), pd.concat(test_df).sort_values("TRANSACTION_ID")


def test_folds_equal_the_handbooks_split_on_a_simulation() -> None:
    cfg = SimulatorConfig(handbook=True, n_customers=300, n_terminals=600, nb_days=60, seed=2)
    tx, _, _ = simulate(
        cfg.model_copy(update={"compromised_terminals_per_day": 2, "compromised_cards_per_day": 3})
    )
    ecfg = EvaluationConfig(n_folds=3)
    folds = prequential_folds(tx, "2018-05-06", ecfg)
    assert [f.train_start for f in folds] == [
        pd.Timestamp(d) for d in ("2018-05-06", "2018-04-29", "2018-04-22")
    ]
    for fold in folds:
        train, test = _handbook_get_train_test_set(tx, fold.train_start)
        assert fold.train_index.equals(train.index)
        assert fold.test_index.equals(test.index)
    assert sum(f.removed_known_cards for f in folds) > 0
    # folds that do not fit in the data are skipped; none at all is an error
    assert [f.train_start.day for f in prequential_folds(tx, "2018-04-09", ecfg)] == [9, 2]
    with pytest.raises(ValueError, match="no prequential fold fits"):
        prequential_folds(tx, "2018-05-25", ecfg)


def test_unlabelled_rows_neither_train_nor_make_a_card_known() -> None:
    tx = _frame([(12, 1, 1), (12, 2, 0), (24, 1, 0), (24, 2, 0)])
    tx["TX_FRAUD"] = tx["TX_FRAUD"].astype(float)
    tx.loc[0, "TX_FRAUD"] = np.nan
    fold = train_test_split(tx, D0 + pd.Timedelta(days=10))
    assert fold.train_index.tolist() == [1]
    assert tx.loc[fold.test_index, "CUSTOMER_ID"].tolist() == [1, 2]


def test_handbook_starts() -> None:
    starts = handbook_starts(cfg=EvaluationConfig(n_folds=4))
    assert starts == {"valid": pd.Timestamp("2018-07-11"), "test": pd.Timestamp("2018-08-15")}


def test_fraud_metrics_and_mean_over_folds() -> None:
    frame = _frame([(0, 1, 1), (0, 2, 0), (0, 3, 0), (1, 4, 1), (1, 5, 0)])
    frame["TX_AMOUNT"] = [100.0, 5, 5, 50, 5]
    frame["TX_FRAUD_SCENARIO"] = [1, 0, 0, 2, 0]
    perfect = [0.9, 0.1, 0.2, 0.8, 0.3]
    m = fraud_metrics(frame, perfect, EvaluationConfig(top_k=1, review_cost=10), threshold=0.5)
    assert m == {
        "roc_auc": 1.0,
        "average_precision": 1.0,
        "card_precision_at_k": 1.0,
        "recall_at_fpr": 1.0,
        "savings": 130.0,
        "n_alerts": 2.0,
        "amount_caught": 150.0,
    }
    agg = mean_over_folds([{"ap": 0.5, "auc": math.nan}, {"ap": 0.7, "auc": 0.8}])
    assert agg["ap"] == pytest.approx(0.6) and agg["ap_std"] == pytest.approx(0.1) and agg["auc"] == 0.8
    assert schema.TX_FRAUD in frame.columns


def _ceiling_frame(days: int) -> pd.DataFrame:
    # Each day d (from day 3, when terminal 9 is compromised): a fraud at terminal 9 on the card
    # with the day's lowest id, a fraud over 220, eight genuine payments; ids new every day.
    origin = pd.Timestamp("2018-04-01")
    rows = []
    for d in range(3, 3 + days):
        base = 100 * d
        rows += [(d, base, 9, 1, 2), (d, base + 1, 4, 1, 1)]
        rows += [(d, base + c, 4, 0, 0) for c in range(2, 10)]
    return pd.DataFrame(
        {
            schema.TX_DATETIME: [origin + pd.Timedelta(days=d, hours=10) for d, *_ in rows],
            schema.CUSTOMER_ID: [c for _, c, *_ in rows],
            schema.TERMINAL_ID: [t for _, _, t, *_ in rows],
            schema.TX_FRAUD: [y for *_, y, _ in rows],
            schema.TX_FRAUD_SCENARIO: [s for *_, s in rows],
        }
    )


def test_reachable_ceiling_leaves_out_frauds_hidden_by_the_label_delay() -> None:
    events = pd.DataFrame({schema.TERMINAL_ID: [9], "start_day": [3]})
    origin = pd.Timestamp("2018-04-01")
    # 7 days inside the 7-day delay: terminal 9's frauds are hidden every day. Each day's two
    # alerts: the fraud over 220, and one of the nine others at random (1 in 9: the hidden fraud).
    hidden = _ceiling_frame(7)
    perfect, reachable = card_precision_ceilings(hidden, events, origin, 7, k=2)
    assert perfect == pytest.approx(1.0)
    assert 0.5 <= reachable < 0.75  # by card id the hidden fraud, lowest, would be alerted: 1.0
    # Over 25 days of the compromise: from day 10 on (a week in) its frauds are knowable...
    knowable = _ceiling_frame(25)
    day = (knowable[schema.TX_DATETIME] - origin).dt.days
    later = knowable[day >= 10]
    assert card_precision_ceilings(later, events, origin, 7, k=2)[1] == pytest.approx(1.0)
    # ... and with no delay, from its first day; past its 28 days the compromise no longer counts.
    assert card_precision_ceilings(hidden, events, origin, 0, k=2)[1] == pytest.approx(1.0)
    late = events.assign(start_day=[-40])
    assert card_precision_ceilings(hidden, late, origin, 7, k=2)[1] == pytest.approx(1.0)


def test_a_terminal_compromised_again_is_known_from_its_first_compromise() -> None:
    # Compromised on day 3 and again on day 8, before the first window ends: from day 10 its
    # frauds have labels (day 3's arrive a week later), though day 8's would not until day 15.
    origin = pd.Timestamp("2018-04-01")
    events = pd.DataFrame({schema.TERMINAL_ID: [9, 9], "start_day": [8, 3]})
    frame = _ceiling_frame(12)
    day = (frame[schema.TX_DATETIME] - origin).dt.days
    days_10_to_14 = frame[(day >= 10) & (day <= 14)]
    assert card_precision_ceilings(days_10_to_14, events, origin, 7, k=2)[1] == pytest.approx(1.0)
    # Before day 10 they are hidden, whichever compromise one counts from.
    assert card_precision_ceilings(frame[day < 10], events, origin, 7, k=2)[1] < 0.75
    with pytest.raises(ValueError, match="start_day"):
        card_precision_ceilings(frame, events.drop(columns="start_day"), origin, 7)
