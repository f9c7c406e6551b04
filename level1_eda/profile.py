"""Data-quality facts: one pass of vectorised pandas over every row.

Each function takes a frame (and the schema) and returns a small table, so
the same facts go to the report, to `profile.json` and to the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from level1_eda.schema import Schema


@dataclass
class Profile:
    """Everything the report says about data quality, as plain tables and numbers."""

    overview: dict[str, Any]
    missing: pd.DataFrame
    outliers: pd.DataFrame
    numeric_summary: pd.DataFrame
    categorical_summary: pd.DataFrame
    target_balance: pd.DataFrame
    constant_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly facts (`profile.json`)."""
        return {
            "overview": self.overview,
            "missing": self.missing.reset_index().to_dict(orient="records"),
            "outliers": self.outliers.reset_index().to_dict(orient="records"),
            "target_balance": self.target_balance.reset_index().to_dict(orient="records"),
            "constant_columns": self.constant_columns,
        }


def memory_mib(df: pd.DataFrame) -> float:
    """Memory the frame takes in RAM, text included (``deep=True`` counts each string)."""
    return float(df.memory_usage(deep=True, index=False).sum() / 2**20)


def count_duplicates(df: pd.DataFrame) -> int:
    """Rows that repeat an earlier row exactly.

    Two rows can only be equal if their numeric columns are equal, and numbers
    hash fast. So we hash the numeric columns first and compare whole rows only
    among the few candidates whose numeric part repeats: the same count as
    ``df.duplicated().sum()``, several times faster on a wide frame.
    """
    if df.empty:
        return 0
    numeric = df.select_dtypes(include=["number", "datetime", "bool"])
    candidates = df
    if numeric.shape[1]:
        hashes = pd.util.hash_pandas_object(numeric, index=False)
        candidates = df[hashes.duplicated(keep=False).to_numpy()]
    return int(candidates.duplicated().sum()) if len(candidates) else 0


def missing_table(n_missing: pd.Series, n_rows: int) -> pd.DataFrame:
    """Missing values per column, most missing first (columns with none left out)."""
    table = pd.DataFrame({"missing": n_missing, "missing %": 100 * n_missing / max(n_rows, 1)})
    table.index.name = "column"
    return table[table["missing"] > 0].sort_values("missing", ascending=False)


def numeric_summary(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """count, mean, std, min, quartiles, max and skewness per numeric column.

    Computed with NumPy on each column's non-missing values: one partial sort
    (``np.quantile``) gives all five order statistics at once.
    """
    rows: dict[str, dict[str, float]] = {}
    for col in columns:
        v = df[col].to_numpy(dtype=float, na_value=np.nan)
        v = v[~np.isnan(v)]
        if v.size == 0:
            rows[col] = {"count": 0}
            continue
        q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
        n, mean = v.size, v.mean()
        std = v.std(ddof=1) if n > 1 else np.nan
        skew = np.nan
        if n > 2 and std > 0:
            z = (v - mean) / v.std()
            # Adjusted Fisher-Pearson coefficient, the same as pandas' `skew()`.
            skew = float(np.mean(z * z * z)) * np.sqrt(n * (n - 1)) / (n - 2)
        rows[col] = {
            "count": v.size,
            "mean": mean,
            "std": std,
            "min": q[0],
            "25%": q[1],
            "50%": q[2],
            "75%": q[3],
            "max": q[4],
            "skew": skew,
        }
    columns_out = ["count", "mean", "std", "min", "25%", "50%", "75%", "max", "skew"]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns_out)
    table.index.name = "column"
    return table


def iqr_outliers(df: pd.DataFrame, summary: pd.DataFrame, k: float = 1.5) -> pd.DataFrame:
    """Values outside [Q1 − k·IQR, Q3 + k·IQR] per numeric column (Tukey's fences).

    Args:
        df: The data.
        summary: `numeric_summary` of the numeric columns (holds Q1 and Q3).
        k: Fence width in IQRs; 1.5 is Tukey's usual choice.
    """
    columns = list(summary.index)
    if not columns:
        return pd.DataFrame(columns=["q1", "q3", "lower fence", "upper fence", "outliers", "outliers %"])
    q1, q3 = summary["25%"], summary["75%"]
    iqr = q3 - q1
    lower, upper = q1 - k * iqr, q3 + k * iqr
    # Comparisons with NaN are False, so missing values never count as outliers.
    values = df[columns]
    count = ((values < lower) | (values > upper)).sum()
    table = pd.DataFrame(
        {
            "q1": q1,
            "q3": q3,
            "lower fence": lower,
            "upper fence": upper,
            "outliers": count,
            "outliers %": 100 * count / max(len(df), 1),
        }
    )
    table.index.name = "column"
    return table.sort_values("outliers", ascending=False)


def categorical_summary(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Distinct values, most frequent value and its share per categorical column."""
    rows = []
    for col in columns:
        counts = df[col].value_counts(dropna=True)
        top = counts.index[0] if len(counts) else None
        rows.append(
            {
                "column": col,
                "unique": len(counts),
                "most frequent": str(top) if top is not None else "—",
                "its share %": 100 * counts.iloc[0] / max(int(counts.sum()), 1) if len(counts) else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("column") if rows else pd.DataFrame()


def target_balance(y: pd.Series, task: str) -> pd.DataFrame:
    """Class counts and shares (classification) or quantiles (regression) of the target."""
    if task == "classification":
        counts = y.value_counts(dropna=False)
        table = pd.DataFrame({"rows": counts, "share %": 100 * counts / max(len(y), 1)})
        table.index = table.index.map(lambda v: "(missing)" if pd.isna(v) else str(v))
        table.index.name = "class"
        return table
    stats = y.describe()
    return stats.to_frame("value").rename_axis("statistic")


def profile_frame(df: pd.DataFrame, schema: Schema) -> Profile:
    """Compute every data-quality fact of the report.

    Args:
        df: The data, after `schema.coerce_types`.
        schema: Column roles and target.

    Returns:
        A `Profile`.
    """
    numeric_cols = [c for c, i in schema.columns.items() if i.role == "numeric"]
    if schema.task == "regression" and schema.target not in numeric_cols:
        numeric_cols.append(schema.target)
    cat_cols = [
        c for c, i in schema.columns.items() if i.role in ("categorical", "boolean", "high_cardinality")
    ]
    n_missing = pd.Series({c: i.n_missing for c, i in schema.columns.items()})
    missing = missing_table(n_missing, len(df))
    n_cells = df.shape[0] * df.shape[1]
    summary = numeric_summary(df, numeric_cols)
    roles = pd.Series({c: i.role for c, i in schema.columns.items()}).value_counts()
    overview = {
        "rows": len(df),
        "columns": int(df.shape[1]),
        "memory_mib": round(memory_mib(df), 2),
        "missing_cells": int(missing["missing"].sum()),
        "missing_cells_pct": round(100 * float(missing["missing"].sum()) / max(n_cells, 1), 3),
        "rows_with_missing": int(df.isna().any(axis=1).sum()),
        "duplicate_rows": count_duplicates(df),
        "target": schema.target,
        "task": schema.task,
        "roles": {str(k): int(v) for k, v in roles.items()},
    }
    return Profile(
        overview=overview,
        missing=missing,
        outliers=iqr_outliers(df, summary),
        numeric_summary=summary,
        categorical_summary=categorical_summary(df, cat_cols),
        target_balance=target_balance(df[schema.target], schema.task),
        constant_columns=[c for c, i in schema.columns.items() if i.role == "constant"],
    )
