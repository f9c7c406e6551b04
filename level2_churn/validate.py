"""Schemas of the four sources: raw structure (fail fast) and clean contracts (pandera, row level).

Two layers:

* `check_structure` runs on each raw file before anything else. A missing column or a column of the
  wrong type is not a bad row but a broken source, so it raises `shared.errors.SchemaError` with one
  line naming the source, the file and the problem.
* `CLEAN_SCHEMAS` are pandera schemas for the cleaned tables. `split_valid` runs one lazily and turns
  every failing row into a quarantined row, tagged with the rule (check) it broke, so bad rows are
  kept for inspection rather than silently dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from level2_churn.clean import DOMAINS
from shared.errors import SchemaError

# Highest legitimate amount in EUR (top list price plus a 25% rise, with margin). Larger values are
# amounts in cents (fixed) or impossible (quarantined).
MAX_AMOUNT = 150.0
# Longest plausible minutes per session; more means the value was logged in seconds.
MAX_MINUTES_PER_SESSION = 180.0
MAX_SESSIONS_PER_DAY = 200

# Required raw columns per source and their kind: "text" (anything), "numeric", "time" (text or time type).
RAW_COLUMNS: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "text",
        "signup_date": "text",
        "cancel_date": "text",
        "plan": "text",
        "region": "text",
        "age_band": "text",
        "channel": "text",
        "contract": "text",
        "monthly_price": "numeric",
    },
    "billing": {
        "txn_id": "text",
        "customer_id": "text",
        "ts": "time",
        "loaded_at": "time",
        "type": "text",
        "amount": "numeric",
        "discount": "numeric",
        "plan": "text",
    },
    "support": {
        "ticket_id": "text",
        "customer_id": "text",
        "created_at": "time",
        "resolved_at": "time",
        "category": "text",
        "channel": "text",
        "satisfaction": "numeric",
    },
    "usage": {
        "customer_id": "text",
        "date": "time",
        "loaded_at": "time",
        "sessions": "numeric",
        "minutes": "numeric",
        "features_used": "numeric",
        "device": "text",
    },
}


def check_structure(df: pd.DataFrame, source: str, file: str) -> None:
    """Fail fast on a broken source: a required column missing or holding the wrong type.

    Args:
        df: The raw table as read (text columns as object).
        source: ``customers``, ``billing``, ``support`` or ``usage``.
        file: File name for the message.

    Raises:
        SchemaError: One line naming the source, file, column and problem.
    """
    spec = RAW_COLUMNS[source]
    missing = [c for c in spec if c not in df.columns]
    if missing:
        cols = ", ".join(repr(c) for c in missing)
        raise SchemaError(f"{source} ({file}): missing required column(s) {cols}")
    for col, kind in spec.items():
        s = df[col]
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(s):
            present = s.dropna()
            if pd.api.types.is_bool_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
                raise SchemaError(f"{source} ({file}): column {col!r} has type {s.dtype}, expected numbers")
            if len(present) == 0:
                continue
            as_num = pd.to_numeric(present, errors="coerce")
            share_bad = float(as_num.isna().mean())
            # A few unreadable cells are bad rows (quarantined later); mostly text means a wrong column.
            if share_bad > 0.5:
                example = present[as_num.isna()].iloc[0]
                raise SchemaError(
                    f"{source} ({file}): column {col!r} should hold numbers but {share_bad:.0%} of values "
                    f"do not (e.g. {example!r})"
                )
        if kind == "time" and (
            pd.api.types.is_bool_dtype(s) or (pd.api.types.is_float_dtype(s) and s.notna().any())
        ):
            raise SchemaError(
                f"{source} ({file}): column {col!r} has type {s.dtype}, expected dates or times"
            )


def _cat(domain: str, nullable: bool = False) -> pa.Column:
    # dtype=None: an element-wise str type check costs more than the whole cleaning; isin suffices.
    check = pa.Check.isin(DOMAINS[domain], name="unknown_category", error="unknown_category")
    return pa.Column(None, check, nullable=nullable)


_ID = pa.Column(str, pa.Check.str_matches(r"^C\d{7}$", name="bad_id", error="bad_id"))
_NUM = pa.Column("int32", pa.Check.gt(0, name="bad_id", error="bad_id"))

CLEAN_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "customers": pa.DataFrameSchema(
        {
            "customer_id": _ID,
            "customer_num": _NUM,
            "signup_date": pa.Column("datetime64[ns]", nullable=False),
            "cancel_date": pa.Column("datetime64[ns]", nullable=True),
            "plan": _cat("plan"),
            "region": pa.Column(str),
            "age_band": pa.Column(str),
            "channel": pa.Column(str),
            "contract": _cat("contract"),
            "monthly_price": pa.Column(
                float, pa.Check.in_range(0.0, MAX_AMOUNT, name="outlier", error="outlier")
            ),
            "price_change_date": pa.Column("datetime64[ns]", nullable=True),
            "price_change_pct": pa.Column(
                float, pa.Check.in_range(-90.0, 200.0, name="outlier", error="outlier"), nullable=True
            ),
        },
        checks=[
            pa.Check(
                lambda d: d["cancel_date"].isna() | (d["cancel_date"] >= d["signup_date"]),
                name="cancel_before_signup",
            )
        ],
        unique=["customer_num"],
        strict=True,
    ),
    "billing": pa.DataFrameSchema(
        {
            "txn_id": pa.Column(None),
            "customer_num": _NUM,
            "ts": pa.Column("datetime64[ns]"),
            "loaded_at": pa.Column("datetime64[ns]"),
            "type": _cat("txn_type"),
            "amount": pa.Column(float, pa.Check.in_range(0.0, MAX_AMOUNT, name="outlier", error="outlier")),
            "discount": pa.Column(
                float, pa.Check.in_range(0.0, MAX_AMOUNT, name="outlier", error="outlier"), nullable=True
            ),
            "plan": _cat("plan", nullable=True),
        },
        checks=[
            pa.Check(
                lambda d: d["loaded_at"] >= d["ts"] - pd.Timedelta(days=1),
                name="loaded_before_event",
                error="loaded_before_event",
            )
        ],
        strict=True,
    ),
    "support": pa.DataFrameSchema(
        {
            "ticket_id": pa.Column(None),
            "customer_num": _NUM,
            "created_at": pa.Column("datetime64[ns]"),
            "resolved_at": pa.Column("datetime64[ns]", nullable=True),
            "escalated_at": pa.Column("datetime64[ns]", nullable=True),
            "category": _cat("ticket_category"),
            "channel": _cat("ticket_channel"),
            "satisfaction": pa.Column(
                float, pa.Check.in_range(1.0, 5.0, name="outlier", error="outlier"), nullable=True
            ),
            "subject": pa.Column(None, nullable=True),
        },
        checks=[
            pa.Check(
                lambda d: d["resolved_at"].isna() | (d["resolved_at"] >= d["created_at"]),
                name="outlier",
            )
        ],
        strict=True,
    ),
    "usage": pa.DataFrameSchema(
        {
            "customer_num": _NUM,
            "date": pa.Column("datetime64[ns]"),
            "loaded_at": pa.Column("datetime64[ns]"),
            "sessions": pa.Column(
                "int32", pa.Check.in_range(1, MAX_SESSIONS_PER_DAY, name="outlier", error="outlier")
            ),
            "minutes": pa.Column(
                float, pa.Check.in_range(0.0, 24 * 60.0, name="outlier", error="outlier"), nullable=True
            ),
            "features_used": pa.Column("int16", pa.Check.in_range(0, 100, name="outlier", error="outlier")),
            "device": pa.Column(
                None,
                pa.Check.isin(
                    (*DOMAINS["device"], "unknown"), name="unknown_category", error="unknown_category"
                ),
            ),
        },
        checks=[
            pa.Check(
                lambda d: d["minutes"].isna() | (d["minutes"] <= MAX_MINUTES_PER_SESSION * d["sessions"]),
                name="outlier",
            )
        ],
        strict=True,
    ),
}


def split_valid(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.Series]:
    """Validate a cleaned table with its pandera schema; separate the rows that break a check.

    Args:
        df: Cleaned table with a unique index.
        source: Which schema to use.

    Returns:
        ``(valid, rules)``: the rows that pass, and for every failing row (by index) the name of the
        first check it broke (the quarantine rule).

    Raises:
        SchemaError: A column is missing or has the wrong type (a cleaning bug or a broken source).
    """
    schema = CLEAN_SCHEMAS[source]
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        fc = exc.failure_cases
        structural = fc[fc["index"].isna()]
        if len(structural):
            first = structural.iloc[0]
            raise SchemaError(
                f"{source}: clean table fails {first['check']} on column {first['column']!r}"
            ) from None
        rows = fc.dropna(subset=["index"]).drop_duplicates("index")
        rules = pd.Series(rows["check"].astype(str).to_numpy(), index=rows["index"].to_numpy())
        rules = rules[rules.index.isin(df.index)]
        bad = df.index.isin(rules.index)
        return df[~bad], rules
    return df, pd.Series([], dtype=object)


def failing_mask(index: pd.Index, rules: pd.Series) -> np.ndarray:
    """Boolean mask over `index` of rows listed in `rules`."""
    return index.isin(rules.index)
