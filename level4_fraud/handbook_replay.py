"""The Fraud Detection Handbook's own transaction generator, replayed draw for draw.

`simulate` with ``handbook=True`` draws the Handbook's distribution vectorised, from its own
random streams. That matches the published dataset's statistics, not its rows: a model's
Average Precision or Card Precision@100 then differs from the Handbook's published figures by
the luck of the draw (the weekly folds alone vary by ±0.01). With ``handbook_exact=True`` this
module replays the Handbook's generator instead (Le Borgne et al., chapter 3, "Transaction data
simulator"), so the result is the published dataset itself and the published baselines compare
like for like:

* per customer, ``random.seed(CUSTOMER_ID)`` and ``np.random.seed(CUSTOMER_ID)``, then per day a
  Poisson count, per transaction ``int(N(43200, 20000))`` seconds (kept only inside the day), an
  amount ``N(mean, std)`` (a negative one redrawn ``U(0, 2 mean)``, rounded to cents) and
  ``random.choice`` among the customer's terminals within the radius, in increasing id order;
* all customers' transactions sorted by time (pandas' default sort, as the Handbook's), ids
  numbered in that order;
* scenario 1: amount above 220; scenario 2: each day ``d < max TX_TIME_DAYS``, two terminals'
  transactions of days ``[d, d + 28)``; scenario 3: each such day, three cards, and
  ``random.seed(d); random.sample(their transactions of [d, d + 14), k = n // 3)`` multiplied by 5
  (not rounded) — later scenarios overwrite earlier labels, as in the Handbook.

It is a Python loop over 1.75 M transactions (about 7 s here) and holds the whole table in
memory: the full profile's data, not the 10 M-row scale test (which uses the vectorised draw).
One thing cannot be replayed from the text alone: the order of transactions that fall in the
same second, which the Handbook's unstable sort leaves to NumPy's sort implementation. Such ties
change transaction ids only, never a label or an amount, unless two compromised cards pay in the
same second inside a compromise window.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pandas as pd

from level4_fraud import schema

SECONDS_PER_DAY = 86_400


def customer_transactions(
    customer_id: int,
    rate: float,
    mean_amount: float,
    std_amount: float,
    n_terminals: int,
    nb_days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One customer's transactions, drawn exactly as the Handbook's ``generate_transactions_table``.

    Args:
        customer_id: Seeds both of the Handbook's generators.
        rate: Mean transactions per day (Poisson).
        mean_amount: Mean of the amount's normal distribution.
        std_amount: Its standard deviation.
        n_terminals: How many terminals the customer can use (0: the draws happen, nothing is kept).
        nb_days: Days simulated.

    Returns:
        ``(seconds since the start, raw amounts before rounding, terminal positions)``: positions
        index the customer's terminals in increasing id order.
    """
    py = random.Random(customer_id)  # == random.seed(customer_id)
    npr = np.random.RandomState(customer_id)  # == np.random.seed(customer_id)
    poisson, normal, uniform = npr.poisson, npr.normal, npr.uniform
    positions = range(n_terminals)
    secs: list[int] = []
    amounts: list[float] = []
    picks: list[int] = []
    for day in range(nb_days):
        for _ in range(poisson(rate)):
            t = int(normal(SECONDS_PER_DAY / 2, 20000))
            if 0 < t < SECONDS_PER_DAY:
                amount = normal(mean_amount, std_amount)
                if amount < 0:
                    amount = uniform(0, mean_amount * 2)
                if n_terminals > 0:
                    picks.append(py.choice(positions))
                    secs.append(t + day * SECONDS_PER_DAY)
                    amounts.append(amount)
    return (
        np.asarray(secs, dtype=np.int64),
        np.asarray(amounts, dtype=np.float64),
        np.asarray(picks, dtype=np.int64),
    )


def _genuine(
    customers: pd.DataFrame, near_ptr: np.ndarray, near_idx: np.ndarray, nb_days: int
) -> pd.DataFrame:
    secs, amounts, custs, terms = [], [], [], []
    for c in range(len(customers)):
        row = customers.iloc[c]
        lo, hi = int(near_ptr[c]), int(near_ptr[c + 1])
        own = np.sort(near_idx[lo:hi])  # the Handbook's np.where order
        s, a, p = customer_transactions(
            int(row[schema.CUSTOMER_ID]),
            float(row["mean_nb_tx_per_day"]),
            float(row["mean_amount"]),
            float(row["std_amount"]),
            hi - lo,
            nb_days,
        )
        secs.append(s)
        amounts.append(a)
        custs.append(np.full(len(s), int(row[schema.CUSTOMER_ID]), dtype=np.int64))
        terms.append(own[p] if len(p) else np.zeros(0, dtype=np.int64))
    frame = pd.DataFrame(
        {
            schema.CUSTOMER_ID: np.concatenate(custs),
            schema.TERMINAL_ID: np.concatenate(terms).astype(np.int64),
            # np.round, not Python's round: the Handbook rounds NumPy floats.
            schema.TX_AMOUNT: np.round(np.concatenate(amounts), decimals=2),
            schema.TX_TIME_SECONDS: np.concatenate(secs),
        }
    )
    return frame


def _rows_by_key(keys: np.ndarray) -> dict[int, np.ndarray]:
    """Row positions per key value, each in increasing row order."""
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    return dict(zip(uniq.tolist(), np.split(order, starts[1:]), strict=True))


def add_frauds(
    tx: pd.DataFrame,
    terminal_events: Sequence[Sequence[int]],
    card_events: Sequence[Sequence[int]],
    *,
    threshold: float = 220.0,
    terminal_days: int = 28,
    card_days: int = 14,
    factor: float = 5.0,
) -> None:
    """Label `tx` in place with the Handbook's ``add_frauds`` (scenarios 1-3, in its order).

    Args:
        tx: Transactions in time order with ``CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TIME_DAYS``.
        terminal_events: Per start day ``d`` (0, 1, ...), the terminals compromised that day.
        card_events: Per start day, the cards compromised that day.
        threshold: Scenario 1's amount.
        terminal_days: Days a terminal stays compromised.
        card_days: Days a card stays compromised.
        factor: Scenario 3's amount multiplier.
    """
    amount = tx[schema.TX_AMOUNT].to_numpy(dtype=np.float64).copy()
    day = tx[schema.TX_TIME_DAYS].to_numpy()
    scen = np.where(amount > threshold, 1, 0).astype(np.int8)
    by_terminal = _rows_by_key(tx[schema.TERMINAL_ID].to_numpy())
    for d, terminals in enumerate(terminal_events):
        for t in terminals:
            rows = by_terminal.get(int(t), np.zeros(0, dtype=np.int64))
            scen[rows[(day[rows] >= d) & (day[rows] < d + terminal_days)]] = 2
    by_card = _rows_by_key(tx[schema.CUSTOMER_ID].to_numpy())
    for d, cards in enumerate(card_events):
        parts = [by_card.get(int(c), np.zeros(0, dtype=np.int64)) for c in cards]
        rows = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        rows = rows[(day[rows] >= d) & (day[rows] < d + card_days)]
        picker = random.Random(d)  # == random.seed(day)
        picked = np.asarray(picker.sample(rows.tolist(), k=int(len(rows) / 3)), dtype=np.int64)
        if len(picked):
            amount[picked] = amount[picked] * factor
            scen[picked] = 3
    tx[schema.TX_AMOUNT] = amount
    tx[schema.TX_FRAUD] = (scen > 0).astype(np.int8)
    tx[schema.TX_FRAUD_SCENARIO] = scen


def handbook_transactions(
    customers: pd.DataFrame,
    near_ptr: np.ndarray,
    near_idx: np.ndarray,
    terminal_events: Sequence[Sequence[int]],
    card_events: Sequence[Sequence[int]],
    nb_days: int,
    start: pd.Timestamp,
    *,
    threshold: float = 220.0,
    terminal_days: int = 28,
    card_days: int = 14,
    factor: float = 5.0,
) -> pd.DataFrame:
    """The Handbook's ``generate_dataset`` + ``add_frauds``, in the Handbook's nine columns.

    Args:
        customers: The Handbook's customer table (``CUSTOMER_ID, mean_amount, std_amount,
            mean_nb_tx_per_day``), one row per customer id ``0..n-1``.
        near_ptr: CSR pointers of each customer's terminals within the radius.
        near_idx: Their terminal ids (any order: sorted here).
        terminal_events: Per start day, the compromised terminals (scenario 2).
        card_events: Per start day, the compromised cards (scenario 3).
        nb_days: Days simulated.
        start: Day 0's midnight.
        threshold: Scenario 1's amount.
        terminal_days: Days a terminal stays compromised.
        card_days: Days a card stays compromised.
        factor: Scenario 3's amount multiplier.

    Returns:
        ``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TIME_SECONDS,
        TX_TIME_DAYS, TX_FRAUD, TX_FRAUD_SCENARIO`` in time order.
    """
    tx = _genuine(customers, near_ptr, near_idx, nb_days)
    tx[schema.TX_DATETIME] = pd.Timestamp(start) + pd.to_timedelta(tx[schema.TX_TIME_SECONDS], unit="s")
    tx = tx.sort_values(schema.TX_DATETIME).reset_index(drop=True)  # pandas' default, as the Handbook
    tx[schema.TX_TIME_DAYS] = tx[schema.TX_TIME_SECONDS] // SECONDS_PER_DAY
    tx[schema.TRANSACTION_ID] = np.arange(len(tx), dtype=np.int64)
    # The Handbook starts compromises on days range(max TX_TIME_DAYS): fewer than nb_days - 1
    # when the last days hold no transaction.
    n_starts = int(tx[schema.TX_TIME_DAYS].max()) if len(tx) else 0
    add_frauds(
        tx,
        list(terminal_events)[:n_starts],
        list(card_events)[:n_starts],
        threshold=threshold,
        terminal_days=terminal_days,
        card_days=card_days,
        factor=factor,
    )
    return tx[list(schema.HANDBOOK_COLUMNS)]
