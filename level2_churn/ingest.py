"""Ingest the raw sources: validate, fix the mess, quarantine bad rows, write clean Parquet.

`load_and_clean(raw_dir, out_dir)` reads ``customers.csv``, ``billing/*.parquet``, ``support/*.jsonl``
and ``usage/month=*/*.parquet`` one file at a time (memory stays bounded at any size) and writes::

    out_dir/
      customers.parquet
      billing/bucket=NNNN/<file>.parquet     clean events, split into customer buckets so that the
      support/bucket=NNNN/<file>.parquet     feature builder can read one bucket of customers at a time
      usage/bucket=NNNN/<file>.parquet
      quarantine/<source>.parquet            every rejected row, raw values as text, with `_rule`, `_file`
      dq_report.json                         per source, rule and action: how many rows/cells
      meta.json                              data window (first event, export end), bucket size

Rules, in the order they are applied (the ``rule`` column of the report; the kinds the simulator
injects use the same names):

=====================  ============  =================================================================
rule                   action        meaning
=====================  ============  =================================================================
duplicate              dropped       exact copy of an earlier row in the same file
id_format              fixed         customer id in a drifting format (``c-123``) rewritten ``C0000123``
category_spelling      fixed         ``Prem.``/``Month-to-month``/``TV`` mapped to canonical values
date_format            fixed         non-ISO date, other UTC offset or epoch ms, normalised to naive UTC
missing                fixed         blank category filled with ``unknown`` (region, age band, device)
missing                flagged       blank number kept as NaN (minutes, plan, satisfaction: informative)
unit_mistake           fixed         amount in cents (/100), minutes logged in seconds (/60)
late_arrival           flagged       loaded more than 2 days after the event; kept, features use the
                                     load time so a late row is invisible before it arrived
bad_id                 quarantined   customer id unreadable
orphan                 quarantined   customer id not in customers.csv
bad_date               quarantined   required date/time missing or unreadable
unknown_category       quarantined   category value not recognisable
bad_value              quarantined   number unreadable
duplicate_id           quarantined   second row for an already seen customer (customers.csv)
outlier                quarantined   impossible value (pandera range checks: amount, minutes,
                                     sessions, satisfaction, resolved before created)
cancel_before_signup   quarantined   customers.csv row with a cancel date before signup
loaded_before_event    quarantined   billing row loaded more than a day before it happened
=====================  ============  =================================================================
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from level2_churn.clean import format_ids, normalise_category, normalise_ids, parse_dates, parse_timestamps
from level2_churn.validate import (
    MAX_AMOUNT,
    MAX_MINUTES_PER_SESSION,
    check_structure,
    split_valid,
)
from shared.atomic import atomic_dir, atomic_write_json
from shared.errors import EmptyDataError, InputFileError, SchemaError
from shared.progress import track

SOURCES = ("customers", "billing", "support", "usage")
LATE_AFTER = pd.Timedelta(days=2)
DQ_COLUMNS = ["source", "rule", "action", "count"]


@dataclass
class CleanResult:
    """What `load_and_clean` produced.

    Attributes:
        out_dir: The clean folder.
        dq: Data-quality report, one row per (source, rule, action) with a ``count``.
        rows_in: Raw rows read per source.
        rows_out: Clean rows written per source.
        quarantined: Rows quarantined per source.
        data_start: First day with events (midnight, naive UTC).
        data_end: Export end: the day after the last load (midnight); no data at or after it.
    """

    out_dir: Path
    dq: pd.DataFrame
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    data_start: pd.Timestamp | None = None
    data_end: pd.Timestamp | None = None


class _Ledger:
    """Counts for the data-quality report and the streaming quarantine files."""

    def __init__(self, out: Path):
        self.counts: dict[tuple[str, str, str], int] = defaultdict(int)
        self.out = out / "quarantine"
        self.out.mkdir(parents=True, exist_ok=True)
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.columns: dict[str, list[str]] = {}
        self.quarantined: dict[str, int] = defaultdict(int)

    def add(self, source: str, rule: str, action: str, count: int | np.integer) -> None:
        if int(count):
            self.counts[(source, rule, action)] += int(count)

    def quarantine(self, source: str, raw: pd.DataFrame, rules: pd.Series, file: str) -> None:
        """Write the raw rows whose index is in `rules`, tagged with their rule, and count them."""
        if len(rules) == 0:
            return
        rows = raw.loc[rules.index]
        cols = self.columns.setdefault(source, list(raw.columns))
        rows = rows.reindex(columns=cols)
        text = {c: _as_text(rows[c]) for c in cols}
        text["_rule"] = rules.astype(str).tolist()
        text["_file"] = [file] * len(rows)
        table = pa.table({k: pa.array(v, type=pa.string()) for k, v in text.items()})
        if source not in self.writers:
            self.writers[source] = pq.ParquetWriter(self.out / f"{source}.parquet", table.schema)
        self.writers[source].write_table(table)
        for rule, n in rules.value_counts().items():
            self.add(source, str(rule), "quarantined", n)
        self.quarantined[source] += len(rows)

    def close(self) -> None:
        for source in SOURCES:
            if source not in self.writers:
                # An empty file with the bookkeeping columns, so every source has one to inspect.
                empty = pa.table({"_rule": pa.array([], pa.string()), "_file": pa.array([], pa.string())})
                pq.write_table(empty, self.out / f"{source}.parquet")
        for w in self.writers.values():
            w.close()

    def frame(self) -> pd.DataFrame:
        rows = [(s, r, a, n) for (s, r, a), n in self.counts.items()]
        df = pd.DataFrame(rows, columns=DQ_COLUMNS)
        order = {s: i for i, s in enumerate(SOURCES)}
        return (
            df.assign(_o=df["source"].map(order))
            .sort_values(["_o", "action", "rule"])
            .drop(columns="_o")
            .reset_index(drop=True)
            .astype({"count": "int64"})
        )


def _as_text(s: pd.Series) -> list[str | None]:
    if pd.api.types.is_datetime64_any_dtype(s):
        return [None if pd.isna(v) else str(v) for v in s]
    return [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in s.tolist()]


def _first_rule(n: int, checks: list[tuple[str, np.ndarray]]) -> pd.Series:
    """For each row, the first rule whose mask is true (rows with none are absent)."""
    rule = np.full(n, None, dtype=object)
    for name, mask in checks:
        rule[mask & pd.isna(rule)] = name
    idx = np.flatnonzero(pd.notna(rule))
    return pd.Series(rule[idx], index=idx, dtype=object)


def _duplicated(table: pa.Table) -> np.ndarray:
    """Exact duplicate rows (all but the first occurrence), fast on large tables."""
    codes = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            enc = pc.dictionary_encode(col)
            codes[name] = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
        elif pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            as_int = col.view(pa.int32() if pa.types.is_date32(col.type) else pa.int64())
            codes[name] = pc.fill_null(as_int, -(2**31)).to_numpy(zero_copy_only=False)
        else:
            codes[name] = col.to_numpy(zero_copy_only=False)
    return pd.DataFrame(codes).duplicated().to_numpy()


def _read_error(source: str, path: Path, exc: BaseException) -> InputFileError:
    return InputFileError(f"{source}: cannot read {path.name}: {type(exc).__name__}: {exc}".splitlines()[0])


def _files(raw_dir: Path, source: str, pattern: str) -> list[Path]:
    folder = raw_dir / source
    if not folder.is_dir():
        raise InputFileError(f"{source}: folder not found: {folder}")
    files = sorted(folder.glob(pattern))
    if not files:
        raise InputFileError(f"{source}: no {pattern} files under {folder}")
    return files


# --------------------------------------------------------------------------------------------
# customers


def _clean_customers(raw_dir: Path, ledger: _Ledger) -> tuple[pd.DataFrame, int]:
    path = raw_dir / "customers.csv"
    if not path.is_file():
        raise InputFileError(f"customers: file not found: {path}")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise _read_error("customers", path, exc) from None
    check_structure(raw, "customers", path.name)
    n_in = len(raw)
    if n_in == 0:
        raise EmptyDataError(f"customers: {path.name} has no rows")
    dup = raw.duplicated().to_numpy()
    ledger.add("customers", "duplicate", "dropped", dup.sum())
    raw = raw[~dup].reset_index(drop=True)
    n = len(raw)

    num, id_fixed, id_bad = normalise_ids(raw["customer_id"])
    ledger.add("customers", "id_format", "fixed", id_fixed.sum())
    signup, f1, b1 = parse_dates(raw["signup_date"])
    cancel, f2, b2 = parse_dates(raw["cancel_date"])
    if "price_change_date" in raw:
        change, f3, b3 = parse_dates(raw["price_change_date"])
    else:
        change, f3, b3 = (
            pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"),
            np.zeros(n, bool),
            np.zeros(n, bool),
        )
    ledger.add("customers", "date_format", "fixed", f1.sum() + f2.sum() + f3.sum())
    cats, unknown, missing_required = {}, np.zeros(n, bool), np.zeros(n, bool)
    spell = 0
    for col, domain, required in (
        ("plan", "plan", True),
        ("region", "region", False),
        ("age_band", "age_band", False),
        ("channel", "channel", False),
        ("contract", "contract", True),
    ):
        clean, fixed, miss, unk = normalise_category(raw[col], domain)
        spell += int(fixed.sum())
        unknown |= unk
        if required:
            missing_required |= miss
        else:
            ledger.add("customers", "missing", "fixed", miss.sum())
            clean = clean.where(~miss, "unknown")
        cats[col] = clean
    ledger.add("customers", "category_spelling", "fixed", spell)
    price = pd.to_numeric(raw["monthly_price"], errors="coerce").to_numpy(np.float64)
    bad_price = np.isnan(price)
    cents = (price > MAX_AMOUNT) & (price / 100 <= MAX_AMOUNT)
    price = np.where(cents, np.round(price / 100, 2), price)
    ledger.add("customers", "unit_mistake", "fixed", cents.sum())
    pct = (
        pd.to_numeric(raw["price_change_pct"], errors="coerce").to_numpy(np.float64)
        if "price_change_pct" in raw
        else np.full(n, np.nan)
    )
    rules = _first_rule(
        n,
        [
            ("bad_id", id_bad),
            ("bad_date", b1 | signup.isna().to_numpy() | b2 | b3),
            ("unknown_category", unknown | missing_required),
            ("bad_value", bad_price),
        ],
    )
    # A customer id seen twice with different content: keep the first, quarantine the others.
    seen_twice = pd.Series(num).duplicated().to_numpy() & ~id_bad
    rules = pd.concat(
        [rules, _first_rule(n, [("duplicate_id", seen_twice)]).drop(rules.index, errors="ignore")]
    )
    df = pd.DataFrame(
        {
            "customer_id": format_ids(np.maximum(num, 0)),
            "customer_num": np.maximum(num, 0).astype(np.int32),
            "signup_date": signup,
            "cancel_date": cancel,
            **{k: v.astype(object) for k, v in cats.items()},
            "monthly_price": price,
            "price_change_date": change,
            "price_change_pct": pct,
        }
    )
    df = df.drop(index=rules.index)
    df, more = split_valid(df, "customers")
    rules = pd.concat([rules, more])
    ledger.quarantine("customers", raw, rules, path.name)
    if len(df) == 0:
        raise EmptyDataError("customers: no valid rows left after cleaning")
    for c in cats:
        df[c] = df[c].astype(str)
    return df.sort_values("customer_num").reset_index(drop=True), n_in


# --------------------------------------------------------------------------------------------
# event sources


class _Events:
    """Shared steps of the event sources: read, dedupe, ids, orphans, quarantine, bucketed write."""

    def __init__(
        self, source: str, ledger: _Ledger, known: np.ndarray, ids: np.ndarray, out: Path, bucket: int
    ):
        self.source = source
        self.ledger = ledger
        self.known = known
        self.ids = ids
        self.out = out / source
        self.bucket = bucket
        self.rows_in = 0
        self.rows_out = 0
        self.min_event: pd.Timestamp | None = None
        self.max_loaded: pd.Timestamp | None = None

    def start(self, raw: pd.DataFrame, table: pa.Table | None, file: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Dedupe, parse ids; returns (deduped raw, customer numbers)."""
        check_structure(raw, self.source, file)
        self.rows_in += len(raw)
        dup = _duplicated(table) if table is not None else raw.astype(str).duplicated().to_numpy()
        self.ledger.add(self.source, "duplicate", "dropped", dup.sum())
        ids = None if table is None else table.column("customer_id")
        if dup.any():
            raw = raw[~dup].reset_index(drop=True)
            if ids is not None:
                ids = ids.filter(pa.array(~dup))
        if ids is None:
            ids = raw["customer_id"]
        num, fixed, bad = normalise_ids(ids)
        self.ledger.add(self.source, "id_format", "fixed", fixed.sum())
        self._bad_id = bad
        in_range = (num > 0) & (num < len(self.known))
        orphan = ~bad & ~np.where(in_range, self.known[np.where(in_range, num, 0)], False)
        self._orphan = orphan
        return raw, num

    def finish(
        self, raw: pd.DataFrame, clean: pd.DataFrame, checks: list[tuple[str, np.ndarray]], file: str
    ) -> None:
        """Quarantine rows failing `checks` or the pandera schema; write the rest by bucket."""
        rules = _first_rule(len(raw), [("bad_id", self._bad_id), ("orphan", self._orphan), *checks])
        clean = clean.drop(index=rules.index)
        clean, more = split_valid(clean, self.source)
        rules = pd.concat([rules, more])
        self.ledger.quarantine(self.source, raw, rules, file)
        self.rows_out += len(clean)
        if len(clean) == 0:
            return
        bucket = (clean["customer_num"].to_numpy() - 1) // self.bucket
        prefix = file.replace("/", "_").replace("=", "-").removesuffix(".parquet").removesuffix(".jsonl")
        for b in np.unique(bucket):
            part = clean[bucket == b]
            folder = self.out / f"bucket={b:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            part.to_parquet(folder / f"{prefix}.parquet", index=False)

    def window(self, event: pd.Series, loaded: pd.Series) -> None:
        if len(event):
            lo, hi = event.min(), loaded.max()
            self.min_event = lo if self.min_event is None else min(self.min_event, lo)
            self.max_loaded = hi if self.max_loaded is None else max(self.max_loaded, hi)


def _read_parquet(source: str, path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _read_error(source, path, exc) from None


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas(date_as_object=False)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.DatetimeTZDtype):
            df[c] = df[c].dt.tz_convert("UTC").dt.tz_localize(None)
    return df


def _as_ts(s: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Timestamps from typed or text columns: (naive UTC, fixed mask, bad mask)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s.astype("datetime64[ns]")
        return out, np.zeros(len(s), bool), np.zeros(len(s), bool)
    return parse_timestamps(s)


def _clean_billing(ev: _Events, path: Path, file: str) -> None:
    table = _read_parquet("billing", path)
    raw = _to_pandas(table)
    raw, num = ev.start(raw, table, file)
    n = len(raw)
    ts, f_ts, b_ts = _as_ts(raw["ts"])
    loaded, _, b_ld = _as_ts(raw["loaded_at"])
    ev.ledger.add("billing", "date_format", "fixed", f_ts.sum())
    kind, fk, mk, uk = normalise_category(raw["type"], "txn_type")
    plan, fp, mp, up = normalise_category(raw["plan"], "plan")
    ev.ledger.add("billing", "category_spelling", "fixed", fk.sum() + fp.sum())
    ev.ledger.add("billing", "missing", "flagged", mp.sum())
    amount = pd.to_numeric(raw["amount"], errors="coerce").to_numpy(np.float64)
    cents = (amount > MAX_AMOUNT) & (amount / 100 <= MAX_AMOUNT)
    amount = np.where(cents, np.round(amount / 100, 2), amount)
    ev.ledger.add("billing", "unit_mistake", "fixed", cents.sum())
    discount = pd.to_numeric(raw["discount"], errors="coerce").to_numpy(np.float64)
    late = ((loaded - ts) > LATE_AFTER).to_numpy()
    ev.ledger.add("billing", "late_arrival", "flagged", late.sum())
    clean = pd.DataFrame(
        {
            "txn_id": raw["txn_id"].astype(str),
            "customer_num": np.maximum(num, 0).astype(np.int32),
            "ts": ts,
            "loaded_at": loaded,
            "type": kind,
            "amount": amount,
            "discount": discount,
            "plan": plan,
        }
    )
    checks = [
        ("bad_date", (b_ts | b_ld | ts.isna().to_numpy() | loaded.isna().to_numpy())),
        ("unknown_category", uk | mk | up),
        ("bad_value", np.isnan(amount)),
    ]
    ev.finish(raw, clean, checks, file)
    ok = ~(b_ts | b_ld | ts.isna().to_numpy())
    ev.window(ts[ok], loaded[ok])
    del n


def _clean_support(ev: _Events, path: Path, file: str) -> None:
    try:
        raw = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _read_error("support", path, exc) from None
    if len(raw) == 0:
        return
    for col in ("escalated_at", "subject"):  # optional columns
        if col not in raw:
            raw[col] = None
    raw, num = ev.start(raw, None, file)
    created, f1, b1 = parse_timestamps(raw["created_at"])
    resolved, f2, b2 = parse_timestamps(raw["resolved_at"])
    escalated, f3, b3 = parse_timestamps(raw["escalated_at"])
    ev.ledger.add("support", "date_format", "fixed", f1.sum() + f2.sum() + f3.sum())
    cat, fc, mc, uc = normalise_category(raw["category"], "ticket_category")
    chan, fh, mh, uh = normalise_category(raw["channel"], "ticket_channel")
    ev.ledger.add("support", "category_spelling", "fixed", fc.sum() + fh.sum())
    sat = pd.to_numeric(raw["satisfaction"], errors="coerce").to_numpy(np.float64)
    bad_sat = raw["satisfaction"].notna().to_numpy() & np.isnan(sat)
    ev.ledger.add(
        "support", "missing", "flagged", (np.isnan(sat) & ~bad_sat & resolved.notna().to_numpy()).sum()
    )
    clean = pd.DataFrame(
        {
            "ticket_id": raw["ticket_id"].astype(str),
            "customer_num": np.maximum(num, 0).astype(np.int32),
            "created_at": created,
            "resolved_at": resolved,
            "escalated_at": escalated,
            "category": cat,
            "channel": chan,
            "satisfaction": sat,
            "subject": raw["subject"].astype(object).where(raw["subject"].notna(), None),
        }
    )
    checks = [
        ("bad_date", b1 | b2 | b3 | created.isna().to_numpy()),
        ("unknown_category", uc | mc | uh | mh),
        ("bad_value", bad_sat),
    ]
    ev.finish(raw, clean, checks, file)
    ok = created.notna()
    ev.window(created[ok], created[ok])


def _clean_usage(ev: _Events, path: Path, file: str) -> None:
    table = _read_parquet("usage", path)
    raw = _to_pandas(table)
    raw, num = ev.start(raw, table, file)
    date, _, b_d = _as_ts(raw["date"])
    loaded, _, b_l = _as_ts(raw["loaded_at"])
    device, fd, md, ud = normalise_category(raw["device"], "device")
    ev.ledger.add("usage", "category_spelling", "fixed", fd.sum())
    ev.ledger.add("usage", "missing", "fixed", md.sum())
    device = device.where(~md, "unknown")
    sessions = pd.to_numeric(raw["sessions"], errors="coerce").to_numpy(np.float64)
    minutes = pd.to_numeric(raw["minutes"], errors="coerce").to_numpy(np.float64)
    ev.ledger.add("usage", "missing", "flagged", (raw["minutes"].isna()).sum())
    ok_sessions = (sessions >= 1) & (sessions <= 200)
    seconds = (
        ok_sessions
        & (minutes > MAX_MINUTES_PER_SESSION * sessions)
        & (minutes / 60 <= MAX_MINUTES_PER_SESSION * sessions)
    )
    minutes = np.where(seconds, np.round(minutes / 60, 1), minutes)
    ev.ledger.add("usage", "unit_mistake", "fixed", seconds.sum())
    feats = pd.to_numeric(raw["features_used"], errors="coerce").to_numpy(np.float64)
    day = date.dt.normalize()
    late = ((loaded - day) > LATE_AFTER).to_numpy()
    ev.ledger.add("usage", "late_arrival", "flagged", late.sum())
    bad_value = np.isnan(sessions) | np.isnan(feats)
    clean = pd.DataFrame(
        {
            "customer_num": np.maximum(num, 0).astype(np.int32),
            "date": day,
            "loaded_at": loaded,
            "sessions": np.nan_to_num(np.clip(sessions, -1, 2**31 - 1), nan=-1).astype(np.int32),
            "minutes": minutes,
            "features_used": np.nan_to_num(np.clip(feats, -1, 30000), nan=-1).astype(np.int16),
            "device": device.astype(object),
        }
    )
    checks = [
        ("bad_date", b_d | b_l | day.isna().to_numpy() | loaded.isna().to_numpy()),
        ("unknown_category", ud),
        ("bad_value", bad_value),
    ]
    ev.finish(raw, clean, checks, file)
    ok = day.notna() & loaded.notna()
    ev.window(day[ok], loaded[ok])


# --------------------------------------------------------------------------------------------


def load_and_clean(
    raw_dir: Path,
    out_dir: Path,
    *,
    bucket_customers: int = 100_000,
    progress: bool = False,
) -> CleanResult:
    """Validate, clean and quarantine every raw source; write clean Parquet and a data-quality report.

    The clean folder is built next to `out_dir` and renamed into place only when every source is
    done, so a broken source leaves no half-written output.

    Args:
        raw_dir: Folder with ``customers.csv``, ``billing/``, ``support/``, ``usage/``.
        out_dir: Clean folder to write (replaced if it exists).
        bucket_customers: Customers per bucket of the clean event tables (the unit the feature
            builder loads at a time).
        progress: Show progress bars on stderr.

    Returns:
        A `CleanResult` with the data-quality report as a DataFrame.

    Raises:
        InputFileError: A source file or folder is missing or unreadable.
        SchemaError: A source misses a required column or holds the wrong type.
        EmptyDataError: No customer survives cleaning.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise InputFileError(f"raw data folder not found: {raw_dir}")
    with atomic_dir(out_dir) as tmp:
        ledger = _Ledger(tmp)
        try:
            customers, n_cust_in = _clean_customers(raw_dir, ledger)
            customers.to_parquet(tmp / "customers.parquet", index=False)
            max_num = int(customers["customer_num"].max())
            known = np.zeros(max_num + 1, bool)
            known[customers["customer_num"].to_numpy()] = True
            ids = np.full(max_num + 1, None, dtype=object)
            ids[customers["customer_num"].to_numpy()] = customers["customer_id"].to_numpy()
            sources = {
                "billing": (_clean_billing, _files(raw_dir, "billing", "*.parquet")),
                "support": (_clean_support, _files(raw_dir, "support", "*.jsonl")),
                "usage": (_clean_usage, _files(raw_dir, "usage", "**/*.parquet")),
            }
            events: dict[str, _Events] = {}
            for source, (fn, files) in sources.items():
                ev = _Events(source, ledger, known, ids, tmp, bucket_customers)
                for path in track(files, f"ingest {source}", disable=not progress):
                    fn(ev, path, str(path.relative_to(raw_dir / source)))
                events[source] = ev
            ledger.close()
            starts = [e.min_event for e in events.values() if e.min_event is not None]
            loaded = (events[s].max_loaded for s in ("billing", "usage"))
            ends = [end for end in loaded if end is not None]
            if not starts or not ends:
                raise EmptyDataError("no valid billing or usage events left after cleaning")
            data_start = min(starts).normalize()
            data_end = max(ends).normalize() + pd.Timedelta(days=1)
            dq = ledger.frame()
            rows_in = {"customers": n_cust_in, **{s: e.rows_in for s, e in events.items()}}
            rows_out = {"customers": len(customers), **{s: e.rows_out for s, e in events.items()}}
            quarantined = {s: int(ledger.quarantined.get(s, 0)) for s in SOURCES}
            report = {
                "sources": {
                    s: {"rows_in": rows_in[s], "rows_out": rows_out[s], "quarantined": quarantined[s]}
                    for s in SOURCES
                },
                "rules": dq.to_dict(orient="records"),
            }
            atomic_write_json(tmp / "dq_report.json", report)
            meta = {
                "data_start": str(data_start.date()),
                "data_end": str(data_end.date()),
                "bucket_customers": bucket_customers,
                "n_buckets": int((max_num - 1) // bucket_customers + 1),
                "customers": len(customers),
            }
            atomic_write_json(tmp / "meta.json", meta)
        except BaseException:
            # Parquet writers hold open files in the folder atomic_dir is about to remove.
            for w in ledger.writers.values():
                with contextlib.suppress(Exception):
                    w.close()
            raise
    return CleanResult(
        out_dir=out_dir,
        dq=dq,
        rows_in=rows_in,
        rows_out=rows_out,
        quarantined=quarantined,
        data_start=data_start,
        data_end=data_end,
    )


def read_dq_report(clean_dir: Path) -> pd.DataFrame:
    """The data-quality report of a clean folder as a DataFrame (source, rule, action, count)."""
    path = Path(clean_dir) / "dq_report.json"
    if not path.is_file():
        raise InputFileError(f"data-quality report not found: {path}")
    return pd.DataFrame(json.loads(path.read_text(encoding="utf-8"))["rules"], columns=DQ_COLUMNS)


def read_meta(clean_dir: Path) -> dict[str, Any]:
    """The data window and bucket layout of a clean folder (``meta.json``)."""
    path = Path(clean_dir) / "meta.json"
    if not path.is_file():
        raise InputFileError(f"clean data not found: {path} (run ingest first)")
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["CleanResult", "SchemaError", "load_and_clean", "read_dq_report", "read_meta"]
