"""Vectorised normalisers for messy raw values: customer ids, category spellings, dates and times.

Each function returns the cleaned values plus masks saying which inputs were changed (``fixed``)
or could not be read (``bad``), so ingest can count every fix and quarantine every unreadable row.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Canonical values per category domain, and the known non-canonical spellings (after `category_key`).
DOMAINS: dict[str, tuple[str, ...]] = {
    "plan": ("basic", "standard", "premium"),
    "region": ("north", "south", "east", "west", "central"),
    "age_band": ("18-24", "25-34", "35-44", "45-54", "55-64", "65+"),
    "channel": ("organic", "paid_search", "social", "referral", "partner"),
    "contract": ("monthly", "annual", "two_year"),
    "device": ("mobile", "desktop", "tablet", "tv"),
    "txn_type": ("invoice", "payment", "payment_failed", "refund"),
    "ticket_category": ("billing", "technical", "account", "cancellation", "other"),
    "ticket_channel": ("email", "phone", "chat"),
}
SYNONYMS: dict[str, dict[str, str]] = {
    "plan": {"bsc": "basic", "std": "standard", "prem": "premium"},
    "region": {"n": "north", "s": "south", "e": "east", "w": "west", "centre": "central"},
    "age_band": {},
    "channel": {
        "ppc": "paid_search",
        "social_media": "social",
        "refer_a_friend": "referral",
        "partners": "partner",
    },
    "contract": {
        "month_to_month": "monthly",
        "one_year": "annual",
        "yearly": "annual",
        "1_year": "annual",
        "2_year": "two_year",
        "two_years": "two_year",
    },
    "device": {"phone": "mobile", "pc": "desktop", "ipad": "tablet", "smart_tv": "tv"},
    "txn_type": {"failed_payment": "payment_failed"},
    "ticket_category": {
        "bill": "billing",
        "tech": "technical",
        "tech_support": "technical",
        "cancel": "cancellation",
        "misc": "other",
    },
    "ticket_channel": {"e_mail": "email", "call": "phone", "live_chat": "chat"},
}

CANONICAL_ID = re.compile(r"^C\d{7}$")
_ID_PATTERN = r"^(c|c-|c_|cust|cust-|cust_)?\d{1,9}$"
ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d %b %Y", "%Y%m%d", "%b %d, %Y")


def format_ids(num: np.ndarray) -> np.ndarray:
    """Customer numbers -> canonical ids ``C0000123``."""
    return np.char.add("C", np.char.zfill(np.asarray(num).astype(np.int64).astype(str), 7))


def _as_string_array(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    s = pd.Series(values)
    if s.dtype != object and not pd.api.types.is_string_dtype(s):
        s = s.astype("Int64").astype(str).where(s.notna(), None)
    else:
        s = s.where(s.notna(), None).map(lambda v: v if v is None or isinstance(v, str) else str(v))
    return pa.array(s.to_numpy(dtype=object), type=pa.string(), from_pandas=True)


def normalise_ids(
    values: pd.Series | pa.Array | pa.ChunkedArray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse drifting customer-id formats (``C0000123``, ``c-123``, ``123``, ``cust_0000123``).

    Args:
        values: Raw ids (text or integers).

    Returns:
        ``(num, fixed, bad)``: customer numbers (``-1`` where unreadable), a mask of ids that were
        readable but not canonical, and a mask of unreadable ids (blank, ``N/A``, ...).
    """
    arr = _as_string_array(values)
    canonical = pc.fill_null(pc.match_substring_regex(arr, r"^C\d{7}$"), False)
    key = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    ok = pc.fill_null(pc.match_substring_regex(key, _ID_PATTERN), False)
    digits = pc.replace_substring_regex(key, r"^\D*", "")
    digits = pc.if_else(ok, digits, pa.scalar("-1"))
    num = pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)
    ok_np = ok.to_numpy(zero_copy_only=False)
    bad = ~ok_np | (num <= 0)
    num = np.where(bad, -1, num)
    fixed = ok_np & ~bad & ~canonical.to_numpy(zero_copy_only=False)
    return num, fixed, bad


def category_key(text: str) -> str:
    """Lower-case, trim, and collapse every run of non-alphanumerics to ``_``."""
    return re.sub(r"[^a-z0-9+]+", "_", text.strip().lower()).strip("_")


def normalise_category(
    values: pd.Series, domain: str
) -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Map raw spellings of one category domain onto its canonical values.

    Args:
        values: Raw text (missing allowed).
        domain: A key of `DOMAINS` (``plan``, ``contract``, ``device``, ...).

    Returns:
        ``(clean, fixed, missing, unknown)``: canonical values (missing/unknown as ``None``), and masks of
        values that were respelt, missing, and present but not recognisable.
    """
    canon = DOMAINS[domain]
    syn = SYNONYMS[domain]
    keyed = {category_key(c): c for c in canon}
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=True)
    mapped = []
    for u in uniques:
        if not isinstance(u, str):
            u = str(u)
        k = category_key(u)
        mapped.append(u if u in canon else keyed.get(k) or syn.get(k) or syn.get(k.replace("_", "")))
    mapped_arr = np.array([*mapped, None], dtype=object)
    clean = mapped_arr[codes]  # code -1 (missing) picks the trailing None
    missing = codes < 0
    is_canon = np.array([isinstance(u, str) and u in canon for u in uniques] + [False])[codes]
    unknown = ~missing & pd.isna(clean)
    fixed = ~missing & ~unknown & ~is_canon
    return pd.Series(clean, index=getattr(values, "index", None)), fixed, missing, unknown


def parse_dates(values: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse dates written in any of `DATE_FORMATS` (ISO first).

    Returns:
        ``(dates, fixed, bad)``: datetime64[ns] (NaT for missing), a mask of non-ISO dates that were
        read, and a mask of present but unreadable values.
    """
    s = pd.Series(values, copy=False).astype(object)
    present = s.notna().to_numpy() & (s.astype(str).str.strip() != "").to_numpy()
    out = pd.to_datetime(s.where(present), format=DATE_FORMATS[0], errors="coerce")
    iso = out.notna().to_numpy()
    for fmt in DATE_FORMATS[1:]:
        todo = present & out.isna().to_numpy()
        if not todo.any():
            break
        out[todo] = pd.to_datetime(s[todo], format=fmt, errors="coerce")
    parsed = out.notna().to_numpy()
    return out.astype("datetime64[ns]"), parsed & ~iso, present & ~parsed


def parse_timestamps(values: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse timestamps in mixed formats and zones to naive UTC.

    Accepts ISO 8601 with ``Z`` or any UTC offset (``T`` or space separator) and epoch milliseconds.

    Returns:
        ``(ts, fixed, bad)``: datetime64[ns] in UTC (NaT for missing), a mask of values that were not
        canonical ``YYYY-MM-DDTHH:MM:SSZ``, and a mask of present but unreadable values.
    """
    s = pd.Series(values, copy=False)
    n = len(s)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    present = s.notna().to_numpy()
    if s.dtype == object:
        is_num = (
            np.fromiter((isinstance(v, int | float) and not isinstance(v, bool) for v in s), bool, n)
            & present
        )
    elif pd.api.types.is_numeric_dtype(s):
        is_num = present.copy()
    else:
        is_num = np.zeros(n, bool)
    if is_num.any():
        ms = pd.to_numeric(s[is_num], errors="coerce")
        out[is_num] = pd.to_datetime(ms, unit="ms", errors="coerce").to_numpy("datetime64[ns]")
    txt_mask = present & ~is_num
    canonical = np.zeros(n, bool)
    if txt_mask.any():
        txt = pa.array(s[txt_mask].astype(str).to_numpy(dtype=object), type=pa.string())
        fast = pc.strptime(txt, format="%Y-%m-%dT%H:%M:%SZ", unit="s", error_is_null=True)
        fast_ok = pc.is_valid(fast).to_numpy(zero_copy_only=False)
        canon_txt = fast_ok & pc.fill_null(pc.match_substring_regex(txt, ISO_UTC), False).to_numpy(
            zero_copy_only=False
        )
        vals = fast.to_numpy(zero_copy_only=False).astype("datetime64[ns]")
        slow = ~fast_ok
        if slow.any():
            rest = pd.Series(txt.filter(pa.array(slow)).to_pylist())
            parsed = pd.to_datetime(rest, utc=True, format="ISO8601", errors="coerce")
            vals[slow] = parsed.dt.tz_localize(None).to_numpy("datetime64[ns]")
        idx = np.flatnonzero(txt_mask)
        out[idx] = vals
        canonical[idx] = canon_txt
    ts = pd.Series(out, index=s.index)
    parsed = ~np.isnat(out)
    return ts, present & parsed & ~canonical, present & ~parsed
