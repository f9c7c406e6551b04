"""Transactions to replay, in time order, as scoring-API payloads.

A replay reads a ``generate`` folder (``DIR/transactions/YYYY-MM-DD.parquet``) or any
Handbook-layout folder of daily files, sorted by ``TX_DATETIME`` then ``TRANSACTION_ID`` (the
order the bank saw them), and keeps only what a request carries: the Handbook's five fields
and the simulator's richer ones when present. Labels never leave the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from level4_fraud import schema
from level4_fraud.data import read_fdh_folder
from shared.errors import EmptyDataError, InputFileError

REQUEST_FIELDS: tuple[str, ...] = (
    schema.TRANSACTION_ID,
    schema.TX_DATETIME,
    schema.CUSTOMER_ID,
    schema.TERMINAL_ID,
    schema.TX_AMOUNT,
)
TRANSACTIONS_DIR = "transactions"


def replay_folder(data: Path | None, fdh_folder: Path | None, default: Path) -> Path:
    """The folder of daily files to replay.

    Args:
        data: A ``generate`` folder (its ``transactions/``), or None.
        fdh_folder: A Handbook-layout folder, or None.
        default: Where ``generate`` writes by default (used when neither is given).

    Raises:
        InputFileError: Both are given, or the folder does not exist.
    """
    if data is not None and fdh_folder is not None:
        raise InputFileError("give --data or --fdh-folder, not both")
    if fdh_folder is not None:
        return fdh_folder
    root = data if data is not None else default
    if not root.is_dir():
        hint = (
            ""
            if data is not None
            else " (run `python -m level4_fraud generate`, or pass --data/--fdh-folder)"
        )
        raise InputFileError(f"{root}: no such folder{hint}")
    return root / TRANSACTIONS_DIR if (root / TRANSACTIONS_DIR).is_dir() else root


def load_replay(
    folder: Path,
    *,
    start: str | None = None,
    end: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The transactions of `folder` in time order, request fields only.

    Args:
        folder: Daily files (Handbook layout).
        start: First day (inclusive), ``YYYY-MM-DD``.
        end: Last day (inclusive).
        limit: Keep the first `limit` transactions (in time order).

    Raises:
        InputFileError, SchemaError: Bad folder or files (see `read_fdh_folder`).
        EmptyDataError: Nothing to replay.
    """
    tx = read_fdh_folder(folder, start=start, end=end)
    if limit is not None:
        if limit < 1:
            raise EmptyDataError(f"--limit must be at least 1, got {limit}")
        tx = tx.head(limit)
    if tx.empty:
        raise EmptyDataError(f"{folder}: no transactions to replay")
    keep = [*REQUEST_FIELDS, *(c for c in schema.RICH_COLUMNS if c in tx.columns)]
    return tx.loc[:, keep].reset_index(drop=True)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def payloads(tx: pd.DataFrame) -> list[dict[str, Any]]:
    """One request body per transaction (JSON-ready values), in the frame's order.

    ``TX_DATETIME`` is ISO 8601 without zone (the API reads a naive time as UTC); the richer
    categorical fields are strings; ``DEVICE_ID`` is a string, or None for a card-present
    transaction (the simulator's -1).
    """
    cols: dict[str, list[Any]] = {}
    for col in tx.columns:
        series = tx[col]
        if col == schema.TX_DATETIME:
            when = pd.to_datetime(series)
            if when.dt.tz is not None:
                when = when.dt.tz_convert("UTC").dt.tz_localize(None)
            cols[col] = [t.isoformat() for t in when]
        elif col == schema.DEVICE_ID:
            cols[col] = [None if d == schema.NO_DEVICE else str(d) for d in series.to_numpy(dtype="int64")]
        elif col in schema.CATEGORY_COLUMNS:
            cols[col] = [None if pd.isna(v) else str(v) for v in series.astype("object")]
        else:
            cols[col] = [_cell(v) for v in series.to_numpy()]
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]


def encode(payload: dict[str, Any]) -> bytes:
    """The JSON body of one payload."""
    return json.dumps(payload, separators=(",", ":")).encode()
