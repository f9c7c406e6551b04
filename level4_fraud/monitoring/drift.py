"""Feature and score drift against the training reference: PSI and Kolmogorov–Smirnov per window.

A deployed model learnt one distribution of its inputs; when production traffic moves away from
it, the model's scores stop meaning what validation said they mean, before any label can tell.
Each window of traffic (a simulated day by default) is compared with the **reference** (the rows
the model was trained on) column by column:

* **PSI** (population stability index): the reference's quantiles cut both samples into bins
  (at most `DriftConfig.bins`; ties in the reference merge bins, so a 0/1 flag gets two), and
  ``PSI = sum((c - r) * ln(c / r))`` over the bins' shares ``r`` (reference) and ``c`` (current),
  an empty bin counting as a share of `EPSILON`. A categorical column's bins are its categories
  (those unseen in the reference pooled into one). Usual reading: < 0.1 stable, 0.1-0.25
  moderate, > 0.25 major.
* **KS**: the two-sample Kolmogorov–Smirnov statistic (the largest gap between the two empirical
  CDFs) and its p-value, from `scipy.stats.ks_2samp`; numeric columns only.

A column drifts in a window when its PSI reaches ``psi_threshold`` or its KS statistic reaches
``ks_threshold`` with a p-value under ``ks_alpha`` (with thousands of rows a day, a tiny gap is
"significant"; the statistic's size is what matters). A window raises the alarm when at least
``min_drifted`` columns drift; the model's score counts as one column.

Measured on the simulator's drift event (``tests/test_retrain.py``: 600 cards, about 1,300
transactions a day) with the default thresholds: on the 7 days before the drift the largest PSI
was 0.044 and the largest KS 0.057 (no alarm); on the drift day the merchant category's PSI was
0.28 (the new pattern's crypto exchanges), so the alarm came that day. The spending shift alone
(amounts x 1.1, 15 % more transactions, 10 points more online) moves each feature by less than
0.07 PSI on its first day; the card's 7-day transaction count reaches 0.15-0.2 only once its
window has filled with the new habits, five to seven days later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

EPSILON = 1e-4  # share given to an empty bin, so ln(c / r) stays finite
SCORE = "score"  # the name the model's score takes in drift tables
# A day is all weekend or all weekday: against a week of reference the flag "drifts" every day.
CALENDAR_FEATURES: tuple[str, ...] = ("TX_DURING_WEEKEND",)
TABLE_COLUMNS: tuple[str, ...] = ("feature", "psi", "ks", "p", "drifted", "n_reference", "n_current")


class DriftConfig(BaseModel):
    """Drift thresholds and windows (the ``monitoring.drift`` section of the level's config)."""

    model_config = ConfigDict(extra="forbid")

    psi_threshold: float = Field(0.2, gt=0, description="A column drifts at this PSI or above")
    ks_threshold: float = Field(0.1, gt=0, le=1, description="... or at this KS statistic or above")
    ks_alpha: float = Field(0.01, gt=0, le=1, description="... when its KS p-value is below this")
    bins: int = Field(10, ge=2, description="Quantile bins of the reference for PSI")
    window: str = Field("1D", description="Window length (pandas offset alias: 1D, 12h, 7D)")
    features: list[str] | None = Field(None, description="Columns to watch (default: the model's inputs)")
    exclude: list[str] = Field(
        default_factory=lambda: list(CALENDAR_FEATURES), description="Columns never watched"
    )
    min_rows: int = Field(200, ge=1, description="Windows with fewer rows are not judged")
    min_drifted: int = Field(1, ge=1, description="Drifted columns (score included) that raise the alarm")
    reference_days: int = Field(7, ge=1, description="Reference: the last N days of the training period")
    score_reference_days: int = Field(
        7, ge=1, description="Score reference: the model's first N days after its training period"
    )


# ---------------------------------------------------------------------------------- statistics
def _finite(values: np.ndarray | pd.Series | Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _psi_from_shares(ref: np.ndarray, cur: np.ndarray) -> float:
    r = np.maximum(ref, EPSILON)
    c = np.maximum(cur, EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def quantile_edges(reference: np.ndarray | pd.Series | Sequence[float], bins: int = 10) -> np.ndarray:
    """Inner bin edges: the reference's ``1/bins .. (bins-1)/bins`` quantiles, ties merged.

    Bins are right-closed, ``(-inf, e1], (e1, e2], ..., (ek, inf)``.
    """
    ref = _finite(reference)
    if len(ref) == 0:
        return np.zeros(0)
    # inverted_cdf: edges are observed values, so a flag or a count is cut at its own values
    return np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf"))


def bin_shares(values: np.ndarray | pd.Series | Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Share of the finite `values` in each bin of `quantile_edges` (zeros when there are none)."""
    arr = _finite(values)
    counts = np.bincount(np.searchsorted(edges, arr, side="left"), minlength=len(edges) + 1)
    return counts / len(arr) if len(arr) else counts.astype(np.float64)


def psi(
    reference: np.ndarray | pd.Series | Sequence[float],
    current: np.ndarray | pd.Series | Sequence[float],
    bins: int = 10,
) -> float:
    """Population stability index of `current` against `reference` (quantile bins of the reference).

    Args:
        reference: The reference sample (NaN and infinities ignored).
        current: The sample to compare.
        bins: Quantile bins of the reference (fewer when the reference has ties).

    Returns:
        The PSI (0 for identical samples); NaN when either sample has no finite value.
    """
    return ReferenceSample(reference, bins).psi(current)


def psi_categorical(reference: pd.Series | Sequence[object], current: pd.Series | Sequence[object]) -> float:
    """PSI over categories; categories absent from the reference are pooled into one bin."""
    ref = pd.Series(reference).astype("object").dropna()
    cur = pd.Series(current).astype("object").dropna()
    if len(ref) == 0 or len(cur) == 0:
        return math.nan
    known = list(pd.unique(ref))
    r = ref.value_counts(normalize=True).reindex(known, fill_value=0.0).to_numpy()
    c_counts = cur.value_counts(normalize=True)
    c = c_counts.reindex(known, fill_value=0.0).to_numpy()
    unseen = float(c_counts[~c_counts.index.isin(known)].sum())
    return _psi_from_shares(np.append(r, 0.0), np.append(c, unseen))


def ks(
    reference: np.ndarray | pd.Series | Sequence[float], current: np.ndarray | pd.Series | Sequence[float]
) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and p-value (`scipy.stats.ks_2samp`, two-sided).

    NaN and infinities are ignored; ``(nan, nan)`` when either sample is empty.
    """
    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return math.nan, math.nan
    res = stats.ks_2samp(ref, cur)
    return float(res.statistic), float(res.pvalue)


class ReferenceSample:
    """A fixed reference sample, prepared once for many comparisons: its finite values sorted,
    its quantile bin edges and shares. `psi` and `ks_statistic` equal the module's `psi` and
    ``ks(...)[0]`` without sorting the reference again on every call (the live drift gauges
    compare a few thousand recent rows with tens of thousands of reference rows).

    Args:
        reference: The reference sample (NaN and infinities ignored).
        bins: Quantile bins for PSI.
    """

    def __init__(self, reference: np.ndarray | pd.Series | Sequence[float], bins: int = 10) -> None:
        self.sorted = np.sort(_finite(reference))
        self.edges = quantile_edges(self.sorted, bins)
        self.shares = bin_shares(self.sorted, self.edges)

    def psi(self, current: np.ndarray | pd.Series | Sequence[float]) -> float:
        """`psi` of `current` against the reference."""
        cur = _finite(current)
        if len(self.sorted) == 0 or len(cur) == 0:
            return math.nan
        return _psi_from_shares(self.shares, bin_shares(cur, self.edges))

    def ks_statistic(self, current: np.ndarray | pd.Series | Sequence[float]) -> float:
        """The two-sample Kolmogorov–Smirnov statistic of `current` against the reference (as
        ``scipy.stats.ks_2samp`` computes it: the largest gap between the two empirical CDFs)."""
        cur = np.sort(_finite(current))
        if len(self.sorted) == 0 or len(cur) == 0:
            return math.nan
        both = np.concatenate([self.sorted, cur])
        gap = np.searchsorted(self.sorted, both, side="right") / len(self.sorted)
        gap -= np.searchsorted(cur, both, side="right") / len(cur)
        return float(max(np.clip(-np.min(gap), 0.0, 1.0), np.max(gap)))


# ---------------------------------------------------------------------------------- tables
def _is_categorical(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object or series.dtype == "string"


def watched_columns(
    frame: pd.DataFrame, cfg: DriftConfig, candidates: Sequence[str] | None = None
) -> list[str]:
    """The columns `drift_table` compares: ``cfg.features`` (or `candidates`, or every column of
    `frame`) that `frame` holds, less ``cfg.exclude``."""
    cols = cfg.features if cfg.features is not None else list(candidates or frame.columns)
    return [c for c in cols if c in frame.columns and c not in cfg.exclude]


def column_drift(reference: pd.Series, current: pd.Series, cfg: DriftConfig) -> dict[str, object]:
    """PSI, KS and the verdict for one column (categorical columns: PSI only)."""
    if _is_categorical(reference) or _is_categorical(current):
        value, stat, p = psi_categorical(reference, current), math.nan, math.nan
    else:
        value = psi(reference.to_numpy(dtype=np.float64), current.to_numpy(dtype=np.float64), cfg.bins)
        stat, p = ks(reference.to_numpy(dtype=np.float64), current.to_numpy(dtype=np.float64))
    drifted = bool(
        (math.isfinite(value) and value >= cfg.psi_threshold)
        or (math.isfinite(stat) and stat >= cfg.ks_threshold and p < cfg.ks_alpha)
    )
    return {
        "psi": value,
        "ks": stat,
        "p": p,
        "drifted": drifted,
        "n_reference": int(reference.notna().sum()),
        "n_current": int(current.notna().sum()),
    }


def drift_table(
    reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig | None = None
) -> pd.DataFrame:
    """PSI and KS of every watched column of `current` against `reference`.

    Args:
        reference: Reference rows (the training rows' features; a ``score`` column is compared too).
        current: One window of rows with the same columns.
        cfg: Thresholds and the columns to watch (`watched_columns` of `reference`).

    Returns:
        One row per column: ``feature, psi, ks, p, drifted, n_reference, n_current``.
    """
    cfg = cfg or DriftConfig()
    rows = []
    for col in watched_columns(reference, cfg):
        if col not in current.columns:
            continue
        rows.append({"feature": col, **column_drift(reference[col], current[col], cfg)})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def drift_by_window(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: DriftConfig | None = None,
    *,
    time_column: str = "TX_DATETIME",
) -> pd.DataFrame:
    """`drift_table` for every window of `current` (windows of ``cfg.window`` on `time_column`).

    Windows with fewer than ``cfg.min_rows`` rows are left out (too few to judge).

    Returns:
        The tables stacked, with a first column ``window`` (the window's start).
    """
    cfg = cfg or DriftConfig()
    ref = reference.drop(columns=[time_column], errors="ignore")
    parts = []
    for start, rows in current.groupby(current[time_column].dt.floor(cfg.window), sort=True):
        if len(rows) < cfg.min_rows:
            continue
        table = drift_table(ref, rows, cfg)
        table.insert(0, "window", pd.Timestamp(start))
        parts.append(table)
    if not parts:
        return pd.DataFrame(columns=["window", *TABLE_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def window_summary(table: pd.DataFrame, cfg: DriftConfig | None = None) -> pd.DataFrame:
    """One row per window of a `drift_by_window` table: how many columns drifted, which, the
    largest PSI and KS, the score's PSI, and ``alarm`` (at least ``cfg.min_drifted`` drifted).

    Returns:
        Indexed by ``window``: ``n_drifted, drifted, max_psi, max_psi_feature, max_ks,
        max_ks_feature, score_psi, alarm``.
    """
    cfg = cfg or DriftConfig()
    rows = []
    for window, t in table.groupby("window", sort=True):
        drifted = t.loc[t["drifted"].astype(bool), "feature"].tolist()
        psi_v = t["psi"].astype(float)
        ks_v = t["ks"].astype(float)
        score = t.loc[t["feature"] == SCORE, "psi"]
        rows.append(
            {
                "window": window,
                "n_drifted": len(drifted),
                "drifted": ",".join(drifted),
                "max_psi": float(psi_v.max()) if psi_v.notna().any() else math.nan,
                "max_psi_feature": t.loc[psi_v.idxmax(), "feature"] if psi_v.notna().any() else "",
                "max_ks": float(ks_v.max()) if ks_v.notna().any() else math.nan,
                "max_ks_feature": t.loc[ks_v.idxmax(), "feature"] if ks_v.notna().any() else "",
                "score_psi": float(score.iloc[0]) if len(score) else math.nan,
                "alarm": len(drifted) >= cfg.min_drifted,
            }
        )
    out = pd.DataFrame(rows)
    return out.set_index("window") if len(out) else out


def first_alarm(summary: pd.DataFrame) -> pd.Timestamp | None:
    """The first window of a `window_summary` that raised the alarm (None when none did)."""
    if len(summary) == 0 or not summary["alarm"].any():
        return None
    return pd.Timestamp(summary.index[summary["alarm"].to_numpy(dtype=bool)][0])
