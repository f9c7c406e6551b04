"""The simulator: the Handbook's tables, scenarios and published statistics; the added scenarios,
the drift, determinism and the folder layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from level4_fraud import schema
from level4_fraud.schema import Scenario
from level4_fraud.simulate import (
    CUSTOMERS_FILE,
    DRIFT_CATEGORY,
    FRAUD_DEVICE_BASE,
    HANDBOOK_STATS,
    SUMMARY_FILE,
    TERMINALS_FILE,
    TRANSACTIONS_DIR,
    SimulatorConfig,
    compromise_events,
    generate_profiles,
    handbook_config,
    iter_days,
    scenario_counts,
    simulate,
    simulate_to_folder,
)
from shared.errors import ConfigError

from .conftest import SMALL

SC = schema.TX_FRAUD_SCENARIO


def test_handbook_profile_tables_are_the_published_ones() -> None:
    # The Handbook prints the first rows of its tables (seeds 0 and 1, uniform draws per row).
    customers, terminals = generate_profiles(handbook_config())
    assert len(customers) == 5000 and len(terminals) == 10000
    first = customers.iloc[0]
    assert first[schema.X_CUSTOMER] == pytest.approx(54.881350, abs=1e-6)
    assert first[schema.Y_CUSTOMER] == pytest.approx(71.518937, abs=1e-6)
    assert first["mean_amount"] == pytest.approx(62.262521, abs=1e-6)
    assert first["std_amount"] == pytest.approx(31.131260, abs=1e-6)
    assert first["mean_nb_tx_per_day"] == pytest.approx(2.179533, abs=1e-6)
    assert customers.iloc[1]["mean_nb_tx_per_day"] == pytest.approx(3.567092, abs=1e-6)
    assert terminals.iloc[0][[schema.X_TERMINAL, schema.Y_TERMINAL]].tolist() == pytest.approx(
        [41.702200, 72.032449], abs=1e-6
    )
    assert terminals.iloc[1][[schema.X_TERMINAL, schema.Y_TERMINAL]].tolist() == pytest.approx(
        [0.011437, 30.233257], abs=1e-6
    )
    # nb_terminals is the count of terminals strictly within r = 5 (brute force here).
    xy_t = terminals[[schema.X_TERMINAL, schema.Y_TERMINAL]].to_numpy()
    for c in (0, 1, 4999):
        xy_c = customers.loc[c, [schema.X_CUSTOMER, schema.Y_CUSTOMER]].to_numpy(dtype=float)
        assert customers.loc[c, "nb_terminals"] == int((np.sqrt(((xy_t - xy_c) ** 2).sum(1)) < 5).sum())


def test_handbook_setup_reproduces_the_published_statistics() -> None:
    # Le Borgne et al., chapter 3: 1,754,155 transactions, 14,681 frauds (0.837 %), of which
    # scenario 1: 978, scenario 2: 9,099, scenario 3: 4,604.
    tx, customers, _ = simulate(handbook_config())
    n, frauds = len(tx), int(tx[schema.TX_FRAUD].sum())
    assert abs(n - HANDBOOK_STATS["n_transactions"]) / HANDBOOK_STATS["n_transactions"] < 0.003
    assert abs(frauds - HANDBOOK_STATS["n_frauds"]) / HANDBOOK_STATS["n_frauds"] < 0.03
    assert frauds / n == pytest.approx(HANDBOOK_STATS["fraud_rate"], abs=0.0003)
    counts = tx[SC].value_counts()
    for k in (1, 2, 3):
        published = HANDBOOK_STATS[f"scenario_{k}"]
        assert abs(counts[k] - published) / published < 0.08, (k, counts[k], published)
    assert set(counts.index) == {0, 1, 2, 3}
    assert list(tx.columns) == list(schema.HANDBOOK_COLUMNS)
    assert tx[schema.TX_DATETIME].min() >= pd.Timestamp("2018-04-01")
    assert tx[schema.TX_DATETIME].max() < pd.Timestamp("2018-10-01")
    assert tx[schema.TX_TIME_DAYS].max() == 182
    # every customer has terminals in reach; a few with a rate near 0 never buy anything
    assert (customers["nb_terminals"] > 0).all() and 4950 < tx[schema.CUSTOMER_ID].nunique() <= 5000


def test_ids_are_in_time_order_and_dtypes_follow_the_contract(rich_sim) -> None:
    _, tx, _, _ = rich_sim
    assert (tx[schema.TRANSACTION_ID].to_numpy() == np.arange(len(tx))).all()
    assert tx[schema.TX_DATETIME].is_monotonic_increasing
    for col, dtype in schema.DTYPES.items():
        assert str(tx[col].dtype) == dtype, col
    secs = (tx[schema.TX_DATETIME] - pd.Timestamp("2018-04-01")).dt.total_seconds()
    assert (secs.to_numpy() == tx[schema.TX_TIME_SECONDS].to_numpy()).all()
    assert (tx[schema.TX_TIME_SECONDS] // 86400 == tx[schema.TX_TIME_DAYS]).all()
    pd.testing.assert_frame_equal(schema.validate_transactions(tx), tx)


@pytest.mark.parametrize("which", ["rich_sim", "handbook_sim"])
def test_scenario_1_every_amount_over_220_is_fraud(which, request) -> None:
    _, tx, _, _ = request.getfixturevalue(which)
    assert (tx.loc[tx[schema.TX_AMOUNT] > 220, schema.TX_FRAUD] == 1).all()
    assert (tx.loc[tx[SC] == 0, schema.TX_AMOUNT] <= 220).all()
    assert (tx.loc[tx[SC] == Scenario.AMOUNT_OVER_220, schema.TX_AMOUNT] > 220).all()
    assert (tx[SC] == Scenario.AMOUNT_OVER_220).sum() > 0
    assert ((tx[SC] > 0) == (tx[schema.TX_FRAUD] == 1)).all()


def test_handbook_compromises_are_the_handbooks_pandas_samples(handbook_sim) -> None:
    cfg, tx, customers, terminals = handbook_sim
    term_events, card_events = compromise_events(cfg)
    # The Handbook: for day in range(max TX_TIME_DAYS):
    #   terminal_profiles_table.TERMINAL_ID.sample(n=2, random_state=day)
    #   customer_profiles_table.CUSTOMER_ID.sample(n=3, random_state=day)
    days = range(tx[schema.TX_TIME_DAYS].max())
    expected_t = [
        (int(t), d) for d in days for t in terminals[schema.TERMINAL_ID].sample(n=2, random_state=d)
    ]
    expected_c = [
        (int(c), d) for d in days for c in customers[schema.CUSTOMER_ID].sample(n=3, random_state=d)
    ]
    assert list(zip(term_events[schema.TERMINAL_ID], term_events["start_day"], strict=True)) == expected_t
    assert list(zip(card_events[schema.CUSTOMER_ID], card_events["start_day"], strict=True)) == expected_c


def _in_windows(tx: pd.DataFrame, col: str, events: pd.DataFrame, days: int) -> np.ndarray:
    inside = np.zeros(len(tx), dtype=bool)
    for key, start in zip(events[col], events["start_day"], strict=True):
        inside |= ((tx[col] == key) & tx[schema.TX_TIME_DAYS].between(start, start + days - 1)).to_numpy()
    return inside


@pytest.mark.parametrize("which", ["rich_sim", "handbook_sim"])
def test_scenario_2_every_tx_of_a_compromised_terminal_in_its_28_days_and_no_other(which, request) -> None:
    cfg, tx, _, _ = request.getfixturevalue(which)
    term_events, _ = compromise_events(cfg)
    inside = _in_windows(tx, schema.TERMINAL_ID, term_events, 28)
    s2 = (tx[SC] == Scenario.COMPROMISED_TERMINAL).to_numpy()
    assert s2.sum() > 20
    assert not (s2 & ~inside).any()
    # every genuine-generated transaction there is fraud (scenario 3 may relabel some of them;
    # the richer mode's injected rows keep their own scenario)
    assert set(tx.loc[inside, SC].unique()) <= {2, 3, 4, 5, 6, 7}
    if which == "rich_sim":
        assert set(tx.loc[s2, schema.CHANNEL].unique()) <= {"pos", "atm"}


@pytest.mark.parametrize("which", ["rich_sim", "handbook_sim"])
def test_scenario_3_a_third_of_a_compromised_cards_14_days_with_amounts_times_5(which, request) -> None:
    cfg, tx, customers, _ = request.getfixturevalue(which)
    _, card_events = compromise_events(cfg)
    s3 = tx[SC] == Scenario.COMPROMISED_CARD
    inside = _in_windows(tx, schema.CUSTOMER_ID, card_events, 14)
    assert s3.sum() > 20 and not (s3.to_numpy() & ~inside).any()
    genuine_rows = ~tx[SC].isin([4, 5, 6, 7])  # scenario 3 picks among the card's own transactions
    times = card_events[schema.CUSTOMER_ID].value_counts()
    checked = 0
    for c, d in zip(card_events[schema.CUSTOMER_ID], card_events["start_day"], strict=True):
        if times[c] > 1:
            continue
        window = (tx[schema.CUSTOMER_ID] == c) & tx[schema.TX_TIME_DAYS].between(d, d + 13) & genuine_rows
        assert (window & s3).sum() == int(window.sum() / 3), (c, d)
        checked += 1
    assert checked >= 0.6 * len(card_events)
    # amounts x5: the frauds' amounts over their cards' mean amount is about 5
    mean_amount = customers.set_index(schema.CUSTOMER_ID)["mean_amount"]
    ratio = tx.loc[s3, schema.TX_AMOUNT].sum() / mean_amount[tx.loc[s3, schema.CUSTOMER_ID]].sum()
    assert 4.2 < ratio < 5.8


def test_card_testing_bursts_of_small_online_amounts(rich_sim) -> None:
    _, tx, _, _ = rich_sim
    ct = tx[tx[SC] == Scenario.CARD_TESTING]
    assert len(ct) > 0
    assert (ct[schema.TX_AMOUNT] <= 3.0).all() and (ct[schema.TX_AMOUNT] >= 0.5).all()
    assert (ct[schema.CHANNEL] == "ecom").all()
    assert (ct[schema.DEVICE_ID] >= FRAUD_DEVICE_BASE).all()
    bursts = ct.groupby(schema.DEVICE_ID)
    assert (bursts.size() >= 3).all() and (bursts.size() <= 8).all()
    spread = bursts[schema.TX_TIME_SECONDS].agg(lambda s: s.max() - s.min())
    assert (spread < 1800).all()
    assert (bursts[schema.TERMINAL_ID].nunique() == 1).all()


def test_account_takeover_new_device_and_country(rich_sim) -> None:
    _, tx, customers, _ = rich_sim
    ato = tx[tx[SC] == Scenario.ACCOUNT_TAKEOVER]
    assert len(ato) > 0
    assert (ato[schema.CHANNEL] == "ecom").all()
    home = customers.set_index(schema.CUSTOMER_ID)["home_country"].astype(str)
    assert (ato[schema.COUNTRY].astype(str).to_numpy() != home[ato[schema.CUSTOMER_ID]].to_numpy()).all()
    # the device was never used by the card before
    seen = tx[(tx[SC] != Scenario.ACCOUNT_TAKEOVER) & (tx[schema.DEVICE_ID] >= 0)]
    pairs = set(zip(seen[schema.CUSTOMER_ID], seen[schema.DEVICE_ID], strict=True))
    assert not any(p in pairs for p in zip(ato[schema.CUSTOMER_ID], ato[schema.DEVICE_ID], strict=True))
    assert (ato[schema.DEVICE_ID] >= FRAUD_DEVICE_BASE).all()


def test_merchant_collusion_round_amounts_at_one_terminal_for_a_while(rich_sim) -> None:
    cfg, tx, _, _ = rich_sim
    mc = tx[tx[SC] == Scenario.MERCHANT_COLLUSION]
    assert len(mc) > 0
    assert (mc[schema.CHANNEL] == "pos").all()
    assert (mc[schema.TX_AMOUNT] == mc[schema.TX_AMOUNT].round()).all()
    assert mc[schema.TX_AMOUNT].between(80, 200).all()
    span = mc.groupby(schema.TERMINAL_ID)[schema.TX_TIME_DAYS].agg(lambda d: d.max() - d.min())
    assert (span < cfg.collusion_days * 2).all()


def test_drift_new_pattern_only_after_the_drift_day_and_spending_shifts(rich_sim) -> None:
    cfg, tx, _, _ = rich_sim
    day = tx[schema.TX_TIME_DAYS]
    drift = tx[tx[SC] == Scenario.DRIFT_PATTERN]
    assert len(drift) > 0 and (drift[schema.TX_TIME_DAYS] >= cfg.drift_day).all()
    assert (drift[schema.MERCHANT_CATEGORY] == DRIFT_CATEGORY).all()
    assert (drift[schema.TX_DATETIME].dt.hour.between(1, 4)).all()
    assert not (tx.loc[day < cfg.drift_day, schema.MERCHANT_CATEGORY] == DRIFT_CATEGORY).any()
    genuine = tx[(tx[SC] == 0) & (tx[schema.CHANNEL] == "pos")]
    before = genuine.loc[genuine[schema.TX_TIME_DAYS] < cfg.drift_day, schema.TX_AMOUNT].mean()
    after = genuine.loc[genuine[schema.TX_TIME_DAYS] >= cfg.drift_day, schema.TX_AMOUNT].mean()
    assert 1.04 < after / before < 1.16  # drift_amount_factor 1.1 (genuine rows are capped at 220)
    per_day = tx.groupby(day).size()
    after_drift = per_day.index >= cfg.drift_day
    assert per_day[after_drift].mean() > per_day[~after_drift].mean() * 1.05  # drift_rate_factor 1.15
    ecom = tx[schema.CHANNEL] == "ecom"
    assert ecom[day >= cfg.drift_day].mean() > ecom[day < cfg.drift_day].mean() + 0.05


def test_no_drift_without_a_drift_day() -> None:
    tx, _, _ = simulate(SimulatorConfig(**{**SMALL, "drift_day": None}))
    assert not (tx[SC] == Scenario.DRIFT_PATTERN).any()
    assert not (tx[schema.MERCHANT_CATEGORY] == DRIFT_CATEGORY).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_fraud_rate_within_0_1_and_1_percent_with_every_scenario(seed) -> None:
    tx, _, _ = simulate(SimulatorConfig(seed=seed))
    assert 0.001 < tx[schema.TX_FRAUD].mean() < 0.01
    assert set(tx[SC].unique()) == set(range(8))


def test_richer_fields(rich_sim) -> None:
    _, tx, customers, terminals = rich_sim
    assert set(tx[schema.CHANNEL].unique()) == {"pos", "ecom", "atm"}
    card_present = tx[schema.CHANNEL] != "ecom"
    assert (tx.loc[card_present, schema.DEVICE_ID] == schema.NO_DEVICE).all()
    assert (tx.loc[~card_present, schema.DEVICE_ID] >= 0).all()
    atm = tx[(tx[schema.CHANNEL] == "atm") & (tx[SC] == 0)]
    assert ((atm[schema.TX_AMOUNT] % 20) == 0).all()
    # genuine pos transactions happen near home (the Handbook's radius) and in the home country
    genuine_pos = tx[(tx[schema.CHANNEL] == "pos") & (tx[SC] == 0)]
    c = customers.set_index(schema.CUSTOMER_ID).loc[genuine_pos[schema.CUSTOMER_ID]]
    t = terminals.set_index(schema.TERMINAL_ID).loc[genuine_pos[schema.TERMINAL_ID]]
    dist = np.hypot(
        c[schema.X_CUSTOMER].to_numpy() - t[schema.X_TERMINAL].to_numpy(),
        c[schema.Y_CUSTOMER].to_numpy() - t[schema.Y_TERMINAL].to_numpy(),
    )
    assert (dist < 5).all()
    tcountry = terminals.set_index(schema.TERMINAL_ID)["country"]
    assert (
        tx[schema.COUNTRY].astype(str).to_numpy() == tcountry[tx[schema.TERMINAL_ID]].astype(str).to_numpy()
    ).all()
    eur = tx[schema.COUNTRY].isin(["FR", "DE", "ES", "IT", "NL"])
    assert (tx.loc[eur, schema.CURRENCY] == "EUR").all() and (tx.loc[~eur, schema.CURRENCY] != "EUR").all()


def test_same_seed_same_output_other_seed_other_output() -> None:
    a, _, _ = simulate(SimulatorConfig(**SMALL))
    b, _, _ = simulate(SimulatorConfig(**SMALL))
    c, _, _ = simulate(SimulatorConfig(**{**SMALL, "seed": SMALL["seed"] + 1}))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) != len(c) or not a[schema.TX_AMOUNT].equals(c[schema.TX_AMOUNT])


def test_iter_days_matches_simulate(rich_sim) -> None:
    cfg, tx, _, _ = rich_sim
    days = list(iter_days(cfg))
    assert len(days) == cfg.nb_days
    assert all(d[schema.TX_TIME_DAYS].nunique() == 1 for d in days)
    pd.testing.assert_frame_equal(pd.concat(days, ignore_index=True), tx)


@pytest.mark.parametrize("fmt", ["parquet", "pkl"])
def test_simulate_to_folder_writes_the_handbook_layout(tmp_path, fmt, rich_sim) -> None:
    cfg, tx, customers, terminals = rich_sim
    out = tmp_path / "sim"
    summary = simulate_to_folder(cfg, out, fmt=fmt)
    files = sorted((out / TRANSACTIONS_DIR).iterdir())
    assert [f.name for f in files[:2]] == [f"2018-04-01.{fmt}", f"2018-04-02.{fmt}"]
    assert len(files) == cfg.nb_days
    read = pd.read_parquet if fmt == "parquet" else pd.read_pickle
    back = pd.concat([read(f) for f in files], ignore_index=True)
    for col in schema.CATEGORY_COLUMNS:  # parquet may narrow the categories to those present
        back[col] = back[col].astype(str)
    expected = tx.copy()
    for col in schema.CATEGORY_COLUMNS:
        expected[col] = expected[col].astype(str)
    pd.testing.assert_frame_equal(back, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out / CUSTOMERS_FILE), customers)
    assert len(pd.read_parquet(out / TERMINALS_FILE)) == len(terminals)
    meta = json.loads((out / SUMMARY_FILE).read_text())
    assert meta["summary"]["n_transactions"] == summary.n_transactions == len(tx)
    assert meta["summary"]["n_frauds"] == int(tx[schema.TX_FRAUD].sum())
    assert meta["summary"]["scenario_counts"] == scenario_counts(tx)
    assert meta["config"]["seed"] == cfg.seed


def test_simulate_to_folder_rejects_an_unknown_format(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown format 'csv'"):
        simulate_to_folder(SimulatorConfig(nb_days=2), tmp_path / "x", fmt="csv")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_handbook_mode_rejects_fractional_counts() -> None:
    with pytest.raises(ValueError, match="whole number"):
        SimulatorConfig(handbook=True, compromised_terminals_per_day=1.5)
    with pytest.raises(ValueError, match="extra"):
        SimulatorConfig(n_customer=3)  # type: ignore[call-arg]


def test_handbook_switch_brings_the_handbooks_daily_counts() -> None:
    cfg = SimulatorConfig(handbook=True)
    assert (cfg.compromised_terminals_per_day, cfg.compromised_cards_per_day) == (2, 3)
    assert SimulatorConfig(handbook=True, compromised_cards_per_day=1).compromised_cards_per_day == 1
    assert (SimulatorConfig().compromised_terminals_per_day, SimulatorConfig().compromised_cards_per_day) == (
        1,
        2,
    )
