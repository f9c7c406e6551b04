"""Column roles: what each column is, and which ones a model can use.

A CSV has no types, only text. We infer a role per column from its dtype and
values (looked at on a sample, counted on all rows):

========================  ==================================================  ====================
role                      rule                                                as a model feature
========================  ==================================================  ====================
numeric                   numbers (or text that is >= 95 % numbers)           imputed + scaled
boolean                   two values such as true/false, yes/no               one-hot
categorical               text with at most `high_cardinality` values         one-hot
high_cardinality          more values, but most values repeat                 one-hot, top levels
identifier                (almost) one value per row: IDs, keys, names;       dropped, warned
                          or near-unique text codes (see below)
text                      long free text (many words per value)               dropped (level 1)
datetime                  dates or timestamps                                 dropped (level 1)
constant                  one value (or all missing)                          dropped
========================  ==================================================  ====================

*Near-unique text* is a text column whose distinct values are at least
`near_unique_ratio` (0.5) of its non-missing values, and more numerous than
`max_categories` (20): on average each value sits on at most two rows, e.g.
a ticket code or a mostly-missing cabin number. One-hot encoding would keep its
20 most frequent values, each on a handful of rows: noise features a model can
only memorise. It is treated like an identifier: dropped, with a warning. Text
with few distinct values (at most `max_categories`) stays categorical however
often each one repeats.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from level1_eda.config import L1Config
from shared.errors import DataError, EmptyDataError, SchemaError

log = logging.getLogger(__name__)

Role = Literal[
    "numeric", "boolean", "categorical", "high_cardinality", "identifier", "text", "datetime", "constant"
]
FEATURE_ROLES_NUMERIC: tuple[str, ...] = ("numeric",)
FEATURE_ROLES_CATEGORICAL: tuple[str, ...] = ("boolean", "categorical", "high_cardinality")

#: Values read as booleans (compared lower-case).
BOOL_WORDS = {"true", "false", "yes", "no", "y", "n", "t", "f"}
_DATE_RE = re.compile(
    r"^\s*(\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?|\d{1,2}/\d{1,2}/\d{2,4})\s*$"
)
_ID_NAME_RE = re.compile(r"(^id$|_id$|^id_|(?<=[a-z])Id$|ID$|^key$|uuid|guid)", re.IGNORECASE)
#: Values looked at to guess a role; counts always use every row.
SAMPLE = 5_000
#: How the note of a near-unique text column starts (see the module docstring).
NEAR_UNIQUE = "near-unique text"


@dataclass
class ColumnInfo:
    """What we know about one column."""

    name: str
    dtype: str
    role: Role
    n_missing: int
    n_unique: int
    example: str
    note: str = ""

    @property
    def is_feature(self) -> bool:
        return self.role in FEATURE_ROLES_NUMERIC + FEATURE_ROLES_CATEGORICAL

    @property
    def near_unique(self) -> bool:
        """True for a text column dropped like an identifier because almost every value is distinct."""
        return self.role == "identifier" and self.note.startswith(NEAR_UNIQUE)


@dataclass
class Schema:
    """Roles of every column, the target and the task."""

    columns: dict[str, ColumnInfo]
    target: str
    task: Literal["classification", "regression"]
    n_rows: int
    warnings: list[str] = field(default_factory=list)

    @property
    def numeric(self) -> list[str]:
        """Numeric feature columns."""
        return [c for c, i in self.columns.items() if c != self.target and i.role in FEATURE_ROLES_NUMERIC]

    @property
    def categorical(self) -> list[str]:
        """Categorical feature columns (booleans and high-cardinality included)."""
        roles = FEATURE_ROLES_CATEGORICAL
        return [c for c, i in self.columns.items() if c != self.target and i.role in roles]

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical

    @property
    def dropped(self) -> dict[str, str]:
        """Columns not used as features, with the reason."""
        return {c: i.role for c, i in self.columns.items() if c != self.target and not i.is_feature}

    @property
    def near_unique(self) -> list[str]:
        """Near-unique text columns, dropped like identifiers."""
        return [c for c, i in self.columns.items() if c != self.target and i.near_unique]

    def table(self) -> pd.DataFrame:
        """One row per column: dtype, role, missing, unique values, example, use."""
        rows = []
        for c, i in self.columns.items():
            use = "target" if c == self.target else ("feature" if i.is_feature else "not used")
            rows.append(
                {
                    "column": c,
                    "dtype": i.dtype,
                    "role": i.role,
                    "missing": i.n_missing,
                    "missing %": 100 * i.n_missing / max(self.n_rows, 1),
                    "unique": i.n_unique,
                    "example": i.example,
                    "use": use,
                    "note": i.note,
                }
            )
        return pd.DataFrame(rows).set_index("column")


def sample_rows(df: pd.DataFrame, n: int = SAMPLE, seed: int = 0) -> pd.DataFrame:
    """Up to `n` random rows (all rows when there are fewer): enough to guess a role.

    Category columns come back as plain objects, so per-value checks cost 5,000
    values, not one per category of a million-level column.
    """
    rows = df.sample(n=n, random_state=seed) if len(df) > n else df
    cats = [c for c in rows.columns if isinstance(rows[c].dtype, pd.CategoricalDtype)]
    return rows.astype(dict.fromkeys(cats, object)) if cats else rows


def numeric_share(values: pd.Series) -> float:
    """Share of non-missing values that parse as numbers."""
    v = values.dropna()
    if v.empty:
        return 0.0
    return float(pd.to_numeric(v.astype(str).str.strip(), errors="coerce").notna().mean())


def looks_like_dates(values: pd.Series) -> bool:
    """True when at least 95 % of a (sampled) text column looks like dates."""
    v = values.dropna().astype(str)
    return not v.empty and float(v.str.match(_DATE_RE).mean()) >= 0.95


def looks_boolean(values: pd.Series) -> bool:
    """True for two-valued columns whose values are true/false words or 0/1."""
    uniq = pd.unique(values.dropna())
    if len(uniq) != 2:
        return False
    words = {str(u).strip().lower() for u in uniq}
    return words <= BOOL_WORDS or words == {"0", "1"}


def is_text(s: pd.Series) -> bool:
    """True for columns holding strings: object, string or category dtype."""
    return s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s)


def map_values(s: pd.Series, func: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a vectorised conversion to a column; on a category column, to each distinct value once."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        converted = func(pd.Series(s.cat.categories))
        codes = s.cat.codes.to_numpy()
        values = converted.to_numpy()[codes]
        result = pd.Series(values, index=s.index, name=s.name)
        return result.where(codes >= 0)  # code -1 means missing
    return func(s.where(s.notna()))


def coerce_types(df: pd.DataFrame, *, target: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Turn text columns that hold numbers or dates into numeric / datetime columns.

    A text column whose values are at least 95 % numbers is converted, the rest
    (e.g. "n/a", "?") becomes missing; a column that mixes numbers and text more
    evenly is left as text and reported as mixed. The target may become numeric,
    never a date.

    Returns:
        A new frame (columns replaced, not mutated) and the warnings.
    """
    out = df.copy(deep=False)
    warnings: list[str] = []
    rows = sample_rows(df)
    for col in df.columns:
        s = df[col]
        if not is_text(s):
            continue
        sample = rows[col].dropna()
        if sample.empty or sample.map(type).eq(bool).all():
            continue
        share = numeric_share(sample)
        if share >= 0.95:
            converted = map_values(s, lambda v: pd.to_numeric(v.astype(str).str.strip(), errors="coerce"))
            bad = int(converted.isna().sum() - s.isna().sum())
            out[col] = converted
            if bad:
                examples = s[converted.isna() & s.notna()].astype(str).unique()[:3]
                warnings.append(
                    f"column {col!r} mixes types: numbers plus {bad} text values "
                    f"(e.g. {', '.join(map(repr, examples))}); those are treated as missing"
                )
        elif share >= 0.05:
            warnings.append(
                f"column {col!r} mixes types: {share:.0%} numbers and {1 - share:.0%} text; kept as text"
            )
        elif col != target and looks_like_dates(sample):
            out[col] = map_values(s, lambda v: pd.to_datetime(v, errors="coerce", format="mixed"))
    return out, warnings


def infer_role(s: pd.Series, n: int, n_unique: int, cfg: L1Config) -> tuple[Role, str]:
    """The role of one column and a short note on why.

    Args:
        s: A random sample of the column's values (missing ones included).
        n: Non-missing values in the whole column.
        n_unique: Distinct non-missing values in the whole column.
        cfg: Thresholds.
    """
    if n_unique <= 1:
        return "constant", "one value" if n else "all missing"
    s = s.dropna()
    if pd.api.types.is_bool_dtype(s) or looks_boolean(s):
        return "boolean", "two values"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime", "dates are not used as level-1 features"
    if pd.api.types.is_numeric_dtype(s):
        is_int = pd.api.types.is_integer_dtype(s) or bool(np.all(np.mod(s.to_numpy(float), 1) == 0))
        if is_int and n_unique == n and n >= 20 and (_ID_NAME_RE.search(str(s.name)) or _is_sequence(s, n)):
            return "identifier", "unique integer per row"
        return "numeric", ""
    ratio = n_unique / max(n, 1)
    sample = s.astype(str)
    mean_words = float(sample.str.count(r"\s+").mean()) + 1 if len(sample) else 0.0
    if mean_words >= 4 and n_unique > cfg.high_cardinality:
        return "text", f"free text, {mean_words:.0f} words on average"
    if n >= 20 and (ratio >= cfg.id_unique_ratio or (_ID_NAME_RE.search(str(s.name)) and ratio > 0.5)):
        return "identifier", f"{ratio:.0%} of values unique"
    if n_unique > cfg.max_categories and ratio >= cfg.near_unique_ratio:
        return "identifier", f"{NEAR_UNIQUE} ({n_unique:,} distinct of {n:,} values, {ratio:.0%})"
    if n_unique > cfg.high_cardinality:
        return "high_cardinality", f"{n_unique} levels; one-hot keeps the {cfg.max_categories} most frequent"
    return "categorical", ""


def _is_sequence(s: pd.Series, n: int) -> bool:
    # Unique integers spanning about n values (1, 2, 3, ... in any order) are row numbers.
    # A random sample's range estimates the column's range well.
    span = float(s.max() - s.min() + 1)
    return 0.99 * n <= span <= 1.01 * n


def infer_task(y: pd.Series, cfg: L1Config) -> Literal["classification", "regression"]:
    """Classification for text, boolean or few-valued integer targets; regression otherwise."""
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    v = y.dropna()
    integral = bool(np.all(np.mod(v.to_numpy(float), 1) == 0))
    return "classification" if integral and v.nunique() <= cfg.max_classes else "regression"


def infer_schema(df: pd.DataFrame, target: str, cfg: L1Config, task: str = "auto") -> Schema:
    """Roles for every column of `df` (already passed through `coerce_types`).

    Args:
        df: The data.
        target: Name of the column to predict.
        cfg: Thresholds (`high_cardinality`, `id_unique_ratio`, `mostly_missing`, ...).
        task: ``auto``, ``classification`` or ``regression``.

    Raises:
        SchemaError: Unknown target column, or a regression target that is not numeric.
        EmptyDataError: The target is missing on every row.
        DataError: No usable feature.
    """
    if target not in df.columns:
        near = [c for c in df.columns if c.lower() == target.lower()]
        listed = ", ".join(map(str, df.columns[:20]))
        hint = f"; did you mean {near[0]!r}?" if near else f"; columns are: {listed}"
        raise SchemaError(f"target column {target!r} not found{hint}")
    y = df[target]
    if y.notna().sum() == 0:
        raise EmptyDataError(f"target column {target!r} is missing on every row")
    resolved = infer_task(y, cfg) if task == "auto" else task
    if resolved == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise SchemaError(f"target {target!r} is not numeric, so it cannot be a regression target")
    warnings: list[str] = []
    # Counts on every row, once for all columns; role guesses on a random sample.
    n_unique = df.nunique(dropna=True)
    n_missing = df.isna().sum()
    rows = sample_rows(df, seed=cfg.seed)
    columns: dict[str, ColumnInfo] = {}
    for col in df.columns:
        n = len(df) - int(n_missing[col])
        role, note = infer_role(rows[col], n, int(n_unique[col]), cfg)
        first = rows[col].dropna()
        columns[col] = ColumnInfo(
            name=col,
            dtype=str(df[col].dtype),
            role=role,
            n_missing=int(n_missing[col]),
            n_unique=int(n_unique[col]),
            example=str(first.iloc[0])[:40] if len(first) else "",
            note=note,
        )
        if col == target:
            continue
        share = columns[col].n_missing / len(df)
        if columns[col].near_unique:
            warnings.append(
                f"column {col!r} is {note}: treated like an identifier and dropped from the features "
                f"(one-hot would keep its {cfg.max_categories} most frequent values, each on a few rows)"
            )
        elif role == "identifier":
            warnings.append(f"column {col!r} looks like an identifier ({note}); dropped from the features")
        elif role != "constant" and share >= cfg.mostly_missing:
            warnings.append(f"column {col!r} is {share:.0%} missing; kept, but imputed values carry little")
    schema = Schema(columns, target, resolved, len(df), warnings)  # type: ignore[arg-type]
    if not schema.features:
        dropped = ", ".join(f"{c} ({r})" for c, r in schema.dropped.items()) or "none"
        raise DataError(f"no usable feature column besides the target {target!r}; other columns: {dropped}")
    return schema


def clean_target(
    df: pd.DataFrame, schema: Schema, *, min_class_rows: int = 2, max_classes: int = 100
) -> tuple[pd.DataFrame, list[str]]:
    """Drop rows whose target is missing, and classes too small to split; check what is left.

    Raises:
        DataError: Fewer than two classes or more than `max_classes`, or too few rows to split.
    """
    warnings: list[str] = []
    y = df[schema.target]
    missing = int(y.isna().sum())
    out = df[y.notna()] if missing else df
    if missing:
        warnings.append(f"{missing} rows have no target value; they are left out of modelling")
    if schema.task == "classification":
        counts = out[schema.target].value_counts()
        tiny = counts[counts < min_class_rows]
        if len(tiny):
            warnings.append(
                f"classes with fewer than {min_class_rows} rows cannot be split into train and test: "
                f"{', '.join(map(str, tiny.index[:5]))}; their rows are left out"
            )
            out = out[~out[schema.target].isin(tiny.index)]
        if out[schema.target].nunique() < 2:
            only = out[schema.target].iloc[0] if len(out) else "none"
            raise DataError(
                f"target {schema.target!r} has a single class ({only!r}); a classifier needs at least two"
            )
        n_classes = out[schema.target].nunique()
        if n_classes > max_classes:
            raise DataError(
                f"target {schema.target!r} has {n_classes} classes (at most {max_classes} here): "
                "if it is a number, pass --task regression; if it is an ID, choose another --target"
            )
    if len(out) < 10:
        raise DataError(f"only {len(out)} rows with a target value; at least 10 are needed to train and test")
    return out, warnings
