"""From a raw data frame to a model's input matrix, as one scikit-learn Pipeline.

Every step that learns something from data (medians, most frequent levels,
scaling, the list of categories) sits inside the pipeline, so `fit` sees the
training rows only and `predict` replays exactly the same steps on new rows.
That is how we avoid *leakage*: nothing about the test rows reaches training.

    raw frame ──► CoerceColumns ──► ColumnTransformer ──► model
                  (types, absent      ├─ numeric: median fill ─► standard scaling
                   columns)           └─ categorical: most-frequent fill ─► one-hot
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


class CoerceColumns(TransformerMixin, BaseEstimator):
    """Give every feature column the type the model expects, whatever the CSV held.

    Numeric columns become floats (text that is not a number becomes missing);
    categorical columns become strings with ``NaN`` for missing. A feature absent
    from a new file is added as all-missing, so the imputers fill it. It learns
    nothing from data, so it cannot leak.

    Args:
        numeric: Numeric feature names.
        categorical: Categorical feature names.
    """

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: Any = None) -> CoerceColumns:
        self.n_features_in_ = len(self.numeric) + len(self.categorical)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for col in self.numeric:
            s = X[col] if col in X.columns else pd.Series(np.nan, index=X.index)
            if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object:
                s = pd.to_numeric(s.astype(object).astype(str).str.strip().where(s.notna()), errors="coerce")
            out[col] = s.astype(float)
        for col in self.categorical:
            s = X[col] if col in X.columns else pd.Series(np.nan, index=X.index)
            # On a category column `map` converts each distinct level once, not each row.
            text = s.map(as_text, na_action="ignore").astype(object)
            out[col] = text.where(s.notna(), np.nan)
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([*self.numeric, *self.categorical], dtype=object)


def as_text(value: Any) -> str:
    """One spelling per level: True/"TRUE" → "true", 1.0 → "1", " x " → "x"."""
    # True/"true"/"TRUE" and 1.0/"1" are the same level: normalise before one-hot encoding.
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text.lower() if text.lower() in ("true", "false") else text


def build_preprocessor(
    numeric: list[str],
    categorical: list[str],
    *,
    numeric_strategy: str = "median",
    max_categories: int | None = 20,
) -> Pipeline:
    """The feature pipeline: coerce types, impute, scale numbers and one-hot encode categories.

    Args:
        numeric: Numeric feature columns.
        categorical: Categorical feature columns.
        numeric_strategy: How to fill missing numbers, ``"median"`` or ``"mean"``.
        max_categories: One-hot columns per feature at most; rarer levels share an
            "infrequent" column. ``None`` keeps every level.

    Returns:
        An unfitted `Pipeline` whose output is a dense float matrix.
    """
    numeric_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy=numeric_strategy)),
            # Scaling puts coefficients on one scale and helps the solver converge.
            ("scale", StandardScaler()),
        ]
    )
    categorical_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            # handle_unknown="ignore": a level never seen in training becomes all zeros, not an error.
            (
                "onehot",
                OneHotEncoder(handle_unknown="ignore", max_categories=max_categories, sparse_output=False),
            ),
        ]
    )
    columns = ColumnTransformer(
        [("num", numeric_steps, numeric), ("cat", categorical_steps, categorical)],
        remainder="drop",
        verbose_feature_names_out=True,
    )
    return Pipeline([("coerce", CoerceColumns(numeric, categorical)), ("columns", columns)])


def feature_names(model: Pipeline) -> list[str]:
    """Input columns of the model step, e.g. ``num__bill_length_mm`` or ``cat__island_Dream``."""
    return [str(n) for n in model.named_steps["features"].get_feature_names_out()]
