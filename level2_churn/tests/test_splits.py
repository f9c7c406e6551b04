"""Walk-forward and stratified splits: ordering, gap, no overlap, expanding windows, test = latest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level2_churn.splits import stratified_plan, walk_forward
from shared.errors import DataError


@pytest.fixture
def dates() -> pd.Series:
    months = pd.date_range("2024-01-01", periods=12, freq="MS")
    rng = np.random.default_rng(0)
    return pd.Series(rng.choice(months, 3000))  # shuffled rows, as in a real table


def test_walk_forward_orders_gaps_and_holds_out_latest(dates: pd.Series) -> None:
    plan = walk_forward(dates, n_folds=4, gap_periods=1, valid_periods=1, test_periods=2)
    months = np.sort(dates.unique())
    assert len(plan.folds) == 4
    test_dates = set(dates.iloc[plan.test.valid_idx])
    assert test_dates == set(months[-2:])
    previous_train: set[int] = set()
    previous_valid_start = None
    for fold in plan.folds:
        train_d, valid_d = dates.iloc[fold.train_idx], dates.iloc[fold.valid_idx]
        assert not set(fold.train_idx) & set(fold.valid_idx)
        # gap: exactly one snapshot month between the last training month and the validation month
        between = [m for m in months if train_d.max() < m < valid_d.min()]
        assert len(between) == 1
        assert valid_d.max() < min(test_dates)  # validation never touches the test window
        assert previous_train <= set(fold.train_idx)  # expanding window
        if previous_valid_start is not None:
            assert valid_d.min() > previous_valid_start
        previous_train, previous_valid_start = set(fold.train_idx), valid_d.min()
    final_train = dates.iloc[plan.test.train_idx]
    assert [m for m in months if final_train.max() < m < min(test_dates)] == [months[-3]]
    # every row before the gap is used by the final model
    assert len(plan.test.train_idx) == int((dates <= months[-4]).sum())


def test_walk_forward_rejects_too_few_months(dates: pd.Series) -> None:
    with pytest.raises(DataError, match="at least 13 snapshot months"):
        walk_forward(dates, n_folds=9, gap_periods=1, test_periods=1, min_train_periods=2)


def test_describe_lists_every_window(dates: pd.Series) -> None:
    table = walk_forward(dates, n_folds=4).describe()
    assert list(table["fold"]) == ["fold1", "fold2", "fold3", "fold4", "test"]
    assert (table["train_to"] < table["valid_from"]).all()


def test_stratified_plan_keeps_class_shares_and_disjoint_test() -> None:
    y = np.r_[np.ones(260), np.zeros(740)].astype(int)
    plan = stratified_plan(y, n_folds=5, test_size=0.2, seed=1)
    assert len(plan.test.valid_idx) == 200
    assert abs(y[plan.test.valid_idx].mean() - 0.26) < 0.01
    assert not set(plan.test.valid_idx) & set(plan.test.train_idx)
    for fold in plan.folds:
        assert not set(fold.valid_idx) & set(plan.test.valid_idx)
        assert not set(fold.train_idx) & set(fold.valid_idx)


def test_stratified_plan_rejects_a_tiny_class() -> None:
    with pytest.raises(DataError, match="each class needs"):
        stratified_plan(np.r_[np.ones(3), np.zeros(50)].astype(int), n_folds=5)


def test_capped_sample_is_uniform_and_bounded() -> None:
    from level2_churn.train import capped

    idx = np.arange(10_000)
    assert capped(idx, None, 0) is idx and capped(idx, 20_000, 0) is idx
    sample = capped(idx, 1_000, 0)
    assert len(sample) == 1_000 and len(np.unique(sample)) == 1_000 and np.all(np.diff(sample) > 0)
    assert abs(sample.mean() - idx.mean()) < 300  # spread over the whole window, not its start


def test_capped_sample_stratified_by_label_keeps_the_churn_rate() -> None:
    from level2_churn.train import capped

    rng = np.random.default_rng(1)
    idx = np.arange(100_000) * 3  # positions need not be contiguous
    y = (rng.random(len(idx)) < 0.037).astype(int)
    sample = capped(idx, 5_000, 0, y=y)
    assert abs(len(sample) - 5_000) <= 1 and np.all(np.diff(sample) > 0) and np.isin(sample, idx).all()
    y_sample = y[np.searchsorted(idx, sample)]
    # Exact to one row, where a uniform sample of 5,000 at 3.7% wanders by about 0.27 points.
    assert abs(y_sample.sum() - round(5_000 * y.mean())) <= 1
