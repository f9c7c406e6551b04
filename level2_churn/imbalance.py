"""Class-imbalance treatments, applied to a training window only (never to validation or test).

* ``none``: train on the data as it is.
* ``class_weight``: weight positives by negatives/positives (LightGBM ``scale_pos_weight``,
  logistic ``class_weight="balanced"``).
* ``undersample``: drop random negatives until positives/negatives reaches a ratio.
* ``smote``: synthesise positives between neighbouring positives (SMOTE-NC when there are
  categorical columns). SMOTE needs complete rows, so missing numbers get the training median and
  missing categories their own code while neighbours are found; the NaNs are put back afterwards.

Resampling before the split leaks synthetic copies of validation rows into training: the published
0.99 ROC-AUCs on the Telco data come from exactly that. Here the treatments run inside `fit`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

METHODS = ("none", "class_weight", "undersample", "smote")


def scale_pos_weight(y: np.ndarray) -> float:
    """Negatives per positive (LightGBM's ``scale_pos_weight`` for balanced classes)."""
    y = np.asarray(y)
    pos = int(y.sum())
    return float((len(y) - pos) / max(pos, 1))


def model_params(method: str, y: np.ndarray) -> dict[str, Any]:
    """Extra LightGBM parameters a treatment needs (only ``class_weight`` has any)."""
    return {"scale_pos_weight": scale_pos_weight(y)} if method == "class_weight" else {}


def resample(
    X: pd.DataFrame,
    y: np.ndarray,
    method: str,
    *,
    seed: int,
    undersample_ratio: float = 0.25,
    smote_ratio: float = 0.25,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return the training rows a treatment trains on.

    Args:
        X: Training features (numeric and pandas ``category`` columns).
        y: Training labels.
        method: One of `METHODS`; ``none`` and ``class_weight`` return the input unchanged.
        seed: Sampler seed.
        undersample_ratio: Positives/negatives after undersampling.
        smote_ratio: Positives/negatives after SMOTE.
    """
    if method not in METHODS:
        raise ValueError(f"unknown imbalance method {method!r}")
    y = np.asarray(y).astype(int)
    if method in ("none", "class_weight"):
        return X, y
    pos_rate = y.mean() / max(1 - y.mean(), 1e-12)
    if method == "undersample":
        from imblearn.under_sampling import RandomUnderSampler

        if pos_rate >= undersample_ratio:
            return X, y
        sampler = RandomUnderSampler(sampling_strategy=undersample_ratio, random_state=seed)
        sampler.fit_resample(np.zeros((len(y), 1)), y)
        keep = np.sort(sampler.sample_indices_)
        return X.iloc[keep].reset_index(drop=True), y[keep]
    return _smote(X, y, ratio=smote_ratio, seed=seed, pos_rate=pos_rate)


def _smote(
    X: pd.DataFrame, y: np.ndarray, *, ratio: float, seed: int, pos_rate: float
) -> tuple[pd.DataFrame, np.ndarray]:
    from imblearn.over_sampling import SMOTE, SMOTENC

    if pos_rate >= ratio or y.sum() < 2:
        return X, y
    cat_cols = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    num_cols = [c for c in X.columns if c not in cat_cols]
    filled = pd.DataFrame(index=X.index)
    fills: dict[str, float] = {}
    for c in num_cols:
        col = X[c].astype(float)
        med = col.median()
        fills[c] = 0.0 if np.isnan(med) else float(med)
        filled[c] = col.fillna(fills[c])
    for c in cat_cols:
        filled[c] = X[c].cat.codes.astype(int)  # -1 (missing) is its own category
    filled = filled[list(X.columns)]
    k = int(min(5, y.sum() - 1))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    # The same count imbalanced-learn derives from a float ratio (ratio x negatives, truncated).
    target = {1: max(int(ratio * len(neg)), len(pos))}
    if cat_cols and num_cols:
        cat_idx = [filled.columns.get_loc(c) for c in cat_cols]
        sampler: Any = SMOTENC(cat_idx, sampling_strategy=target, k_neighbors=k, random_state=seed)
    else:
        sampler = SMOTE(sampling_strategy=target, k_neighbors=k, random_state=seed)
    # SMOTE only looks at positives (neighbours, spreads, interpolation), but SMOTE-NC one-hot encodes
    # and decodes every row it is given, row by row: with all the negatives that decoding was most of
    # the treatment's time. Give it the positives and one negative (it needs both classes) and append
    # the synthetic rows it returns after them; the synthetic rows are the same.
    feed = np.concatenate([pos, neg[:1]])
    values = filled.to_numpy(dtype=float)
    Xs, _ = sampler.fit_resample(values[feed], y[feed])
    synthetic = np.asarray(Xs)[len(feed) :]
    Xr = np.vstack([values, synthetic])
    yr = np.concatenate([y, np.ones(len(synthetic), dtype=int)])
    out = pd.DataFrame(Xr, columns=filled.columns)
    n = len(X)
    for c in cat_cols:
        codes = np.rint(out[c].to_numpy()).astype(int)
        out[c] = pd.Categorical.from_codes(codes, dtype=X[c].dtype)
    for c in num_cols:
        values = out[c].to_numpy(dtype=float)
        # Missing often means something ("never had a failed payment"); the model sees NaN at scoring
        # time, so it must see NaN in training too: original rows get their NaNs back, and a synthetic
        # value that is exactly the fill value came from two missing neighbours.
        if X[c].isna().any():
            values[n:][values[n:] == fills[c]] = np.nan
            values[:n] = X[c].to_numpy(dtype=float)
        # Counts stay whole numbers: a synthetic customer with 1.4 failed payments is no customer.
        observed = X[c].dropna().to_numpy(dtype=float)
        if len(observed) and np.all(observed == np.round(observed)):
            values = np.where(np.isnan(values), values, np.rint(values))
        out[c] = values
    return out, np.asarray(yr).astype(int)
