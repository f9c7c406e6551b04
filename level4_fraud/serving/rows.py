"""The run's ensemble on row matrices: the grey zone's model without sklearn's per-call overhead.

The grey zone scores one transaction and its ~30 occlusion substitutions at once. Through the
members' own ``predict_proba`` that batch costs tens of milliseconds, almost none of it
arithmetic: a pandas frame is built, the `ColumnTransformer` validates it, and the forest
dispatches each of its hundreds of trees through joblib with input checks, one Python call
per tree. At 2 % of traffic that is the service's largest cost and its whole p99.

`CompiledForest` keeps what the pipeline computes and drops the rest: the ordinal encoder
becomes one dict per column, and each tree is evaluated by its own Cython ``tree_.apply`` on
one float32 matrix (the same routine ``predict_proba`` ends in, so NaN routing and the float32
comparison are sklearn's own), with each leaf's class-1 share looked up from a precomputed
array and summed in the estimators' order. `RowEnsemble` combines the members with the run's
`Ensemble` as training did. Members that are not such forest pipelines (LightGBM, the
logistic regression) keep their own ``predict_proba`` on a frame. Every compiled member is
checked against its pipeline on a probe batch when it is built (`RowEnsemble.from_run`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# A compiled member must reproduce its pipeline's probabilities to this tolerance.
_TOLERANCE = 1e-9


class CompiledForest:
    """A fitted ``ColumnTransformer([passthrough numeric, OrdinalEncoder categorical]) -> forest``
    pipeline, evaluated tree by tree on a float32 matrix.

    Args:
        pipeline: The fitted sklearn `Pipeline` (steps ``prep`` and ``model``).
        numeric: Numeric input columns, in the pipeline's order.
        categorical: Categorical input columns, in the pipeline's order.

    Raises:
        ValueError: The pipeline is not of that shape.
    """

    def __init__(self, pipeline: Any, numeric: Sequence[str], categorical: Sequence[str]) -> None:
        prep, forest = _forest_parts(pipeline, numeric, categorical)
        self.n_numeric = len(numeric)
        self.codes: list[dict[str, float]] = []
        if categorical:
            encoder = prep.named_transformers_["cat"]
            self.codes = [{str(c): float(i) for i, c in enumerate(cats)} for cats in encoder.categories_]
        positive = int(np.flatnonzero(forest.classes_ == 1)[0])
        self.trees = [est.tree_ for est in forest.estimators_]
        self.leaf_p = [_positive_share(t.value, positive) for t in self.trees]

    def matrix(self, numeric: np.ndarray, categorical: Sequence[Sequence[Any]]) -> np.ndarray:
        """The forest's float32 input: numeric columns, then each category's ordinal code
        (-1 for a value unseen in training, as ``handle_unknown="use_encoded_value"``)."""
        n = len(numeric)
        x = np.empty((n, self.n_numeric + len(self.codes)), dtype=np.float32)
        x[:, : self.n_numeric] = numeric
        for j, codes in enumerate(self.codes):
            x[:, self.n_numeric + j] = [codes.get(str(row[j]), -1.0) for row in categorical]
        return x

    def predict(self, numeric: np.ndarray, categorical: Sequence[Sequence[Any]]) -> np.ndarray:
        """Probability of fraud per row (``predict_proba(...)[:, 1]`` of the pipeline)."""
        x = self.matrix(numeric, categorical)
        total = np.zeros(len(x), dtype=np.float64)
        for tree, leaf_p in zip(self.trees, self.leaf_p, strict=True):
            total += leaf_p[tree.apply(x)]
        return total / len(self.trees)


def _forest_parts(pipeline: Any, numeric: Sequence[str], categorical: Sequence[str]) -> tuple[Any, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    if not isinstance(pipeline, Pipeline) or [s for s, _ in pipeline.steps] != ["prep", "model"]:
        raise ValueError("not a prep -> model pipeline")
    prep, forest = pipeline.named_steps["prep"], pipeline.named_steps["model"]
    if not isinstance(prep, ColumnTransformer) or not isinstance(
        forest, RandomForestClassifier | ExtraTreesClassifier
    ):
        raise ValueError("not a ColumnTransformer -> random forest / extra trees pipeline")
    # the declared transformers (fitted ones replace "passthrough" by a FunctionTransformer)
    parts = {name: (trans, list(cols)) for name, trans, cols in prep.transformers}
    if prep.remainder != "drop" or set(parts) - {"num", "cat"}:
        raise ValueError("the pipeline transforms more than numeric and categorical columns")
    if parts.get("num", (None, []))[1] != list(numeric) or parts["num"][0] != "passthrough":
        raise ValueError("numeric columns are not passed through in the spec's order")
    if categorical and (
        not isinstance(parts.get("cat", (None,))[0], OrdinalEncoder)
        or parts["cat"][1] != list(categorical)
        or prep.named_transformers_["cat"].unknown_value != -1
    ):
        raise ValueError("categorical columns are not ordinal-encoded in the spec's order")
    if len(forest.classes_) != 2 or 1 not in forest.classes_:
        raise ValueError("not a binary forest with class 1")
    return prep, forest


def _positive_share(value: np.ndarray, positive: int) -> np.ndarray:
    """Each node's share of class `positive` (``DecisionTreeClassifier.predict_proba``'s
    normalisation: an all-zero row stays zero)."""
    v = np.asarray(value[:, 0, :], dtype=np.float64)
    norm = v.sum(axis=1)
    norm[norm == 0.0] = 1.0
    return np.ascontiguousarray(v[:, positive] / norm)


class RowEnsemble:
    """The run's ensemble scoring rows given as a numeric matrix and categorical tuples.

    Args:
        numeric: Numeric feature columns (the run's spec).
        categorical: Categorical feature columns.
        members: Member name -> fitted `baselines.BaselineModel`.
        ensemble: The run's `ensemble.Ensemble` (rank mean, stacking..., calibrated).
    """

    def __init__(
        self, numeric: Sequence[str], categorical: Sequence[str], members: Mapping[str, Any], ensemble: Any
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.members = dict(members)
        self.ensemble = ensemble
        self.compiled: dict[str, CompiledForest] = {}
        for name, model in self.members.items():
            # LightGBM, logistic regression: not forests, their own predict_proba
            with contextlib.suppress(ValueError):
                self.compiled[name] = CompiledForest(model.estimator, self.numeric, self.categorical)

    def frame(self, numeric: np.ndarray, categorical: Sequence[Sequence[Any]]) -> pd.DataFrame:
        """The rows as a feature frame, categories as pandas categoricals as in training (for
        members that read frames; LightGBM maps them to its training categories)."""
        df = pd.DataFrame(np.asarray(numeric, dtype=np.float64), columns=self.numeric)
        for j, col in enumerate(self.categorical):
            df[col] = pd.Categorical([str(row[j]) for row in categorical])
        return df

    def member_scores(
        self, numeric: np.ndarray, categorical: Sequence[Sequence[Any]]
    ) -> dict[str, np.ndarray]:
        """Each member's probability of fraud per row."""
        out: dict[str, np.ndarray] = {}
        frame = None
        for name, model in self.members.items():
            if name in self.compiled:
                out[name] = self.compiled[name].predict(numeric, categorical)
            else:
                frame = self.frame(numeric, categorical) if frame is None else frame
                out[name] = np.asarray(model.predict_proba(frame), dtype=np.float64)
        return out

    def predict(self, numeric: np.ndarray, categorical: Sequence[Sequence[Any]]) -> np.ndarray:
        """The ensemble's calibrated probability of fraud per row."""
        if len(numeric) == 0:
            return np.zeros(0)
        return np.asarray(self.ensemble.predict_proba(self.member_scores(numeric, categorical)))

    def verify(self, numeric: np.ndarray, categorical: Sequence[Sequence[Any]]) -> None:
        """Check every compiled member against its own pipeline on these rows; a member that
        disagrees goes back to its pipeline (never a silently different score)."""
        frame = self.frame(numeric, categorical)
        for name in list(self.compiled):
            fast = self.compiled[name].predict(numeric, categorical)
            slow = np.asarray(self.members[name].predict_proba(frame), dtype=np.float64)
            if not np.allclose(fast, slow, rtol=0.0, atol=_TOLERANCE):
                del self.compiled[name]

    @classmethod
    def from_run(cls, loaded: Any, probe: Mapping[str, Any]) -> RowEnsemble:
        """The ensemble of a `predict.LoadedRun`, its compiled members verified on rows built
        around `probe` (one value per feature: the typical row)."""
        ens = cls(
            loaded.spec.numeric,
            loaded.spec.categorical,
            {m: loaded.baselines[m] for m in loaded.ensemble.members},
            loaded.ensemble,
        )
        numeric, categorical = probe_rows(ens.numeric, ens.categorical, probe, ens.compiled.values())
        ens.verify(numeric, categorical)
        return ens


def probe_rows(
    numeric: Sequence[str],
    categorical: Sequence[str],
    probe: Mapping[str, Any],
    compiled: Any,
    n: int = 64,
    seed: int = 0,
) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    """Rows spread around `probe` for `RowEnsemble.verify`: numeric values scaled by random
    factors (some missing), categories drawn from the encoders' own plus one unseen value."""
    rng = np.random.default_rng(seed)
    base = np.array([float(probe.get(c, 0.0) or 0.0) for c in numeric], dtype=np.float64)
    values = base[None, :] * rng.lognormal(0.0, 1.0, size=(n, len(numeric)))
    values[rng.random(values.shape) < 0.05] = np.nan
    choices: list[list[str]] = [[str(probe.get(c))] for c in categorical]
    for forest in compiled:
        for j, codes in enumerate(forest.codes):
            choices[j] = sorted({*choices[j], *codes})
    cats = [tuple(str(rng.choice([*opts, "__unseen__"])) for opts in choices) for _ in range(n)]
    return values, cats
