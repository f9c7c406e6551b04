"""Evaluation design: walk-forward (expanding window) folds over snapshot months, and a final test.

A snapshot at month t carries the label "churned in the 30 days after t", so that label is only
known one month later. A model trained on snapshots up to month t can therefore be used from
month t+1 at the earliest; the `gap` between the last training month and the validation month
makes every fold honour that, the way the model will be used.

For tables without time (the Telco CSV) `stratified_plan` gives shuffled stratified folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from shared.errors import DataError


@dataclass(frozen=True)
class Fold:
    """Row positions of one training set and the window it is judged on."""

    name: str
    train_idx: np.ndarray
    valid_idx: np.ndarray
    train_periods: tuple[pd.Timestamp, ...] = ()
    valid_periods: tuple[pd.Timestamp, ...] = ()


@dataclass(frozen=True)
class SplitPlan:
    """Validation folds (for every choice) and the final test fold (touched once, at the end).

    ``test.train_idx`` is what the final model trains on; ``test.valid_idx`` the held-out rows.
    """

    folds: list[Fold]
    test: Fold
    kind: str = "walk_forward"
    notes: dict[str, int] = field(default_factory=dict)

    def describe(self) -> pd.DataFrame:
        """One row per fold (and the test) with its windows and sizes."""
        rows = []
        for fold in [*self.folds, self.test]:
            rows.append(
                {
                    "fold": fold.name,
                    "train_rows": len(fold.train_idx),
                    "valid_rows": len(fold.valid_idx),
                    "train_from": _fmt(fold.train_periods[0]) if fold.train_periods else "",
                    "train_to": _fmt(fold.train_periods[-1]) if fold.train_periods else "",
                    "valid_from": _fmt(fold.valid_periods[0]) if fold.valid_periods else "",
                    "valid_to": _fmt(fold.valid_periods[-1]) if fold.valid_periods else "",
                }
            )
        return pd.DataFrame(rows)


def _fmt(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def walk_forward(
    dates: pd.Series,
    *,
    n_folds: int = 4,
    gap_periods: int = 1,
    valid_periods: int = 1,
    test_periods: int = 1,
    min_train_periods: int = 2,
) -> SplitPlan:
    """Expanding-window folds over the distinct values of `dates`.

    The latest `test_periods` snapshot dates are the test window. The `n_folds` validation windows
    are the `valid_periods`-long blocks just before it; each fold trains on every date before its
    window minus `gap_periods`. The final model trains on every date before the test window minus the gap.

    Args:
        dates: Snapshot date of every row (any order).
        n_folds: Number of validation windows.
        gap_periods: Dates skipped between training and validation (and before the test).
        valid_periods: Dates per validation window.
        test_periods: Dates in the final test window.
        min_train_periods: Dates the first fold must train on.

    Returns:
        The plan; indices are row positions into `dates`.

    Raises:
        DataError: Too few distinct dates for this design.
    """
    values = pd.to_datetime(pd.Series(dates)).to_numpy()
    periods = np.unique(values)
    needed = min_train_periods + gap_periods + n_folds * valid_periods + test_periods
    if len(periods) < needed:
        raise DataError(
            f"walk-forward needs at least {needed} snapshot months "
            f"({min_train_periods} train + {gap_periods} gap + {n_folds}x{valid_periods} validation + "
            f"{test_periods} test), found {len(periods)}; simulate more months or use fewer folds"
        )
    n_dev = len(periods) - test_periods
    folds = []
    for i in range(n_folds):
        start = n_dev - (n_folds - i) * valid_periods
        valid_p = periods[start : start + valid_periods]
        train_p = periods[: start - gap_periods]
        folds.append(_fold(f"fold{i + 1}", values, train_p, valid_p))
    test = _fold("test", values, periods[: n_dev - gap_periods], periods[n_dev:])
    return SplitPlan(folds=folds, test=test, kind="walk_forward", notes={"periods": len(periods)})


def _fold(name: str, values: np.ndarray, train_p: np.ndarray, valid_p: np.ndarray) -> Fold:
    train_idx = np.flatnonzero(np.isin(values, train_p))
    valid_idx = np.flatnonzero(np.isin(values, valid_p))
    return Fold(
        name=name,
        train_idx=train_idx,
        valid_idx=valid_idx,
        train_periods=tuple(pd.Timestamp(p) for p in train_p),
        valid_periods=tuple(pd.Timestamp(p) for p in valid_p),
    )


def stratified_plan(y: np.ndarray, *, n_folds: int = 5, test_size: float = 0.2, seed: int = 0) -> SplitPlan:
    """Stratified hold-out test plus stratified K folds on the rest (tables without time).

    Args:
        y: Binary labels.
        n_folds: Cross-validation folds on the development part.
        test_size: Share of rows held out as the test set.
        seed: Shuffling seed.

    Raises:
        DataError: A class has too few rows to stratify.
    """
    y = np.asarray(y)
    counts = np.bincount(y.astype(int), minlength=2)
    if counts.min() < n_folds + 2:
        raise DataError(
            f"each class needs at least {n_folds + 2} rows for {n_folds}-fold validation; "
            f"found {counts[0]} negatives and {counts[1]} positives"
        )
    idx = np.arange(len(y))
    dev_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    dev_idx = np.sort(dev_idx)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = [
        Fold(f"fold{i + 1}", dev_idx[tr], dev_idx[va])
        for i, (tr, va) in enumerate(skf.split(dev_idx, y[dev_idx]))
    ]
    return SplitPlan(folds=folds, test=Fold("test", dev_idx, np.sort(test_idx)), kind="stratified")
