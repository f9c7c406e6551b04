"""Split, fit a first model with default settings, and compare it with a baseline.

A *baseline* is the score you get without learning anything from the
features: always predict the most frequent class (classification) or the mean
(regression). A model is only useful if it beats it clearly; on a 90/10 class
split the baseline is already 90 % accurate.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from level1_eda.config import L1Config
from level1_eda.features import as_text, build_preprocessor
from level1_eda.schema import Schema

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Train and test rows (features and target), and notes on how they were drawn."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    notes: list[str] = field(default_factory=list)


def split_data(df: pd.DataFrame, schema: Schema, cfg: L1Config) -> Split:
    """Hold out a test set, stratified by class so each class keeps its share.

    Files larger than ``cfg.max_train_rows`` training rows are first sampled
    (stratified) to that size plus its test share: a linear model's score
    stops improving long before a million rows, and the test set stays large.
    """
    y = class_labels(df[schema.target]) if schema.task == "classification" else df[schema.target]
    notes = []
    limit = math.ceil(cfg.max_train_rows / (1 - cfg.test_size))
    if len(df) > limit:
        keep, _ = train_test_split(
            df.index,
            train_size=limit,
            random_state=cfg.seed,
            stratify=y if schema.task == "classification" else None,
        )
        df, y = df.loc[keep], y.loc[keep]
        notes.append(
            f"{limit:,} rows sampled for modelling (max_train_rows={cfg.max_train_rows:,} for training)"
        )
    X = df[schema.features]
    stratify = y if schema.task == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=cfg.test_size, random_state=cfg.seed, stratify=stratify
    )
    notes.insert(
        0, f"{len(X_train):,} training rows, {len(X_test):,} test rows (test share {cfg.test_size:.0%})"
    )
    return Split(X_train, X_test, y_train, y_test, notes)


def class_labels(y: pd.Series) -> pd.Series:
    """Class labels as plain strings ("Adelie", "1", "true"), the same at training and prediction."""
    return y.map(as_text, na_action="ignore").astype(object)


def make_estimator(task: str, kind: str, seed: int) -> Any:
    """The model (``kind="model"``) or the baseline (``kind="baseline"``) for a task."""
    if kind == "baseline":
        return DummyClassifier(strategy="most_frequent") if task == "classification" else DummyRegressor()
    if task == "classification":
        # Default settings; more iterations only so the solver finishes on large files.
        return LogisticRegression(max_iter=1000, random_state=seed)
    return LinearRegression()


def build_model(
    schema: Schema, cfg: L1Config, *, kind: str = "model", numeric_strategy: str = "median"
) -> Pipeline:
    """Feature pipeline + estimator, unfitted: one object to fit, save and apply."""
    features = build_preprocessor(
        schema.numeric,
        schema.categorical,
        numeric_strategy=numeric_strategy,
        max_categories=cfg.max_categories,
    )
    return Pipeline([("features", features), ("model", make_estimator(schema.task, kind, cfg.seed))])


def scoring(task: str) -> str:
    """The headline metric: accuracy for classification, R² for regression."""
    return "accuracy" if task == "classification" else "r2"


def cv_splitter(y: pd.Series, task: str, cfg: L1Config) -> StratifiedKFold | KFold:
    """Stratified k-fold for classes (fewer folds if a class is rarer than k), k-fold otherwise."""
    if task == "classification":
        k = int(min(cfg.cv_folds, y.value_counts().min()))
        return StratifiedKFold(n_splits=max(k, 2), shuffle=True, random_state=cfg.seed)
    return KFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)


def cross_validate(
    model: Pipeline, X: pd.DataFrame, y: pd.Series, task: str, cfg: L1Config
) -> dict[str, Any]:
    """k-fold cross-validation on the training rows: mean, std and each fold's score.

    Each fold refits the whole pipeline (imputers and encoder included) on its
    own training part, so the held-out fold stays unseen, as the test set does.
    """
    folds = cv_splitter(y, task, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, X, y, cv=folds, scoring=scoring(task), n_jobs=1)
    return {
        "metric": scoring(task),
        "folds": int(folds.get_n_splits()),
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "scores": [float(s) for s in scores],
    }


@dataclass
class Trained:
    """The fitted model and baseline with their cross-validation scores."""

    model: Pipeline
    baseline: Pipeline
    cv_model: dict[str, Any]
    cv_baseline: dict[str, Any]


def train(split: Split, schema: Schema, cfg: L1Config) -> Trained:
    """Cross-validate, then fit the model and the baseline on all training rows.

    Args:
        split: Train/test rows from `split_data` (only the training part is used here).
        schema: Feature columns and task.
        cfg: Seed, folds, thresholds.
    """
    model = build_model(schema, cfg)
    baseline = build_model(schema, cfg, kind="baseline")
    cv_model = cross_validate(model, split.X_train, split.y_train, schema.task, cfg)
    cv_baseline = cross_validate(baseline, split.X_train, split.y_train, schema.task, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(split.X_train, split.y_train)
    baseline.fit(split.X_train, split.y_train)
    return Trained(model, baseline, cv_model, cv_baseline)


def fit_final(split: Split, schema: Schema, cfg: L1Config) -> Pipeline:
    """Refit the same, unfitted pipeline on every modelling row (training and test rows together).

    The test rows have done their job once the evaluated model has been scored on
    them; the model that is saved and applied to new rows then learns from every
    labelled row, as practitioners do. Its expected score is the test score of the
    evaluated model (more rows rarely make a model worse). When a large file was
    sampled down by ``max_train_rows``, "every row" means every row of that sample.

    Args:
        split: Train/test rows from `split_data`; both parts are used.
        schema: Feature columns and task.
        cfg: Seed and thresholds (the same as for `train`).

    Returns:
        A fitted `Pipeline` with the same steps and settings as `Trained.model`.
    """
    X = pd.concat([split.X_train, split.X_test])
    y = pd.concat([split.y_train, split.y_test])
    model = build_model(schema, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return model
