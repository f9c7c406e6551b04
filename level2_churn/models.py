"""Estimators: the logistic baseline, LightGBM, probability calibrators and the saved `ChurnModel`.

Every estimator takes a DataFrame of numeric and pandas ``category`` columns. LightGBM uses the
categories natively; the logistic baseline one-hot encodes them and imputes/scales numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from level2_churn.imbalance import model_params, resample

# Used as is by the screening stages (imbalance, selection) and as the search's first trial.
# Small trees with strong regularisation: the churn hazard is close to additive in its inputs, and
# a few thousand positives do not support deep interactions. 63 histogram bins instead of 255 give
# the same PR-AUC here at about half the training time.
LGBM_DEFAULTS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "max_bin": 63,
    "num_leaves": 7,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
}


def categorical_columns(X: pd.DataFrame) -> list[str]:
    """Columns with pandas ``category`` dtype."""
    return [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]


def _as_text(X: pd.DataFrame) -> pd.DataFrame:
    # Module-level (not a lambda) so the fitted pipeline pickles.
    return X.astype(object).where(X.notna(), "missing").astype(str)


def make_logistic(X: pd.DataFrame, *, class_weight: str | None = None, seed: int = 0) -> Pipeline:
    """Impute + scale numbers, one-hot categories, L2 logistic regression."""
    cats = categorical_columns(X)
    nums = [c for c in X.columns if c not in cats]
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                nums,
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("text", FunctionTransformer(_as_text)),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=5)),
                    ]
                ),
                cats,
            ),
        ],
        remainder="drop",
    )
    clf = LogisticRegression(C=1.0, max_iter=500, class_weight=class_weight, random_state=seed)
    return Pipeline([("pre", pre), ("clf", clf)])


def make_lgbm(params: dict[str, Any] | None = None, *, seed: int = 0, n_jobs: int = 1) -> Any:
    """A LightGBM classifier with the level's defaults updated by `params`."""
    from lightgbm import LGBMClassifier

    merged = {**LGBM_DEFAULTS, **(params or {})}
    # Column-wise histograms: LightGBM otherwise times both layouts on every fit (the search makes
    # dozens) and, at ~50 features, col-wise was about 20% faster per fit here anyway.
    merged.setdefault("force_col_wise", True)
    return LGBMClassifier(**merged, random_state=seed, n_jobs=n_jobs, verbose=-1)


def fit_estimator(
    kind: str,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    params: dict[str, Any] | None = None,
    imbalance: str = "none",
    seed: int = 0,
    n_jobs: int = 1,
    undersample_ratio: float = 0.25,
    smote_ratio: float = 0.25,
) -> Any:
    """Apply the imbalance treatment to the training rows and fit a ``logistic`` or ``lgbm`` model."""
    Xr, yr = resample(
        X, y, imbalance, seed=seed, undersample_ratio=undersample_ratio, smote_ratio=smote_ratio
    )
    if kind == "logistic":
        model = make_logistic(Xr, class_weight="balanced" if imbalance == "class_weight" else None, seed=seed)
    elif kind == "lgbm":
        model = make_lgbm({**(params or {}), **model_params(imbalance, yr)}, seed=seed, n_jobs=n_jobs)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    model.fit(Xr, yr)
    return model


def positive_scores(model: Any, X: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class."""
    return np.asarray(model.predict_proba(X))[:, 1]


# ---------------------------------------------------------------- calibration


@dataclass
class Calibrator:
    """Maps raw scores to probabilities: ``isotonic``, ``platt`` (logistic on the logit) or ``none``."""

    method: str
    model: Any = None

    def fit(self, scores: np.ndarray, y: np.ndarray) -> Calibrator:
        scores = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            self.model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
        elif self.method == "platt":
            self.model = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(scores)[:, None], y)
        elif self.method != "none":
            raise ValueError(f"unknown calibration {self.method!r}")
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            # Isotonic regression is a step function: every customer on a step gets the same
            # probability, and those ties throw away the model's ranking (PR-AUC drops). A tiny
            # multiple of the raw score breaks the ties in the model's order without moving any
            # probability by more than 1e-6.
            return np.asarray(self.model.predict(scores), dtype=float) + 1e-6 * scores
        if self.method == "platt":
            return np.asarray(self.model.predict_proba(_logit(scores)[:, None])[:, 1])
        return scores


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


# ---------------------------------------------------------------- the saved model


@dataclass
class ChurnModel:
    """What `train` saves and `score`/`telco-predict` load: features, categories, estimator, calibrator.

    Attributes:
        features: Columns the estimator reads, in order.
        categories: Category levels seen in training per categorical column (new levels become missing).
        estimator: Fitted LightGBM (or logistic) model.
        calibrator: Fitted calibrator applied to the estimator's scores.
        threshold: Contact customers with probability at or above this (chosen on validation).
        metadata: Anything worth keeping with the model (params, imbalance method, data source).
    """

    features: list[str]
    categories: dict[str, list[Any]]
    estimator: Any
    calibrator: Calibrator
    threshold: float = float("inf")
    metadata: dict[str, Any] = field(default_factory=dict)

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Select and type the feature columns of a new frame the way training saw them."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            from shared.errors import SchemaError

            raise SchemaError(f"input lacks feature columns the model needs: {', '.join(missing[:8])}")
        X = frame[self.features].copy()
        for c in self.features:
            if c in self.categories:
                X[c] = pd.Categorical(X[c].astype(object), categories=self.categories[c])
            else:
                X[c] = pd.to_numeric(X[c], errors="coerce").astype(float)
        return X

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated estimator scores."""
        return positive_scores(self.estimator, self.prepare(frame))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities."""
        return np.clip(self.calibrator.transform(self.raw_scores(frame)), 0.0, 1.0)


def category_levels(X: pd.DataFrame) -> dict[str, list[Any]]:
    """Category levels of every categorical column."""
    return {c: list(X[c].cat.categories) for c in categorical_columns(X)}
