"""Point-in-time monthly snapshots: features from data known before t, label from the 30 days after.

For each snapshot date ``t`` (a month start) and each customer active at ``t`` (signed up before ``t``,
not cancelled before ``t``), every feature uses only records whose event time is before ``t`` **and**
whose load time is before ``t`` (a late-arriving record is invisible until it arrived). Support
tickets count from their creation, but their resolution time and satisfaction score only from the
moment they were resolved, and escalations from the moment they happened. The label is 1 when the
customer's cancel date falls in ``[t, t + 30 days)``.

Feature families (windows ``w`` in 7/30/90 days before ``t``):

* usage: minutes, sessions and active days per window, least-squares slope of daily minutes per
  window, ``usage_trend_30_90`` (log minutes of the last 30 days against half the 60 before), days
  since last use, features used, devices, missing-minute days;
* billing (recency/frequency/monetary): failed payments 30/90 days and ever, days since the last
  payment and failed payment, amount paid and refunds over 90 days, discounts, last invoice amount
  and its change over 90 days, current plan (last invoice) and plan changes;
* support: tickets 30/90 days and ever, open tickets at ``t``, mean resolution hours, mean and low
  satisfaction, unrated tickets, escalations, billing and cancellation tickets, days since last ticket;
* account: tenure, contract, days to contract end (NaN for monthly contracts), price rise in the last
  90 days, size of the last price change, signup plan, region, age band, acquisition channel.

Computation is vectorised per customer bucket (as written by ingest), so memory stays bounded:
`write_snapshots` streams buckets to a Parquet file; `build_snapshots` returns one DataFrame.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from level2_churn.clean import DOMAINS, format_ids
from level2_churn.ingest import read_meta
from shared.atomic import atomic_path
from shared.errors import DataError, EmptyDataError, InputFileError
from shared.progress import track

ID_COLUMNS = ("customer_id", "snapshot_date")
LABEL = "label"
DAY = np.int64(86_400)
WINDOWS = (7, 30, 90)
# Categorical features with fixed categories, so every bucket and snapshot has the same dtype.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "plan": (*DOMAINS["plan"], "unknown"),
    "signup_plan": DOMAINS["plan"],
    "contract": DOMAINS["contract"],
    "region": (*DOMAINS["region"], "unknown"),
    "age_band": (*DOMAINS["age_band"], "unknown"),
    "channel": (*DOMAINS["channel"], "unknown"),
}
CATEGORICAL_FEATURES = tuple(CATEGORIES)
_TXN = {v: i for i, v in enumerate(DOMAINS["txn_type"])}
_PLAN = {v: i for i, v in enumerate(DOMAINS["plan"])}
_TICKET = {v: i for i, v in enumerate(DOMAINS["ticket_category"])}
_DEVICE = {v: i for i, v in enumerate((*DOMAINS["device"], "unknown"))}
_CONTRACT_DAYS = {"monthly": 0, "annual": 365, "two_year": 730}


class FeatureConfig(BaseModel):
    """Which snapshots to build and how far the label looks ahead."""

    model_config = ConfigDict(extra="forbid")

    min_history_days: int = Field(90, ge=0, description="days of data required before the first snapshot")
    label_days: int = Field(30, ge=1, description="label: churn within this many days after t")
    first_snapshot: date | None = Field(None, description="earliest snapshot date (default: from the data)")
    last_snapshot: date | None = Field(
        None, description="latest labelled snapshot date (default: from the data)"
    )


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The model's feature columns of a snapshot frame (everything but ids and label)."""
    return [c for c in df.columns if c not in (*ID_COLUMNS, LABEL)]


def categorical_columns(df: pd.DataFrame) -> list[str]:
    """Feature columns with pandas ``category`` dtype."""
    return [c for c in feature_columns(df) if isinstance(df[c].dtype, pd.CategoricalDtype)]


def snapshot_dates(
    data_start: pd.Timestamp, data_end: pd.Timestamp, cfg: FeatureConfig
) -> list[pd.Timestamp]:
    """Labelled snapshot dates: month starts with enough history before and a full label window after.

    Args:
        data_start: First day with data.
        data_end: Export end (no data at or after it).
        cfg: Feature settings.
    """
    first = pd.Timestamp(data_start) + pd.Timedelta(days=cfg.min_history_days)
    last = pd.Timestamp(data_end) - pd.Timedelta(days=cfg.label_days)
    if cfg.first_snapshot is not None:
        first = max(first, pd.Timestamp(cfg.first_snapshot))
    if cfg.last_snapshot is not None:
        last = min(last, pd.Timestamp(cfg.last_snapshot))
    starts = pd.date_range(first.to_period("M").to_timestamp(), last, freq="MS")
    return [t for t in starts if first <= t <= last]


# --------------------------------------------------------------------------------------------
# the core: features for in-memory tables


def _secs(s: pd.Series) -> np.ndarray:
    """datetime64 -> int64 seconds; NaT -> a far-future value (never before any t)."""
    v = pd.to_datetime(s).to_numpy("datetime64[s]")
    out = v.astype(np.int64)
    out[np.isnat(v)] = np.iinfo(np.int64).max // 2
    return out


class _Bucket:
    """Sorted numpy views of one bucket of clean tables, indexed by local customer position."""

    def __init__(
        self, customers: pd.DataFrame, billing: pd.DataFrame, support: pd.DataFrame, usage: pd.DataFrame
    ):
        cust = customers.sort_values("customer_num").reset_index(drop=True)
        self.cust = cust
        self.n = len(cust)
        nums = cust["customer_num"].to_numpy(np.int64)
        self.signup = _secs(cust["signup_date"])
        self.cancel = _secs(cust["cancel_date"])
        self.change = _secs(cust["price_change_date"])
        self.change_pct = np.nan_to_num(cust["price_change_pct"].to_numpy(np.float64)) / 100.0
        self.period = cust["contract"].map(_CONTRACT_DAYS).to_numpy(np.float64)

        def local(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
            pos = np.searchsorted(nums, df["customer_num"].to_numpy(np.int64))
            pos = np.clip(pos, 0, max(self.n - 1, 0))
            ok = (nums[pos] == df["customer_num"].to_numpy(np.int64)) if self.n else np.zeros(len(df), bool)
            return df[ok], pos[ok]

        u, uc = local(usage)
        order = np.argsort(_secs(u["date"]), kind="stable")
        self.u_c = uc[order]
        self.u_day = _secs(u["date"])[order]
        self.u_loaded = _secs(u["loaded_at"])[order]
        m = u["minutes"].to_numpy(np.float64)[order]
        self.u_missing = np.isnan(m)
        self.u_min = np.nan_to_num(m)
        self.u_sess = u["sessions"].to_numpy(np.float64)[order]
        self.u_feat = u["features_used"].to_numpy(np.float64)[order]
        self.u_dev = u["device"].map(_DEVICE).fillna(len(_DEVICE) - 1).to_numpy(np.int64)[order]

        b, bc = local(billing)
        order = np.argsort(_secs(b["ts"]), kind="stable")
        self.b_c = bc[order]
        self.b_ts = _secs(b["ts"])[order]
        self.b_loaded = _secs(b["loaded_at"])[order]
        self.b_type = b["type"].map(_TXN).to_numpy(np.int64)[order]
        self.b_amount = b["amount"].to_numpy(np.float64)[order]
        self.b_disc = np.nan_to_num(b["discount"].to_numpy(np.float64))[order]
        self.b_plan = b["plan"].map(_PLAN).fillna(-1).to_numpy(np.int64)[order]

        s, sc = local(support)
        order = np.argsort(_secs(s["created_at"]), kind="stable")
        self.s_c = sc[order]
        self.s_created = _secs(s["created_at"])[order]
        self.s_resolved = _secs(s["resolved_at"])[order]
        self.s_esc = _secs(s["escalated_at"])[order]
        self.s_sat = s["satisfaction"].to_numpy(np.float64)[order]
        self.s_cat = s["category"].map(_TICKET).to_numpy(np.int64)[order]


def _count(c: np.ndarray, n: int, w: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(c, weights=w, minlength=n).astype(np.float64)


def _last(c: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Per customer, the largest `x` (NaN where the customer has none)."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, c, x)
    out[np.isneginf(out)] = np.nan
    return out


def _last_value(c: np.ndarray, order_key: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Per customer, `v` at the row with the largest `order_key` (NaN where none)."""
    out = np.full(n, np.nan)
    if len(c) == 0:
        return out
    idx = np.lexsort((order_key, c))
    last = np.r_[c[idx][1:] != c[idx][:-1], True]
    out[c[idx][last]] = v[idx][last]
    return out


def _first_value(c: np.ndarray, order_key: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    if len(c) == 0:
        return out
    idx = np.lexsort((order_key, c))
    first = np.r_[True, c[idx][1:] != c[idx][:-1]]
    out[c[idx][first]] = v[idx][first]
    return out


def _features_at(bk: _Bucket, t: pd.Timestamp, label_days: int | None) -> pd.DataFrame:
    """Features (and label) for the customers of one bucket active at `t`."""
    n = bk.n
    ts = np.int64(pd.Timestamp(t).value // 1_000_000_000)
    active = (bk.signup < ts) & (bk.cancel >= ts)
    f: dict[str, np.ndarray] = {}
    tenure = (ts - bk.signup) / DAY
    f["tenure_days"] = tenure

    # ---- usage: rows with day in [t-90d, t) that were loaded before t
    lo = np.searchsorted(bk.u_day, ts - 90 * DAY, "left")
    hi = np.searchsorted(bk.u_day, ts, "left")
    sl = slice(lo, hi)
    vis = bk.u_loaded[sl] < ts
    c = bk.u_c[sl][vis]
    x = (bk.u_day[sl][vis] - ts) / DAY  # -90 .. -1
    mins = bk.u_min[sl][vis]
    sess = bk.u_sess[sl][vis]
    for w in WINDOWS:
        sel = x >= -w
        cw = c[sel]
        f[f"minutes_{w}d"] = _count(cw, n, mins[sel])
        f[f"sessions_{w}d"] = _count(cw, n, sess[sel])
        f[f"active_days_{w}d"] = _count(cw, n)
        xbar = -(w + 1) / 2.0
        sxx = w * (w * w - 1) / 12.0
        f[f"minutes_slope_{w}d"] = _count(cw, n, (x[sel] - xbar) * mins[sel]) / sxx
    prev60 = f["minutes_90d"] - f["minutes_30d"]
    trend = np.clip(np.log1p(f["minutes_30d"]) - np.log1p(prev60 / 2.0), -3, 3)
    f["usage_trend_30_90"] = np.where(tenure >= 90, trend, 0.0)
    f["days_since_last_use"] = np.nan_to_num(-_last(c, x, n), nan=91.0)
    sel30 = x >= -30
    f["features_used_30d"] = _count(c[sel30], n, bk.u_feat[sl][vis][sel30]) / np.maximum(
        f["active_days_30d"], 1
    )
    f["missing_minutes_30d"] = _count(c[sel30], n, bk.u_missing[sl][vis][sel30].astype(float))
    dev = bk.u_dev[sl][vis]
    pairs = np.unique(c * 8 + dev)
    f["devices_90d"] = _count(pairs // 8, n)

    # ---- billing: events before t, loaded before t
    hi = np.searchsorted(bk.b_ts, ts, "left")
    vis = bk.b_loaded[:hi] < ts
    c = bk.b_c[:hi][vis]
    age = (ts - bk.b_ts[:hi][vis]) / DAY  # > 0
    typ = bk.b_type[:hi][vis]
    amt = bk.b_amount[:hi][vis]
    failed, paid, refund, inv = (
        typ == _TXN["payment_failed"],
        typ == _TXN["payment"],
        typ == _TXN["refund"],
        typ == 0,
    )
    for w in (30, 90):
        f[f"failed_payments_{w}d"] = _count(c[failed & (age <= w)], n)
    f["failed_payments_ever"] = _count(c[failed], n)
    f["days_since_failed_payment"] = -_last(c[failed], -age[failed], n)
    f["days_since_payment"] = -_last(c[paid], -age[paid], n)
    in90 = age <= 90
    f["payments_90d"] = _count(c[paid & in90], n)
    f["paid_amount_90d"] = _count(c[paid & in90], n, amt[paid & in90])
    f["refunds_90d"] = _count(c[refund & in90], n)
    f["discount_90d"] = _count(c[inv & in90], n, bk.b_disc[:hi][vis][inv & in90])
    f["invoices_ever"] = _count(c[inv], n)
    last_inv = _last_value(c[inv], -age[inv], amt[inv], n)
    first_inv_90 = _first_value(c[inv & in90], -age[inv & in90], amt[inv & in90], n)
    f["last_invoice_amount"] = last_inv
    f["invoice_change_90d"] = last_inv / first_inv_90 - 1.0
    plan_known = inv & (bk.b_plan[:hi][vis] >= 0)
    plans = bk.b_plan[:hi][vis]
    plan_now = _last_value(c[plan_known], -age[plan_known], plans[plan_known].astype(float), n)
    pk90 = plan_known & in90
    plan_pairs = np.unique(c[pk90] * 4 + plans[pk90])
    f["plan_changed_90d"] = (_count(plan_pairs // 4, n) > 1).astype(float)

    # ---- support: tickets created before t; resolution facts only once resolved before t
    hi = np.searchsorted(bk.s_created, ts, "left")
    c = bk.s_c[:hi]
    age = (ts - bk.s_created[:hi]) / DAY
    resolved = bk.s_resolved[:hi] < ts
    cat = bk.s_cat[:hi]
    for w in (30, 90):
        f[f"tickets_{w}d"] = _count(c[age <= w], n)
    f["tickets_ever"] = _count(c, n)
    f["open_tickets"] = _count(c[~resolved], n)
    f["days_since_ticket"] = -_last(c, -age, n)
    f["billing_tickets_90d"] = _count(c[(age <= 90) & (cat == _TICKET["billing"])], n)
    f["cancellation_tickets_90d"] = _count(c[(age <= 90) & (cat == _TICKET["cancellation"])], n)
    r90 = resolved & (bk.s_resolved[:hi] >= ts - 90 * DAY)
    hours = (bk.s_resolved[:hi] - bk.s_created[:hi]) / 3600.0
    n_r90 = _count(c[r90], n)
    f["resolution_hours_90d"] = _count(c[r90], n, hours[r90]) / np.where(n_r90 > 0, n_r90, np.nan)
    sat = bk.s_sat[:hi]
    rated = r90 & ~np.isnan(sat)
    n_rated = _count(c[rated], n)
    f["satisfaction_90d"] = _count(c[rated], n, sat[rated]) / np.where(n_rated > 0, n_rated, np.nan)
    f["low_satisfaction_90d"] = _count(c[rated & (sat <= 2)], n)
    f["unrated_tickets_90d"] = n_r90 - n_rated
    esc = (bk.s_esc[:hi] < ts) & (bk.s_esc[:hi] >= ts - 90 * DAY)
    f["escalations_90d"] = _count(c[esc], n)

    # ---- account
    per = bk.period
    with np.errstate(invalid="ignore", divide="ignore"):
        f["days_to_contract_end"] = np.where(
            per > 0, per - np.mod(np.floor(tenure), np.where(per > 0, per, 1)), np.nan
        )
    changed = bk.change < ts
    f["price_rise_90d"] = (changed & (bk.change >= ts - 90 * DAY)).astype(float)
    f["price_change_pct"] = np.where(changed, bk.change_pct, 0.0)
    f["days_since_price_change"] = np.where(changed, (ts - bk.change) / DAY, np.nan)

    idx = np.flatnonzero(active)
    cust = bk.cust.iloc[idx]
    out = pd.DataFrame(
        {
            "customer_id": cust["customer_id"].to_numpy(object),
            "snapshot_date": np.full(len(idx), pd.Timestamp(t).to_datetime64()).astype("datetime64[ns]"),
        }
    )
    if label_days is not None:
        horizon = ts + label_days * DAY
        out[LABEL] = ((bk.cancel[idx] >= ts) & (bk.cancel[idx] < horizon)).astype(np.int8)
    plan_codes = plan_now[idx]
    plan_names = np.array(DOMAINS["plan"], dtype=object)[np.nan_to_num(plan_codes, nan=0).astype(int)]
    plan_names[np.isnan(plan_codes)] = "unknown"
    out["plan"] = plan_names
    out["signup_plan"] = cust["plan"].to_numpy(object)
    for col in ("contract", "region", "age_band", "channel"):
        out[col] = cust[col].to_numpy(object)
    for col in CATEGORIES:
        out[col] = pd.Categorical(out[col], categories=CATEGORIES[col])
    for k, v in f.items():
        out[k] = v[idx].astype(np.float32)
    return out


def compute_features(
    customers: pd.DataFrame,
    billing: pd.DataFrame,
    support: pd.DataFrame,
    usage: pd.DataFrame,
    dates: list[pd.Timestamp],
    *,
    label_days: int | None = 30,
) -> pd.DataFrame:
    """Snapshot rows for in-memory clean tables (the pure core of `build_snapshots`).

    Args:
        customers, billing, support, usage: Clean tables as written by `ingest.load_and_clean`.
        dates: Snapshot dates.
        label_days: Label window in days; ``None`` builds unlabelled (scoring) rows.

    Returns:
        ``customer_id``, ``snapshot_date``, ``label`` (unless unlabelled), then the features.
    """
    bk = _Bucket(customers, billing, support, usage)
    frames = [_features_at(bk, t, label_days) for t in dates]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# reading clean folders bucket by bucket


def _read_bucket(clean_dir: Path, source: str, b: int, columns: list[str]) -> pd.DataFrame:
    folder = clean_dir / source / f"bucket={b:04d}"
    if not folder.is_dir():
        return pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES.get(c, "float64")) for c in columns})
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES.get(c, "float64")) for c in columns})
    return pq.read_table(files, columns=columns).to_pandas()


_EMPTY_DTYPES = {
    "customer_num": "int32",
    "date": "datetime64[ns]",
    "loaded_at": "datetime64[ns]",
    "ts": "datetime64[ns]",
    "created_at": "datetime64[ns]",
    "resolved_at": "datetime64[ns]",
    "escalated_at": "datetime64[ns]",
    "type": "object",
    "plan": "object",
    "device": "object",
    "category": "object",
}
_COLUMNS = {
    "billing": ["customer_num", "ts", "loaded_at", "type", "amount", "discount", "plan"],
    "support": ["customer_num", "created_at", "resolved_at", "escalated_at", "category", "satisfaction"],
    "usage": ["customer_num", "date", "loaded_at", "sessions", "minutes", "features_used", "device"],
}


def _iter_buckets(
    clean_dir: Path, dates: list[pd.Timestamp], label_days: int | None, progress: bool
) -> Iterator[pd.DataFrame]:
    clean_dir = Path(clean_dir)
    meta = read_meta(clean_dir)
    path = clean_dir / "customers.parquet"
    if not path.is_file():
        raise InputFileError(f"clean customers not found: {path}")
    customers = pd.read_parquet(path)
    size = int(meta["bucket_customers"])
    bucket_of = (customers["customer_num"].to_numpy() - 1) // size
    for b in track(sorted(np.unique(bucket_of)), "features by customer bucket", disable=not progress):
        cust = customers[bucket_of == b]
        tables = {s: _read_bucket(clean_dir, s, int(b), cols) for s, cols in _COLUMNS.items()}
        yield compute_features(
            cust, tables["billing"], tables["support"], tables["usage"], dates, label_days=label_days
        )


def _window(clean_dir: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    meta = read_meta(Path(clean_dir))
    return pd.Timestamp(meta["data_start"]), pd.Timestamp(meta["data_end"])


def build_snapshots(
    clean_dir: Path, cfg: FeatureConfig | None = None, *, progress: bool = False
) -> pd.DataFrame:
    """Labelled monthly snapshots for every customer active at each snapshot date.

    Only snapshots whose 30-day label window ends by the export end are built, so ``label`` is
    always 0 or 1 (use `build_scoring_snapshot` for the latest, unlabelled one).

    Args:
        clean_dir: Output folder of `ingest.load_and_clean`.
        cfg: Feature settings (defaults if ``None``).
        progress: Show a progress bar.

    Returns:
        One row per (customer, snapshot): ``customer_id`` (str), ``snapshot_date`` (datetime64[ns]),
        ``label`` (int8 0/1), then float32 features and ``category`` features (`CATEGORICAL_FEATURES`),
        sorted by snapshot date and customer.

    Raises:
        InputFileError: `clean_dir` is not a clean folder.
        EmptyDataError: The data window is too short for any labelled snapshot.
    """
    cfg = cfg or FeatureConfig()
    start, end = _window(clean_dir)
    dates = snapshot_dates(start, end, cfg)
    if not dates:
        raise EmptyDataError(
            f"no labelled snapshot fits the data window {start.date()} to {end.date()} "
            f"({cfg.min_history_days} days of history + {cfg.label_days} days of label needed)"
        )
    frames = list(_iter_buckets(Path(clean_dir), dates, cfg.label_days, progress))
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["snapshot_date", "customer_id"], kind="stable").reset_index(drop=True)


def build_scoring_snapshot(
    clean_dir: Path, t: date | pd.Timestamp | None = None, *, progress: bool = False
) -> pd.DataFrame:
    """Unlabelled features for the customers active at `t` (default: the export end, i.e. "now").

    Args:
        clean_dir: Output folder of `ingest.load_and_clean`.
        t: Snapshot date; must not be after the export end.
        progress: Show a progress bar.

    Returns:
        Same columns as `build_snapshots` without ``label``.
    """
    _, end = _window(clean_dir)
    snapshot = end if t is None else pd.Timestamp(t)
    if snapshot > end:
        raise DataError(f"snapshot {snapshot.date()} is after the end of the data ({end.date()})")
    frames = list(_iter_buckets(Path(clean_dir), [snapshot], None, progress))
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["snapshot_date", "customer_id"], kind="stable").reset_index(drop=True)


def write_snapshots(
    clean_dir: Path, out_path: Path, cfg: FeatureConfig | None = None, *, progress: bool = False
) -> int:
    """Stream labelled snapshots bucket by bucket into one Parquet file (bounded memory).

    Returns:
        Number of rows written.
    """
    import pyarrow as pa

    cfg = cfg or FeatureConfig()
    start, end = _window(clean_dir)
    dates = snapshot_dates(start, end, cfg)
    if not dates:
        raise EmptyDataError(f"no labelled snapshot fits the data window {start.date()} to {end.date()}")
    rows = 0
    with atomic_path(out_path) as tmp:
        writer = None
        try:
            for frame in _iter_buckets(Path(clean_dir), dates, cfg.label_days, progress):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += len(frame)
        finally:
            if writer is not None:
                writer.close()
    return rows


__all__ = [
    "CATEGORICAL_FEATURES",
    "ID_COLUMNS",
    "LABEL",
    "FeatureConfig",
    "build_scoring_snapshot",
    "build_snapshots",
    "categorical_columns",
    "compute_features",
    "feature_columns",
    "format_ids",
    "snapshot_dates",
    "write_snapshots",
]
