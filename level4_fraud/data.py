"""Read (and write) transactions in the Fraud Detection Handbook's folder layout, and late labels.

The Handbook publishes its data as one file per day, ``YYYY-MM-DD.pkl`` (pandas pickles); this
level also reads ``YYYY-MM-DD.parquet``. A day whose file has no ``TX_FRAUD`` column is unlabelled:
its transactions are history for features, never training labels. In the frame `read_fdh_folder`
returns, ``LABELLED`` says which rows carry a label; when some day is unlabelled, ``TX_FRAUD`` is
float64 with NaN there (``TX_FRAUD_SCENARIO`` -1), otherwise int8 as in the simulator.

The late-labels file (``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_FRAUD,
LABEL_AVAILABLE_FROM``; CSV, Parquet or pickle) gives labels that may be used only from
``LABEL_AVAILABLE_FROM`` on.

Pickles run code when loaded: read only folders you trust (as with the Handbook's own files).
Every problem with the input raises a `shared.errors` user error with a one-line message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from level4_fraud import schema
from shared.atomic import atomic_dir
from shared.errors import InputFileError, SchemaError

DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(pkl|parquet)$")
LABEL_SUFFIXES = (".csv", ".parquet", ".pkl")


def list_day_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The daily files of a Handbook-layout folder, in date order.

    Raises:
        InputFileError: The folder does not exist, is not a folder, holds no daily file, or holds
            a day twice (as ``.pkl`` and ``.parquet``).
    """
    path = Path(folder)
    if not path.exists():
        raise InputFileError(f"{path}: no such folder")
    if not path.is_dir():
        raise InputFileError(f"{path}: not a folder")
    days: dict[str, Path] = {}
    for f in sorted(path.iterdir()):
        m = DAY_FILE.match(f.name)
        if not m or not f.is_file():
            continue
        if m.group(1) in days:
            raise InputFileError(
                f"{path}: day {m.group(1)} appears twice ({days[m.group(1)].name}, {f.name})"
            )
        try:
            pd.Timestamp(m.group(1))
        except ValueError:
            raise InputFileError(f"{f}: file name is not a date") from None
        days[m.group(1)] = f
    if not days:
        raise InputFileError(f"{path}: no daily files (YYYY-MM-DD.pkl or YYYY-MM-DD.parquet)")
    return [days[d] for d in sorted(days)]


def _load(path: Path) -> pd.DataFrame:
    try:
        obj = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_pickle(path)
    except Exception as exc:  # any reader failure means an unreadable file to the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(f"{path}: unreadable ({reason})") from None
    if not isinstance(obj, pd.DataFrame):
        raise SchemaError(f"{path}: expected a table of transactions, got {type(obj).__name__}")
    return obj


def read_day(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate one daily file; adds ``LABELLED`` (True when it has ``TX_FRAUD``).

    Raises:
        InputFileError: The file is missing or unreadable.
        SchemaError: A column is missing or has the wrong type.
        EmptyDataError: The day has no transactions.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such file")
    raw = _load(p)
    labelled = schema.TX_FRAUD in raw.columns
    df = schema.validate_transactions(raw, source=p.name, labelled=labelled)
    if labelled and df[schema.TX_FRAUD].isna().any():
        raise SchemaError(f"{p.name}: column {schema.TX_FRAUD} has missing values")
    df[schema.LABELLED] = labelled
    return df


def read_fdh_folder(
    folder: str | os.PathLike[str],
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Read a Handbook-layout folder into one frame in time order.

    Args:
        folder: Folder of ``YYYY-MM-DD.pkl`` / ``.parquet`` daily files (other files are ignored).
        start: First day to read (inclusive), by file name.
        end: Last day to read (inclusive), by file name.

    Returns:
        The transactions sorted by ``TX_DATETIME`` then ``TRANSACTION_ID`` with a fresh index,
        the contract's dtypes, ``LABELLED`` per row; ``TX_FRAUD`` int8 when every day is labelled,
        else float64 with NaN on unlabelled days. Richer columns are kept when every day has them.

    Raises:
        InputFileError: Missing folder, no daily files (in the range), unreadable file.
        SchemaError: A day has a wrong schema or types, or a transaction id appears twice.
        EmptyDataError: A day has no transactions.
    """
    files = list_day_files(folder)
    lo = pd.Timestamp(start).normalize() if start is not None else None
    hi = pd.Timestamp(end).normalize() if end is not None else None
    chosen = [
        f
        for f in files
        if (lo is None or pd.Timestamp(f.stem) >= lo) and (hi is None or pd.Timestamp(f.stem) <= hi)
    ]
    if not chosen:
        raise InputFileError(f"{folder}: no daily files between {start} and {end}")
    return concat_days([read_day(f) for f in chosen], source=str(folder))


def concat_days(days: Iterable[pd.DataFrame], *, source: str = "transactions") -> pd.DataFrame:
    """Concatenate validated daily frames (labelled or not) into the folder frame (see above)."""
    frames = list(days)
    if not frames:
        raise InputFileError(f"{source}: no daily files")
    common = [c for c in frames[0].columns if all(c in f.columns for f in frames)]
    # Label columns exist only on labelled days; the frame always has them (NaN / -1 if unknown).
    common += [c for c in schema.LABEL_COLUMNS if c not in common]
    frames = [f.reindex(columns=common) for f in frames]
    for f in frames:
        f[schema.TX_FRAUD] = f[schema.TX_FRAUD].astype("float64")
        f[schema.TX_FRAUD_SCENARIO] = f[schema.TX_FRAUD_SCENARIO].fillna(schema.SCENARIO_UNKNOWN)
        for col in schema.CATEGORY_COLUMNS:
            if col in f.columns:
                f[col] = f[col].astype("object")
    out = pd.concat(frames, ignore_index=True)
    for col in schema.CATEGORY_COLUMNS:
        if col in out.columns:
            out[col] = out[col].astype("category")
    out[schema.TX_FRAUD_SCENARIO] = out[schema.TX_FRAUD_SCENARIO].astype("int8")
    if out[schema.TX_FRAUD].notna().all():
        out[schema.TX_FRAUD] = out[schema.TX_FRAUD].astype("int8")
    out[schema.LABELLED] = out[schema.LABELLED].astype(bool)
    dup = out[schema.TRANSACTION_ID].duplicated()
    if dup.any():
        tid = int(out.loc[dup, schema.TRANSACTION_ID].iloc[0])
        raise SchemaError(f"{source}: transaction {tid} appears more than once")
    return schema.sort_transactions(out)


def read_late_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a late-labels file (CSV, Parquet or pickle, by extension).

    Raises:
        InputFileError: Missing or unreadable file, or an unknown extension.
        SchemaError: A column is missing or has the wrong type.
        EmptyDataError: The file has no labels.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such file")
    if p.suffix not in LABEL_SUFFIXES:
        raise InputFileError(f"{p}: unknown label file type (use {', '.join(LABEL_SUFFIXES)})")
    try:
        if p.suffix == ".csv":
            raw = pd.read_csv(p)
        elif p.suffix == ".parquet":
            raw = pd.read_parquet(p)
        else:
            raw = pd.read_pickle(p)
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=list(schema.LATE_LABEL_COLUMNS))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(f"{p}: unreadable ({reason})") from None
    return schema.validate_late_labels(raw, source=p.name)


def apply_late_labels(
    tx: pd.DataFrame, labels: pd.DataFrame, *, as_of: str | pd.Timestamp | None = None
) -> pd.DataFrame:
    """Label unlabelled transactions from late labels available at `as_of` (all when None).

    A transaction already labelled keeps its label. Rows that receive a late label get
    ``LABELLED`` True and ``TX_FRAUD_SCENARIO`` -1 (the file does not say the scenario).

    Returns:
        A copy of `tx`.
    """
    out = tx.copy()
    if schema.LABELLED not in out.columns:
        out[schema.LABELLED] = schema.TX_FRAUD in out.columns
    usable = labels
    if as_of is not None:
        usable = labels[labels[schema.LABEL_AVAILABLE_FROM] <= pd.Timestamp(as_of)]
    lab = usable.set_index(schema.TRANSACTION_ID)[schema.TX_FRAUD]
    got = out[schema.TRANSACTION_ID].map(lab)
    fill = got.notna().to_numpy() & ~out[schema.LABELLED].to_numpy()
    if schema.TX_FRAUD not in out.columns:
        out[schema.TX_FRAUD] = np.nan
        out[schema.TX_FRAUD_SCENARIO] = np.int8(schema.SCENARIO_UNKNOWN)
    if fill.any():
        fraud = out[schema.TX_FRAUD].astype("float64")
        fraud[fill] = got[fill].astype("float64")
        out[schema.TX_FRAUD] = fraud
        out.loc[fill, schema.TX_FRAUD_SCENARIO] = schema.SCENARIO_UNKNOWN
        out.loc[fill, schema.LABELLED] = True
    if out[schema.TX_FRAUD].notna().all():
        out[schema.TX_FRAUD] = out[schema.TX_FRAUD].astype("int8")
    return out


def late_labels_from(
    tx: pd.DataFrame,
    *,
    delay_days: float = 7.0,
    jitter_days: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A late-labels frame for labelled transactions: each label available `delay_days` later.

    Args:
        tx: Labelled transactions.
        delay_days: Investigation delay (the Handbook's 7 days).
        jitter_days: Extra uniform delay in ``[0, jitter_days)`` per label.
        seed: For the jitter.
    """
    lab = tx[tx[schema.TX_FRAUD].notna()] if tx[schema.TX_FRAUD].dtype.kind == "f" else tx
    rng = np.random.default_rng(seed)
    delay = delay_days + (rng.uniform(0, jitter_days, len(lab)) if jitter_days > 0 else 0.0)
    out = lab.loc[
        :,
        [schema.TRANSACTION_ID, schema.TX_DATETIME, schema.CUSTOMER_ID, schema.TERMINAL_ID, schema.TX_FRAUD],
    ].copy()
    out[schema.TX_FRAUD] = out[schema.TX_FRAUD].astype("int8")
    out[schema.LABEL_AVAILABLE_FROM] = out[schema.TX_DATETIME] + pd.to_timedelta(delay, unit="D")
    return out.reset_index(drop=True)


def write_fdh_folder(
    tx: pd.DataFrame,
    folder: str | os.PathLike[str],
    *,
    fmt: Literal["parquet", "pkl"] = "parquet",
    unlabelled_days: Iterable[str | pd.Timestamp] = (),
    handbook_columns_only: bool = False,
) -> list[Path]:
    """Write transactions as one file per day (replacing `folder` atomically).

    Args:
        tx: Transactions with ``TX_DATETIME``.
        folder: Target folder.
        fmt: ``parquet`` or ``pkl``.
        unlabelled_days: Days written without ``TX_FRAUD``/``TX_FRAUD_SCENARIO`` (history only).
        handbook_columns_only: Keep only the Handbook's 9 columns (drop richer fields).

    Returns:
        The written file paths (final locations), in date order.
    """
    if fmt not in ("parquet", "pkl"):
        raise InputFileError(f"unknown format {fmt!r}: use parquet or pkl")
    hidden = {pd.Timestamp(d).date() for d in unlabelled_days}
    keep = [c for c in tx.columns if c != schema.LABELLED]
    if handbook_columns_only:
        keep = [c for c in schema.HANDBOOK_COLUMNS if c in tx.columns]
    day = tx[schema.TX_DATETIME].dt.date
    names: list[Path] = []
    with atomic_dir(folder) as tmp:
        for d, frame in tx.loc[:, keep].groupby(day, sort=True):
            frame = frame.reset_index(drop=True)
            if d in hidden:
                frame = frame.drop(columns=[c for c in schema.LABEL_COLUMNS if c in frame.columns])
            name = f"{d.isoformat()}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(tmp / name, index=False)
            else:
                frame.to_pickle(tmp / name)
            names.append(Path(folder) / name)
    return names
