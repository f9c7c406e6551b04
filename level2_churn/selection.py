"""Feature selection fitted on a training window only (so it cannot leak the window it is judged on).

Two steps:
1. drop constant features and near-duplicates (|Pearson r| above a threshold on numeric columns;
   the later column of each pair goes);
2. permutation importance: fit LightGBM on the earlier part of the training window, permute each
   feature on the later part, keep features whose permutation lowers PR-AUC by more than
   ``min_importance`` (never fewer than ``min_features``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from level2_churn.config import SelectionConfig
from level2_churn.models import categorical_columns, fit_estimator


@dataclass
class SelectionResult:
    """Kept features, why the others went, and the permutation importances."""

    kept: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    importance: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))


def constant_and_duplicates(
    X: pd.DataFrame, *, corr_threshold: float = 0.98, sample_rows: int = 20000, seed: int = 0
) -> dict[str, str]:
    """Features to drop: constant ones, then the later of each highly correlated numeric pair.

    Returns:
        Mapping feature -> reason (``constant`` or ``near-duplicate of <col>``).
    """
    dropped: dict[str, str] = {}
    for c in X.columns:
        if X[c].nunique(dropna=False) <= 1:
            dropped[c] = "constant"
    cats = set(categorical_columns(X))
    nums = [c for c in X.columns if c not in cats and c not in dropped]
    if len(nums) > 1:
        sample = (
            X[nums].sample(n=min(sample_rows, len(X)), random_state=seed) if len(X) > sample_rows else X[nums]
        )
        corr = sample.astype(float).corr().abs().to_numpy()
        for j in range(len(nums)):
            if nums[j] in dropped:
                continue
            for i in range(j):
                if nums[i] not in dropped and corr[i, j] > corr_threshold:
                    dropped[nums[j]] = f"near-duplicate of {nums[i]}"
                    break
    return dropped


def select_features(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    cfg: SelectionConfig,
    inner_valid: np.ndarray,
    imbalance: str = "none",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    undersample_ratio: float = 0.25,
    smote_ratio: float = 0.25,
) -> SelectionResult:
    """Select features using only the rows given (one training window).

    Args:
        X: Training-window features.
        y: Training-window labels.
        cfg: Selection settings.
        inner_valid: Boolean mask of the rows used to measure importance (the latest part of the
            window for time-ordered data); the model is fitted on the others.
        imbalance: Treatment used when fitting the importance model.
        params: LightGBM parameters of the importance model.
        seed: Seed.
        n_jobs: LightGBM threads.
        undersample_ratio: Positives/negatives after undersampling (when `imbalance` is ``undersample``).
        smote_ratio: Positives/negatives after SMOTE (when `imbalance` is ``smote``).
    """
    y = np.asarray(y).astype(int)
    dropped = constant_and_duplicates(
        X, corr_threshold=cfg.corr_threshold, sample_rows=cfg.sample_rows, seed=seed
    )
    candidates = [c for c in X.columns if c not in dropped]
    inner_valid = np.asarray(inner_valid, dtype=bool)
    y_in, y_out = y[~inner_valid], y[inner_valid]
    if len(candidates) <= cfg.min_features or y_in.sum() < 2 or y_out.sum() < 2 or y_out.sum() == len(y_out):
        return SelectionResult(kept=candidates, dropped=dropped)
    model = fit_estimator(
        "lgbm",
        X.loc[~inner_valid, candidates],
        y_in,
        params=params,
        imbalance=imbalance,
        seed=seed,
        n_jobs=n_jobs,
        undersample_ratio=undersample_ratio,
        smote_ratio=smote_ratio,
    )
    result = permutation_importance(
        model,
        X.loc[inner_valid, candidates],
        y_out,
        scoring="average_precision",
        n_repeats=cfg.n_repeats,
        random_state=seed,
        n_jobs=1,
    )
    importance = pd.Series(result.importances_mean, index=candidates).sort_values(ascending=False)
    kept = [c for c in importance.index if importance[c] > cfg.min_importance]
    if len(kept) < cfg.min_features:
        kept = list(importance.index[: cfg.min_features])
    for c in candidates:
        if c not in kept:
            dropped[c] = f"permutation importance {importance[c]:+.4f}"
    kept = [c for c in X.columns if c in kept]  # keep the original column order
    return SelectionResult(kept=kept, dropped=dropped, importance=importance)


def inner_split_mask(
    dates: pd.Series | None, y: np.ndarray, *, seed: int = 0, share: float = 0.25
) -> np.ndarray:
    """Rows to measure importance on: the latest snapshot date (time-ordered data) or a stratified share."""
    if dates is not None:
        d = pd.to_datetime(pd.Series(dates)).to_numpy()
        periods = np.unique(d)
        if len(periods) >= 2:
            return d == periods[-1]
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    _, out = train_test_split(idx, test_size=share, stratify=y, random_state=seed)
    mask = np.zeros(len(y), dtype=bool)
    mask[out] = True
    return mask
