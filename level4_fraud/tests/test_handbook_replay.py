"""The Handbook's generator replayed draw for draw: the published dataset itself."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from level4_fraud import schema
from level4_fraud.handbook_replay import add_frauds, customer_transactions
from level4_fraud.simulate import HANDBOOK_STATS, SimulatorConfig, handbook_config, simulate


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    tx, _, _ = simulate(handbook_config(handbook_exact=True))
    return tx


def test_the_replay_is_the_published_dataset(published: pd.DataFrame) -> None:
    # Le Borgne et al., chapter 3: the dataset's size and fraud count, and the first rows of the
    # table the chapter prints.
    assert len(published) == HANDBOOK_STATS["n_transactions"]
    assert int(published[schema.TX_FRAUD].sum()) == HANDBOOK_STATS["n_frauds"]
    head = published.head(5)
    assert head[schema.TX_DATETIME].dt.strftime("%H:%M:%S").tolist() == [
        "00:00:31",
        "00:02:10",
        "00:07:56",
        "00:09:29",
        "00:10:34",
    ]
    assert head[schema.CUSTOMER_ID].tolist() == [596, 4961, 2, 4128, 927]
    assert head[schema.TERMINAL_ID].tolist() == [3156, 3412, 1365, 8737, 9906]
    assert head[schema.TX_AMOUNT].tolist() == [57.16, 81.51, 146.00, 64.49, 50.99]
    assert list(published.columns) == list(schema.HANDBOOK_COLUMNS)
    pd.testing.assert_frame_equal(schema.validate_transactions(published), published)


def test_each_scenario_adds_the_frauds_the_handbook_prints(published: pd.DataFrame) -> None:
    # The chapter prints the frauds each scenario adds (978, 9,099, 4,604). Undo scenario 3's
    # multiplications, then label again step by step with the Handbook's own events.
    terminals, cards = _events()
    genuine = published.copy()
    genuine[schema.TX_AMOUNT] = _amounts_before_scenario_3(published, cards)
    s1 = int((genuine[schema.TX_AMOUNT] > 220).sum())
    after_2 = genuine.copy()
    add_frauds(after_2, terminals, [])
    s12 = int(after_2[schema.TX_FRAUD].sum())
    assert (s1, s12 - s1, HANDBOOK_STATS["n_frauds"] - s12) == (
        HANDBOOK_STATS["scenario_1"],
        HANDBOOK_STATS["scenario_2"],
        HANDBOOK_STATS["scenario_3"],
    )
    # All three steps give back the replay's own labels and amounts, row for row.
    add_frauds(genuine, terminals, cards)
    for col in (schema.TX_FRAUD_SCENARIO, schema.TX_FRAUD):
        assert (genuine[col].to_numpy() == published[col].to_numpy()).all(), col
    np.testing.assert_allclose(genuine[schema.TX_AMOUNT], published[schema.TX_AMOUNT], rtol=1e-12)


def _events() -> tuple[list[np.ndarray], list[np.ndarray]]:
    # The Handbook: Series.sample(n, random_state=day) for days 0 .. max(TX_TIME_DAYS) - 1.
    terminals = [np.random.RandomState(d).choice(10_000, 2, replace=False) for d in range(182)]
    cards = [np.random.RandomState(d).choice(5_000, 3, replace=False) for d in range(182)]
    return terminals, cards


def _amounts_before_scenario_3(tx: pd.DataFrame, cards: list[np.ndarray]) -> np.ndarray:
    amount = tx[schema.TX_AMOUNT].to_numpy().copy()
    day = tx[schema.TX_TIME_DAYS].to_numpy()
    cust = tx[schema.CUSTOMER_ID].to_numpy()
    times = np.zeros(len(tx), dtype=np.int64)
    for d, cs in enumerate(cards):
        rows = np.flatnonzero(np.isin(cust, cs) & (day >= d) & (day < d + 14))
        picked = random.Random(d).sample(rows.tolist(), k=int(len(rows) / 3))
        times[picked] += 1
    return np.round(amount / 5.0**times, 2)


def _handbook_loop(cid: int, rate: float, mean: float, std: float, n_terms: int, days: int) -> list:
    # The Handbook's generate_transactions_table, written out as it is (amounts before rounding).
    random.seed(cid)
    np.random.seed(cid)
    out = []
    for day in range(days):
        nb_tx = np.random.poisson(rate)
        for _ in range(nb_tx):
            time_tx = int(np.random.normal(86400 / 2, 20000))
            if (time_tx > 0) and (time_tx < 86400):
                amount = np.random.normal(mean, std)
                if amount < 0:
                    amount = np.random.uniform(0, mean * 2)
                if n_terms > 0:
                    terminal = random.choice(list(range(n_terms)))
                    out.append((time_tx + day * 86400, float(amount), terminal))
    return out


def test_one_customers_draws_follow_the_handbooks_loop() -> None:
    cid, rate, mean, std, n_terms, days = 7, 2.5, 40.0, 20.0, 9, 30
    expected = _handbook_loop(cid, rate, mean, std, n_terms, days)
    secs, amounts, picks = customer_transactions(cid, rate, mean, std, n_terms, days)
    got = list(zip(secs.tolist(), amounts.tolist(), picks.tolist(), strict=True))
    assert got == expected and len(got) > 40
    # A wide spread (std = 2 x mean: a third of the normal draws are negative) exercises the
    # Handbook's uniform redraw of negative amounts on every few transactions.
    secs, amounts, _ = customer_transactions(11, 4.0, 30.0, 60.0, 5, 40)
    loop = _handbook_loop(11, 4.0, 30.0, 60.0, 5, 40)
    assert list(zip(secs.tolist(), amounts.tolist(), strict=True)) == [(t, a) for t, a, _ in loop]
    assert (amounts >= 0).all() and len(amounts) > 100


def test_a_customer_without_terminals_draws_but_keeps_nothing() -> None:
    # The Handbook still draws times and amounts (so the stream moves on) but appends nothing.
    secs, amounts, picks = customer_transactions(3, 3.0, 50.0, 25.0, 0, 20)
    assert len(secs) == len(amounts) == len(picks) == 0 == len(_handbook_loop(3, 3.0, 50.0, 25.0, 0, 20))


def test_amounts_are_rounded_to_cents_as_numpy_rounds() -> None:
    tx, _, _ = simulate(handbook_config(handbook_exact=True, n_customers=60, n_terminals=200, nb_days=20))
    amounts = tx.loc[tx[schema.TX_FRAUD_SCENARIO] != 3, schema.TX_AMOUNT].to_numpy()
    assert len(amounts) > 500
    np.testing.assert_array_equal(amounts, np.round(amounts, 2))


def test_scenario_3_picks_a_third_of_the_compromised_cards_rows_with_the_days_seed() -> None:
    tx = pd.DataFrame(
        {
            schema.CUSTOMER_ID: [1, 2, 1, 3, 1, 2, 1, 1, 2],
            schema.TERMINAL_ID: [10, 11, 12, 13, 14, 15, 16, 17, 18],
            schema.TX_AMOUNT: [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 300.0],
            schema.TX_TIME_DAYS: [0, 0, 1, 1, 2, 2, 3, 20, 3],
        }
    )
    add_frauds(tx, [[13]], [[1, 2]], terminal_days=2, card_days=14)
    # Day 0's cards 1 and 2 have rows 0,1,2,4,5,6,8 in [0, 14): k = 7 // 3 = 2, by random.seed(0).
    picked = sorted(random.Random(0).sample([0, 1, 2, 4, 5, 6, 8], k=2))
    expected_scen = np.zeros(9, dtype=np.int8)
    expected_scen[8] = 1  # amount > 220
    expected_scen[3] = 2  # terminal 13 on day 1 of its window
    expected_scen[picked] = 3
    assert tx[schema.TX_FRAUD_SCENARIO].tolist() == expected_scen.tolist()
    base = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 300.0]
    assert tx[schema.TX_AMOUNT].tolist() == [a * 5 if i in picked else a for i, a in enumerate(base)]
    assert tx[schema.TX_FRAUD].tolist() == (expected_scen > 0).astype(int).tolist()


def test_exact_replay_needs_handbook_mode_and_its_card_share() -> None:
    with pytest.raises(ValueError, match="handbook_exact needs handbook"):
        SimulatorConfig(handbook_exact=True)
    with pytest.raises(ValueError, match="card_fraud_share of 1/3"):
        handbook_config(handbook_exact=True, card_fraud_share=0.5)
