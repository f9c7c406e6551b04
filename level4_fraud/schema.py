"""The transaction data contract of level 4: column names, scenario codes, dtypes, validation.

The layout is the Fraud Detection Handbook's (Le Borgne et al.): one row per card transaction with
``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TIME_SECONDS, TX_TIME_DAYS,
TX_FRAUD, TX_FRAUD_SCENARIO``, published as one file per day. The simulator adds richer fields
(merchant category, channel, country, device, currency) that readers of real data treat as optional.

Labels: a frame made by the simulator is fully labelled (``TX_FRAUD`` int8 0/1). A frame read from a
folder may hold unlabelled days (history only); there ``TX_FRAUD`` is float64 with NaN for unknown,
``TX_FRAUD_SCENARIO`` is ``SCENARIO_UNKNOWN`` (-1) and the boolean ``LABELLED`` column says which rows
carry a label. NaN rather than a placeholder 0 so that training on an unlabelled row fails loudly.

Every check raises a `shared.errors` user error with a one-line message naming the source.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

import numpy as np
import pandas as pd

from shared.errors import EmptyDataError, SchemaError

# --- the Handbook's columns -------------------------------------------------------------------
TRANSACTION_ID = "TRANSACTION_ID"
TX_DATETIME = "TX_DATETIME"
CUSTOMER_ID = "CUSTOMER_ID"
TERMINAL_ID = "TERMINAL_ID"
TX_AMOUNT = "TX_AMOUNT"
TX_TIME_SECONDS = "TX_TIME_SECONDS"
TX_TIME_DAYS = "TX_TIME_DAYS"
TX_FRAUD = "TX_FRAUD"
TX_FRAUD_SCENARIO = "TX_FRAUD_SCENARIO"

# --- richer fields (simulator; optional when reading real data) ---------------------------------
MERCHANT_CATEGORY = "MERCHANT_CATEGORY"
CHANNEL = "CHANNEL"
COUNTRY = "COUNTRY"
DEVICE_ID = "DEVICE_ID"
CURRENCY = "CURRENCY"

# --- added by readers ----------------------------------------------------------------------
LABELLED = "LABELLED"

# --- the late-labels file ----------------------------------------------------------------------
LABEL_AVAILABLE_FROM = "LABEL_AVAILABLE_FROM"

# --- side tables ------------------------------------------------------------------------------
X_CUSTOMER = "x_customer_id"
Y_CUSTOMER = "y_customer_id"
X_TERMINAL = "x_terminal_id"
Y_TERMINAL = "y_terminal_id"

HANDBOOK_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_AMOUNT,
    TX_TIME_SECONDS,
    TX_TIME_DAYS,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
)
LABEL_COLUMNS: tuple[str, ...] = (TX_FRAUD, TX_FRAUD_SCENARIO)
# What a daily file must hold whether labelled or not.
UNLABELLED_COLUMNS: tuple[str, ...] = tuple(c for c in HANDBOOK_COLUMNS if c not in LABEL_COLUMNS)
RICH_COLUMNS: tuple[str, ...] = (MERCHANT_CATEGORY, CHANNEL, COUNTRY, DEVICE_ID, CURRENCY)
LATE_LABEL_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_FRAUD,
    LABEL_AVAILABLE_FROM,
)

CUSTOMER_TABLE_COLUMNS: tuple[str, ...] = (
    CUSTOMER_ID,
    X_CUSTOMER,
    Y_CUSTOMER,
    "mean_amount",
    "std_amount",
    "mean_nb_tx_per_day",
)
TERMINAL_TABLE_COLUMNS: tuple[str, ...] = (TERMINAL_ID, X_TERMINAL, Y_TERMINAL)

# The contract's dtypes for a fully labelled frame (simulator output).
DTYPES: dict[str, str] = {
    TRANSACTION_ID: "int64",
    TX_DATETIME: "datetime64[ns]",
    CUSTOMER_ID: "int64",
    TERMINAL_ID: "int64",
    TX_AMOUNT: "float64",
    TX_TIME_SECONDS: "int64",
    TX_TIME_DAYS: "int64",
    TX_FRAUD: "int8",
    TX_FRAUD_SCENARIO: "int8",
    MERCHANT_CATEGORY: "category",
    CHANNEL: "category",
    COUNTRY: "category",
    DEVICE_ID: "int64",
    CURRENCY: "category",
}
INT_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_TIME_SECONDS,
    TX_TIME_DAYS,
    DEVICE_ID,
)
CATEGORY_COLUMNS: tuple[str, ...] = (MERCHANT_CATEGORY, CHANNEL, COUNTRY, CURRENCY)

CHANNELS: tuple[str, ...] = ("pos", "ecom", "atm")
NO_DEVICE = -1  # DEVICE_ID of a card-present (pos/atm) transaction
SCENARIO_UNKNOWN = -1  # TX_FRAUD_SCENARIO on an unlabelled row


class Scenario(IntEnum):
    """``TX_FRAUD_SCENARIO`` codes. 1-3 are the Handbook's; 4-7 are this level's additions."""

    GENUINE = 0
    AMOUNT_OVER_220 = 1  # Handbook: every amount > 220 is fraud
    COMPROMISED_TERMINAL = 2  # Handbook: all tx on a compromised terminal for 28 days
    COMPROMISED_CARD = 3  # Handbook: 1/3 of a compromised card's tx over 14 days, amount x5
    CARD_TESTING = 4  # bursts of small amounts on a stolen card number
    ACCOUNT_TAKEOVER = 5  # ecom from a new device in a new country
    MERCHANT_COLLUSION = 6  # a colluding merchant's terminal charges inflated amounts
    DRIFT_PATTERN = 7  # a pattern that appears only after the drift day


SCENARIO_NAMES: dict[int, str] = {s.value: s.name.lower() for s in Scenario}


def _fail_first(values: pd.Series) -> str:
    """The first offending value as a user reads it (2, 'lots'), not as numpy prints it."""
    if not len(values):
        return "?"
    v = values.iloc[0]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return repr(v)


def _coerce_int(df: pd.DataFrame, col: str, source: str) -> None:
    s = df[col]
    if pd.api.types.is_integer_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
        df[col] = s.astype("int64")
        return
    if pd.api.types.is_bool_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
        raise SchemaError(f"{source}: column {col} must be integer, got {s.dtype}")
    # The Handbook's published pickles hold some id columns as object or float: accept any
    # whole numbers, reject text and fractions.
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        raise SchemaError(f"{source}: column {col} must be integer, got {_fail_first(s[bad])}")
    if num.isna().any():
        raise SchemaError(f"{source}: column {col} has missing values")
    if not np.all(np.mod(num.to_numpy(dtype="float64"), 1.0) == 0.0):
        raise SchemaError(f"{source}: column {col} must be integer, got fractional values")
    df[col] = num.astype("int64")


def _coerce_float(df: pd.DataFrame, col: str, source: str, *, allow_nan: bool = False) -> None:
    s = df[col]
    if pd.api.types.is_bool_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
        raise SchemaError(f"{source}: column {col} must be numeric, got {s.dtype}")
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        raise SchemaError(f"{source}: column {col} must be numeric, got {_fail_first(s[bad])}")
    if not allow_nan and num.isna().any():
        raise SchemaError(f"{source}: column {col} has missing values")
    df[col] = num.astype("float64")


def _coerce_datetime(df: pd.DataFrame, col: str, source: str) -> None:
    s = df[col]
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        df[col] = s.astype("datetime64[ns]")
        return
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise SchemaError(f"{source}: column {col} must be a datetime, got {s.dtype}")
    parsed = pd.to_datetime(s, errors="coerce")
    bad = parsed.isna() & s.notna()
    if bad.any():
        raise SchemaError(f"{source}: column {col} must be a datetime, got {_fail_first(s[bad])}")
    if parsed.isna().any():
        raise SchemaError(f"{source}: column {col} has missing values")
    df[col] = parsed.astype("datetime64[ns]")


def _require_columns(df: pd.DataFrame, required: Iterable[str], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing column(s) {', '.join(missing)}")


def _check_labels(df: pd.DataFrame, source: str) -> None:
    fraud = df[TX_FRAUD]
    known = fraud.dropna()
    if not known.isin([0, 1]).all():
        other = known[~known.isin([0, 1])]
        raise SchemaError(f"{source}: column {TX_FRAUD} must be 0 or 1, got {_fail_first(other)}")


def validate_transactions(
    df: pd.DataFrame,
    *,
    source: str = "transactions",
    labelled: bool | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Check a transactions frame against the contract and return a copy with contract dtypes.

    Whole-number object/float id columns (as in some Handbook pickles) are cast to int64,
    datetime strings are parsed; text where a number is expected, a missing column, a missing
    value or a label other than 0/1 raise `SchemaError`.

    Args:
        df: The frame (Handbook columns, richer columns optional).
        source: Named at the start of every error message (a file name, "simulator").
        labelled: True requires the label columns; False ignores them if present (they are
            dropped); None (default) keeps them when present, validated.
        allow_empty: Accept a frame with no rows.

    Returns:
        A copy with int64 ids and times, datetime64[ns] ``TX_DATETIME``, float64 ``TX_AMOUNT``,
        int8 ``TX_FRAUD``/``TX_FRAUD_SCENARIO`` when every row is labelled (float64 ``TX_FRAUD``
        when some are NaN) and categorical richer fields.

    Raises:
        SchemaError: A column is missing or has the wrong type.
        EmptyDataError: The frame has no rows and ``allow_empty`` is False.
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"{source}: expected a table of transactions, got {type(df).__name__}")
    has_labels = TX_FRAUD in df.columns
    if labelled is True:
        _require_columns(df, HANDBOOK_COLUMNS, source)
    else:
        _require_columns(df, UNLABELLED_COLUMNS, source)
    if len(df) == 0 and not allow_empty:
        raise EmptyDataError(f"{source}: no transactions")
    out = df.copy()
    if labelled is False:
        out = out.drop(columns=[c for c in LABEL_COLUMNS if c in out.columns])
        has_labels = False
    for col in (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID, TX_TIME_SECONDS, TX_TIME_DAYS):
        _coerce_int(out, col, source)
    _coerce_float(out, TX_AMOUNT, source)
    _coerce_datetime(out, TX_DATETIME, source)
    if has_labels:
        _coerce_float(out, TX_FRAUD, source, allow_nan=labelled is not True)
        _check_labels(out, source)
        if out[TX_FRAUD].notna().all():
            out[TX_FRAUD] = out[TX_FRAUD].astype("int8")
        if TX_FRAUD_SCENARIO in out.columns:
            _coerce_float(out, TX_FRAUD_SCENARIO, source, allow_nan=True)
            out[TX_FRAUD_SCENARIO] = out[TX_FRAUD_SCENARIO].fillna(SCENARIO_UNKNOWN).astype("int8")
        else:
            # Genuine rows are scenario 0; a fraud (or unlabelled) row's scenario is not known.
            genuine = out[TX_FRAUD].eq(0).to_numpy()
            out[TX_FRAUD_SCENARIO] = np.where(genuine, 0, SCENARIO_UNKNOWN).astype("int8")
    if DEVICE_ID in out.columns:
        out[DEVICE_ID] = out[DEVICE_ID].fillna(NO_DEVICE)
        _coerce_int(out, DEVICE_ID, source)
    for col in CATEGORY_COLUMNS:
        if col in out.columns and not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("category")
    if (out[TX_AMOUNT] < 0).any():
        raise SchemaError(f"{source}: column {TX_AMOUNT} has negative amounts")
    return out


def validate_late_labels(df: pd.DataFrame, *, source: str = "late labels") -> pd.DataFrame:
    """Check a late-labels frame (`LATE_LABEL_COLUMNS`) and return a typed copy.

    Raises:
        SchemaError: A column is missing, has the wrong type, a label is not 0/1, or a label
            becomes available before its transaction happened.
        EmptyDataError: The frame has no rows.
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"{source}: expected a table of labels, got {type(df).__name__}")
    _require_columns(df, LATE_LABEL_COLUMNS, source)
    if len(df) == 0:
        raise EmptyDataError(f"{source}: no labels")
    out = df.loc[:, list(LATE_LABEL_COLUMNS)].copy()
    for col in (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID):
        _coerce_int(out, col, source)
    _coerce_datetime(out, TX_DATETIME, source)
    _coerce_datetime(out, LABEL_AVAILABLE_FROM, source)
    _coerce_float(out, TX_FRAUD, source)
    _check_labels(out, source)
    out[TX_FRAUD] = out[TX_FRAUD].astype("int8")
    early = out[LABEL_AVAILABLE_FROM] < out[TX_DATETIME]
    if early.any():
        tid = int(out.loc[early, TRANSACTION_ID].iloc[0])
        raise SchemaError(f"{source}: label of transaction {tid} is available before the transaction")
    if out[TRANSACTION_ID].duplicated().any():
        tid = int(out.loc[out[TRANSACTION_ID].duplicated(), TRANSACTION_ID].iloc[0])
        raise SchemaError(f"{source}: transaction {tid} has more than one label")
    return out


def sort_transactions(df: pd.DataFrame) -> pd.DataFrame:
    """Sort by ``TX_DATETIME`` then ``TRANSACTION_ID`` (the contract's order), fresh RangeIndex."""
    return df.sort_values([TX_DATETIME, TRANSACTION_ID], kind="mergesort").reset_index(drop=True)
