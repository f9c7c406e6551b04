"""monitoring/performance.py: AP and CP@k per window, only once every label of the window arrived."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from level4_fraud import evaluate
from level4_fraud.monitoring.performance import (
    LABELLED,
    PARTIAL,
    PENDING,
    PerformanceConfig,
    labels_arrived,
    latest_labelled_windows,
    performance_by_window,
)


def _days(n_days: int = 10, per_day: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2018-05-01")
    rows = []
    for d in range(n_days):
        t = (
            start
            + pd.Timedelta(days=d)
            + pd.to_timedelta(np.sort(rng.integers(0, 86_399, per_day)), unit="s")
        )
        y = (rng.random(per_day) < 0.1).astype(float)
        rows.append(
            pd.DataFrame({"TX_DATETIME": t, "CUSTOMER_ID": rng.integers(0, 150, per_day), "TX_FRAUD": y})
        )
    frame = pd.concat(rows, ignore_index=True)
    score = np.clip(frame["TX_FRAUD"].to_numpy() * 0.4 + rng.random(len(frame)) * 0.8, 0, 1)
    return frame, score


def test_labels_arrive_delay_days_after_the_transaction_or_at_their_late_date():
    frame = pd.DataFrame(
        {
            "TX_DATETIME": pd.to_datetime(["2018-05-01 10:00", "2018-05-01 10:00", "2018-05-02 10:00"]),
            "TX_FRAUD": [1.0, 0.0, np.nan],
            "LABEL_AVAILABLE_FROM": pd.to_datetime([None, "2018-05-20", None]),
        }
    )
    got = labels_arrived(frame, pd.Timestamp("2018-05-08 10:00"), 7)
    assert got.tolist() == [True, False, False]  # late label not yet; no label at all never


def test_windows_without_all_their_labels_are_excluded():
    frame, score = _days(10)
    as_of = pd.Timestamp("2018-05-11 12:00")  # with a 7-day delay: days 1-3 complete, day 4 partial
    table = performance_by_window(frame, score, as_of, PerformanceConfig(delay_days=7))
    assert table["status"].tolist() == [LABELLED] * 3 + [PARTIAL] + [PENDING] * 6
    assert table["average_precision"].iloc[:3].notna().all()
    assert (
        table["average_precision"].iloc[3:].isna().all()
        and table["card_precision_at_k"].iloc[3:].isna().all()
    )
    assert table["n_labelled"].iloc[4:].eq(0).all() and table["n_labelled"].iloc[3] > 0
    assert latest_labelled_windows(table, 2) == [pd.Timestamp("2018-05-02"), pd.Timestamp("2018-05-03")]


def test_window_metrics_are_the_levels_own():
    frame, score = _days(4, seed=1)
    table = performance_by_window(frame, score, "2018-06-01", PerformanceConfig(delay_days=7, top_k=20))
    day = frame["TX_DATETIME"].dt.normalize() == pd.Timestamp("2018-05-02")
    assert table.loc["2018-05-02", "average_precision"] == pytest.approx(
        evaluate.average_precision(frame.loc[day, "TX_FRAUD"], score[day.to_numpy()])
    )
    cp, _ = evaluate.card_precision_at_k(frame.loc[day], score[day.to_numpy()], 20)
    assert table.loc["2018-05-02", "card_precision_at_k"] == pytest.approx(cp)


def test_rows_after_as_of_are_ignored_and_labels_of_the_future_are_not_read():
    frame, score = _days(3, seed=2)
    as_of = pd.Timestamp("2018-05-02")
    before = performance_by_window(frame, score, as_of, PerformanceConfig(delay_days=0))
    # Changing every label after as_of changes nothing.
    flipped = frame.copy()
    later = flipped["TX_DATETIME"] >= as_of
    flipped.loc[later, "TX_FRAUD"] = 1 - flipped.loc[later, "TX_FRAUD"]
    after = performance_by_window(flipped, score, as_of, PerformanceConfig(delay_days=0))
    pd.testing.assert_frame_equal(before, after)
    assert list(before.index) == [pd.Timestamp("2018-05-01")]


def test_a_window_without_fraud_has_no_metric():
    frame, score = _days(2, seed=3)
    frame["TX_FRAUD"] = 0.0
    table = performance_by_window(frame, score, "2018-06-01", PerformanceConfig(delay_days=7))
    assert (table["status"] == LABELLED).all()
    assert all(math.isnan(v) for v in table["average_precision"])
