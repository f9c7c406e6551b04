"""Label-delayed performance monitoring: AP and CP@100 per window, once the window's labels are in.

A fraud label arrives when the investigation ends, days after the transaction (the level's
convention: ``delay_days`` after it, or a late label's ``LABEL_AVAILABLE_FROM``). A window's
precision measured while its labels are still arriving would count every not-yet-confirmed
fraud as genuine, so a window is scored only once **every** label of it has arrived by
``as_of``; until then it is reported as ``pending`` (no label yet) or ``partial``, without
metrics. The metrics are the level's own (`level4_fraud.evaluate`): average precision and the
Handbook's card precision at k (per day, cards caught on earlier days of the same call left out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from level4_fraud import evaluate, schema

LABEL_AVAILABLE_FROM = "LABEL_AVAILABLE_FROM"
LABELLED, PARTIAL, PENDING = "labelled", "partial", "pending"


class PerformanceConfig(BaseModel):
    """Label-delayed performance monitoring (the ``monitoring.performance`` section)."""

    model_config = ConfigDict(extra="forbid")

    window: str = Field("1D", description="Window length (pandas offset alias)")
    delay_days: float | None = Field(
        None, ge=0, description="Label delay in days (default: the model's feature label delay)"
    )
    top_k: int = Field(100, ge=1, description="Cards investigated a day (CP@k)")
    remove_detected_cards: bool = Field(True, description="CP@k: drop cards caught on earlier days")


def label_arrival(frame: pd.DataFrame, delay_days: float) -> pd.Series:
    """When each row's label arrives: its ``LABEL_AVAILABLE_FROM`` when the frame has one (a late
    label), else its ``TX_DATETIME`` plus `delay_days`."""
    arrival = frame[schema.TX_DATETIME] + pd.Timedelta(days=delay_days)
    if LABEL_AVAILABLE_FROM in frame.columns:
        late = pd.to_datetime(frame[LABEL_AVAILABLE_FROM])
        arrival = late.where(late.notna(), arrival)
    return arrival


def labels_arrived(frame: pd.DataFrame, as_of: pd.Timestamp | str, delay_days: float) -> np.ndarray:
    """One flag per row: its label exists and has arrived by `as_of`."""
    has_label = frame[schema.TX_FRAUD].notna().to_numpy()
    if schema.LABELLED in frame.columns:
        has_label &= frame[schema.LABELLED].to_numpy(dtype=bool)
    return has_label & (label_arrival(frame, delay_days) <= pd.Timestamp(as_of)).to_numpy()


def window_metrics(frame: pd.DataFrame, score: np.ndarray, cfg: PerformanceConfig) -> dict[str, float]:
    """AP and CP@k of labelled rows (NaN when the rows hold no fraud)."""
    y = frame[schema.TX_FRAUD].to_numpy(dtype=np.float64)
    cp, _ = evaluate.card_precision_at_k(frame, score, cfg.top_k, remove_detected=cfg.remove_detected_cards)
    return {
        "average_precision": evaluate.average_precision(y, score),
        "card_precision_at_k": cp if y.sum() > 0 else math.nan,
    }


def performance_by_window(
    frame: pd.DataFrame,
    score: np.ndarray | Sequence[float],
    as_of: pd.Timestamp | str,
    cfg: PerformanceConfig | None = None,
    *,
    delay_days: float = 7.0,
) -> pd.DataFrame:
    """AP and CP@k of every window whose labels have all arrived by `as_of`.

    Args:
        frame: Scored transactions: ``TX_DATETIME, CUSTOMER_ID, TX_FRAUD`` (NaN: no label),
            optionally ``LABELLED`` and ``LABEL_AVAILABLE_FROM``. Rows at or after `as_of` are
            ignored (they have not happened yet).
        score: One score per row of `frame`.
        as_of: Now: what is known at this moment.
        cfg: Windows and metric settings; its ``delay_days`` wins over the argument when set.
        delay_days: Label delay when ``cfg.delay_days`` is None.

    Returns:
        One row per window (index ``window``): ``status`` (labelled / partial / pending),
        ``n``, ``n_labelled`` (labels arrived), ``frauds`` (among them), and
        ``average_precision, card_precision_at_k`` (NaN unless labelled).
    """
    cfg = cfg or PerformanceConfig()
    delay = cfg.delay_days if cfg.delay_days is not None else delay_days
    s = np.asarray(score, dtype=np.float64)
    if len(s) != len(frame):
        raise ValueError(f"frame and scores differ in length ({len(frame)} vs {len(s)})")
    now = pd.Timestamp(as_of)
    past = (frame[schema.TX_DATETIME] < now).to_numpy()
    frame, s = frame.loc[past], s[past]
    arrived = labels_arrived(frame, now, delay)
    rows = []
    for start, idx in frame.groupby(
        frame[schema.TX_DATETIME].dt.floor(cfg.window), sort=True
    ).indices.items():
        got = arrived[idx]
        status = LABELLED if got.all() else (PENDING if not got.any() else PARTIAL)
        y = frame[schema.TX_FRAUD].to_numpy(dtype=np.float64)[idx][got]
        row: dict[str, object] = {
            "window": pd.Timestamp(start),
            "status": status,
            "n": len(idx),
            "n_labelled": int(got.sum()),
            "frauds": int(np.nansum(y)),
            "average_precision": math.nan,
            "card_precision_at_k": math.nan,
        }
        if status == LABELLED:
            row.update(window_metrics(frame.iloc[idx], s[idx], cfg))
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.set_index("window") if len(out) else out


def latest_labelled_windows(table: pd.DataFrame, n: int = 1) -> list[pd.Timestamp]:
    """The last `n` windows of a `performance_by_window` table whose labels have all arrived."""
    if len(table) == 0:
        return []
    done = table.index[table["status"] == LABELLED]
    return [pd.Timestamp(w) for w in done[-n:]]
