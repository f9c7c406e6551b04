"""Compliance: the model card, the fairness check and the audit log's retention rule.

* **Model card** (`build_model_card`, `card_markdown`, `card_section`): what the model is, the
  data it learnt from, what it is for and not for, its test metrics (every model of the run) and
  its metrics by segment, its fairness check and its limitations — built from a run folder's
  ``run.json``, ``metrics.json`` and ``scores/fold<k>.parquet``, so every number in it is the run's.
* **Fairness check** (`segment_rates`, `fpr_gap`, `fairness_check`): the false-positive rate
  (genuine transactions alerted at the model's validation threshold) per customer segment — age
  band and region — and the largest gap between segments large enough to compare. A false
  positive is a genuine customer's payment held up for review or declined: a model whose false
  positives fall on one age group or one region treats those customers worse for no reason.
* **Retention** (`ComplianceConfig.retention_days`, `retention_cutoff`): audit records older than
  this are purged by ``python -m level4_fraud audit purge``.

Segments come from the simulator's customer table: ``age`` (drawn by the simulator on its own
random stream; nothing else depends on it) and ``home_country``. A table without them (the
Handbook's, or no table at all) gets its region from the home's cell of the 3 x 3 grid the
simulator assigns countries by, and — where nothing is known — age bands and regions derived from
a keyed hash of the customer id. Those are synthetic and the card says so: they exercise the
check, they cannot find a real disparity.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from level4_fraud import schema
from shared.errors import DataError

AGE_BAND = "age_band"
REGION = "region"
SEGMENTS = (AGE_BAND, REGION)
ALERT = "alert"
SYNTHETIC = "keyed hash of the customer id (synthetic)"


class ComplianceConfig(BaseModel):
    """The ``compliance`` section of the level's config."""

    model_config = ConfigDict(extra="forbid")

    retention_days: int = Field(
        1825,
        ge=1,
        description="Audit records are kept this many days, then purged (5 years: the record-keeping "
        "period of the EU anti-money-laundering directive)",
    )
    model: str = Field("ensemble", description="The model the card describes (a score_<model> column)")
    fold: int = Field(
        0, ge=0, description="Fold whose test week gives the segment metrics (at the deployed threshold)"
    )
    age_bands: list[int] = Field(
        default_factory=lambda: [18, 25, 35, 50, 65], description="Lower bounds of the age bands, ascending"
    )
    min_genuine: int = Field(
        500, ge=1, description="Segments with fewer genuine transactions are shown but not compared"
    )
    max_fpr_gap: float = Field(
        0.005,
        ge=0,
        le=1,
        description="The check fails when two comparable segments' false-positive rates differ by more",
    )
    segment_key: str = Field(
        "level4-compliance-segments", description="Key of the synthetic segments (when none are known)"
    )
    grid_size: float = Field(100.0, gt=0, description="The simulator's grid (regions are its 3 x 3 cells)")

    @field_validator("age_bands")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if not value or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("age_bands must be a non-empty ascending list of lower bounds")
        return value


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """The instant before which audit records are past retention (UTC)."""
    if retention_days < 1:
        raise ValueError("retention_days must be >= 1")
    return (now or datetime.now(UTC)).astimezone(UTC) - timedelta(days=retention_days)


# ---------------------------------------------------------------------------------- segments
def age_bands(ages: Sequence[float] | np.ndarray | pd.Series, bounds: Sequence[int]) -> pd.Categorical:
    """Age bands ``"18-24", "25-34", ..., "65+"`` from lower bounds; ages below the first: NaN."""
    labels = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bounds)] + [f"{bounds[-1]}+"]
    edges = [*bounds, math.inf]
    return pd.cut(np.asarray(ages, dtype=float), edges, right=False, labels=labels)


def _hash_unit(key: str, values: Sequence[int], salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per id, from HMAC-SHA256 of the id (deterministic, keyed)."""
    k = key.encode("utf-8")
    return np.array(
        [
            int.from_bytes(hmac.new(k, f"{salt}:{v}".encode(), hashlib.sha256).digest()[:8], "big") / 2.0**64
            for v in values
        ]
    )


def region_of_home(x: np.ndarray, y: np.ndarray, grid_size: float) -> np.ndarray:
    """The 3 x 3 grid cell of a home (the simulator gives each cell its own country)."""
    ix = np.clip((np.asarray(x, float) / grid_size * 3).astype(np.int64), 0, 2)
    iy = np.clip((np.asarray(y, float) / grid_size * 3).astype(np.int64), 0, 2)
    return np.array([f"cell {a}{b}" for a, b in zip(ix, iy, strict=True)], dtype=object)


def customer_segments(
    customers: pd.DataFrame | None, customer_ids: Sequence[int], cfg: ComplianceConfig
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Age band and region of each customer, and where each came from.

    Args:
        customers: The customer table (``CUSTOMER_ID`` and, when known, ``age``, ``home_country``
            or the home coordinates), or None.
        customer_ids: Every customer to segment (those of the scored transactions).
        cfg: Band bounds, the synthetic segments' key, the grid size.

    Returns:
        ``(CUSTOMER_ID, age_band, region)`` per id, and ``{segment: source}``.
    """
    ids = np.unique(np.asarray(customer_ids, dtype=np.int64))
    table = (
        customers.drop_duplicates(schema.CUSTOMER_ID).set_index(schema.CUSTOMER_ID).reindex(ids)
        if customers is not None and schema.CUSTOMER_ID in customers.columns
        else pd.DataFrame(index=pd.Index(ids, name=schema.CUSTOMER_ID))
    )
    sources: dict[str, str] = {}
    if "age" in table.columns and table["age"].notna().all():
        ages = table["age"].to_numpy(dtype=float)
        sources[AGE_BAND] = "customer table (age)"
    else:
        ages = cfg.age_bands[0] + np.floor(_hash_unit(cfg.segment_key, ids.tolist(), "age") * 73)
        sources[AGE_BAND] = SYNTHETIC
    if "home_country" in table.columns and table["home_country"].notna().all():
        region = table["home_country"].astype(str).to_numpy(dtype=object)
        sources[REGION] = "customer table (home country)"
    elif {schema.X_CUSTOMER, schema.Y_CUSTOMER} <= set(table.columns) and table[
        schema.X_CUSTOMER
    ].notna().all():
        region = region_of_home(table[schema.X_CUSTOMER], table[schema.Y_CUSTOMER], cfg.grid_size)
        sources[REGION] = "customer table (home location, 3 x 3 grid cell)"
    else:
        u = _hash_unit(cfg.segment_key, ids.tolist(), "region")
        region = np.array([f"cell {int(v * 9) // 3}{int(v * 9) % 3}" for v in u], dtype=object)
        sources[REGION] = SYNTHETIC
    out = pd.DataFrame({schema.CUSTOMER_ID: ids, AGE_BAND: age_bands(ages, cfg.age_bands), REGION: region})
    return out, sources


# ---------------------------------------------------------------------------------- fairness
def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (NaN without trials)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def segment_rates(
    frame: pd.DataFrame, segment: str, *, label: str = schema.TX_FRAUD, alert: str = ALERT
) -> pd.DataFrame:
    """False-positive rate and recall per value of `segment`.

    Args:
        frame: One row per transaction with the segment, the label (1 = fraud) and the alert.
        segment: The segment column.
        label: The label column.
        alert: The alert column (True = held for review or declined).

    Returns:
        Per segment: ``transactions, genuine, false_positives, fpr, fpr_low, fpr_high`` (95 %
        Wilson interval), ``frauds, caught, recall``.
    """
    y = frame[label].to_numpy(dtype=bool)
    a = frame[alert].to_numpy(dtype=bool)
    seg = frame[segment].astype(str).to_numpy()
    rows = []
    for value in sorted(set(seg.tolist())):
        m = seg == value
        genuine, fp = int((m & ~y).sum()), int((m & ~y & a).sum())
        frauds, caught = int((m & y).sum()), int((m & y & a).sum())
        low, high = wilson_interval(fp, genuine)
        rows.append(
            {
                "segment": value,
                "transactions": int(m.sum()),
                "genuine": genuine,
                "false_positives": fp,
                "fpr": fp / genuine if genuine else math.nan,
                "fpr_low": low,
                "fpr_high": high,
                "frauds": frauds,
                "caught": caught,
                "recall": caught / frauds if frauds else math.nan,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class FprGap:
    """The largest false-positive-rate gap between comparable segments.

    Attributes:
        gap: Highest minus lowest FPR (NaN with fewer than two comparable segments).
        ratio: Highest over lowest FPR (inf when the lowest is 0).
        highest: Segment with the highest FPR.
        lowest: Segment with the lowest FPR.
        p_value: Two-sided two-proportion z-test of the two (is the gap more than noise?),
            Bonferroni-adjusted for the pairs of segments compared.
        compared: Segments compared (enough genuine transactions).
    """

    gap: float
    ratio: float
    highest: str | None
    lowest: str | None
    p_value: float
    compared: tuple[str, ...]


def fpr_gap(rates: pd.DataFrame, min_genuine: int = 1) -> FprGap:
    """The max FPR gap among the segments of `segment_rates` with >= `min_genuine` genuine rows."""
    ok = rates[rates["genuine"] >= min_genuine].dropna(subset=["fpr"])
    compared = tuple(ok["segment"].astype(str))
    if len(ok) < 2:
        return FprGap(math.nan, math.nan, None, None, math.nan, compared)
    hi, lo = ok.loc[ok["fpr"].idxmax()], ok.loc[ok["fpr"].idxmin()]
    gap = float(hi["fpr"] - lo["fpr"])
    ratio = float(hi["fpr"] / lo["fpr"]) if lo["fpr"] > 0 else (math.inf if gap > 0 else 1.0)
    n1, n2 = int(hi["genuine"]), int(lo["genuine"])
    pooled = (int(hi["false_positives"]) + int(lo["false_positives"])) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = math.erfc(abs(gap) / se / math.sqrt(2)) if se > 0 else (1.0 if gap == 0 else 0.0)
    # The largest of k(k-1)/2 gaps is picked after looking: Bonferroni over the pairs.
    p_value = min(1.0, p_value * len(ok) * (len(ok) - 1) / 2)
    return FprGap(gap, ratio, str(hi["segment"]), str(lo["segment"]), p_value, compared)


@dataclass
class FairnessResult:
    """The fairness check: per-segment rates, the gap per segment type, the verdict."""

    table: pd.DataFrame
    gaps: dict[str, FprGap]
    max_fpr_gap: float
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No comparable gap exceeds the allowed one."""
        return all(not (g.gap > self.max_fpr_gap) for g in self.gaps.values())

    def gap_table(self) -> pd.DataFrame:
        """One row per segment type: the gap, ratio, extremes, p-value and verdict."""
        rows = [
            {
                "segment_type": name,
                "max_fpr_gap": g.gap,
                "ratio": g.ratio,
                "highest": g.highest,
                "lowest": g.lowest,
                "p_value": g.p_value,
                "segments_compared": len(g.compared),
                "within_limit": not (g.gap > self.max_fpr_gap),
                "source": self.sources.get(name, ""),
            }
            for name, g in self.gaps.items()
        ]
        return pd.DataFrame(rows)


def fairness_check(
    frame: pd.DataFrame,
    segments: Sequence[str] = SEGMENTS,
    *,
    min_genuine: int = 1,
    max_fpr_gap: float = 0.005,
    label: str = schema.TX_FRAUD,
    alert: str = ALERT,
    sources: Mapping[str, str] | None = None,
) -> FairnessResult:
    """False-positive rates across each kind of segment and the largest gap of each.

    Args:
        frame: One row per transaction with the segment columns, the label and the alert.
        segments: Segment columns to check.
        min_genuine: Segments with fewer genuine transactions are listed but not compared.
        max_fpr_gap: Largest allowed gap (absolute, in FPR).
        label: The label column.
        alert: The alert column.
        sources: Where each segment came from (shown in the card).

    Raises:
        DataError: A segment, label or alert column is missing.
    """
    missing = [c for c in (*segments, label, alert) if c not in frame.columns]
    if missing:
        raise DataError(f"fairness check: missing column(s) {', '.join(missing)}")
    parts, gaps = [], {}
    for name in segments:
        rates = segment_rates(frame, name, label=label, alert=alert)
        gaps[name] = fpr_gap(rates, min_genuine)
        parts.append(rates.assign(segment_type=name, compared=rates["segment"].isin(gaps[name].compared)))
    table = pd.concat(parts, ignore_index=True)
    table = table[["segment_type", *[c for c in table.columns if c != "segment_type"]]]
    return FairnessResult(table, gaps, max_fpr_gap, dict(sources or {}))


# ---------------------------------------------------------------------------------- model card
AMOUNT_BANDS = (0.0, 20.0, 100.0, 220.0, math.inf)
INTENDED_USE = (
    "Score every card payment of the bank's own cardholders, in real time, with the probability that it is "
    "a fraud; the scoring service turns the score into approve / review / decline.",
    "Put the bank's investigators on the most suspicious payments and cards: alerts at the validation "
    "threshold are what a reviewer sees, with the decision's reason codes.",
)
OUT_OF_SCOPE = (
    "Not a credit, pricing or account-closure decision, and not a judgement of a customer: a score is about "
    "one payment.",
    "Not for another bank, country or card product without retraining and revalidation on its data.",
    "Not to decline payments without recourse: a declined customer must be able to reach a human, and "
    "every decision is in the audit log with its reasons.",
)


@dataclass
class ModelCard:
    """Everything a model card says, from one run folder (render with `card_markdown`, `card_section`)."""

    run_dir: Path
    model: str
    details: dict[str, Any]
    data: pd.DataFrame
    data_notes: list[str]
    metrics: pd.DataFrame
    by_segment: pd.DataFrame
    fairness: FairnessResult
    limitations: list[str]
    intended_use: tuple[str, ...] = INTENDED_USE
    out_of_scope: tuple[str, ...] = OUT_OF_SCOPE


def _read_json(path: Path) -> dict[str, Any]:
    import json

    from shared.errors import InputFileError

    if not path.is_file():
        raise InputFileError(f"{path}: missing (train or run first)")
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputFileError(f"{path}: unreadable ({exc})") from None


def amount_bands(amount: Sequence[float] | np.ndarray | pd.Series) -> pd.Categorical:
    """Amount bands ``< 20``, ``20-100``, ``100-220``, ``>= 220`` (220: the Handbook's amount rule)."""
    labels = ["< 20", "20-100", "100-220", ">= 220"]
    return pd.cut(np.asarray(amount, dtype=float), list(AMOUNT_BANDS), right=False, labels=labels)


def segment_metrics(frame: pd.DataFrame, segments: Sequence[str], score: str) -> pd.DataFrame:
    """Per segment value: transactions, frauds, AP, recall and FPR at the threshold, alert rate."""
    from level4_fraud.evaluate import average_precision

    rows = []
    for name in segments:
        for value, part in frame.groupby(frame[name].astype(str), observed=True, sort=True):
            y = part[schema.TX_FRAUD].to_numpy(dtype=bool)
            a = part[ALERT].to_numpy(dtype=bool)
            rows.append(
                {
                    "segment_type": name,
                    "segment": value,
                    "transactions": len(part),
                    "frauds": int(y.sum()),
                    "average_precision": average_precision(y, part[score]),
                    "recall": a[y].mean() if y.any() else math.nan,
                    "fpr": a[~y].mean() if (~y).any() else math.nan,
                    "alert_rate": a.mean(),
                }
            )
    return pd.DataFrame(rows)


def _scored_test_rows(
    run_dir: Path, info: Mapping[str, Any], cfg: ComplianceConfig
) -> tuple[pd.DataFrame, str, float]:
    """The fold's evaluated test rows, the model's score column and its validation threshold."""
    from level4_fraud.train import read_scores

    scores = read_scores(run_dir, cfg.fold)
    column = f"score_{cfg.model}"
    if column not in scores.columns:
        have = sorted(c.removeprefix("score_") for c in scores.columns if c.startswith("score_"))
        raise DataError(f"{run_dir}: no scores of model {cfg.model!r} (have {', '.join(have)})")
    test = scores[(scores["split"] == "test") & scores["evaluated"].astype(bool)].reset_index(drop=True)
    if test.empty:
        raise DataError(f"{run_dir}: fold {cfg.fold} has no evaluated test rows")
    # The deployed ensemble's own threshold (run.json); another model's is its validation
    # threshold as metrics.json reports it (the mean over folds).
    if cfg.model == "ensemble":
        threshold = info.get("threshold")
    else:
        threshold = _read_json(run_dir / "metrics.json").get("test", {}).get(cfg.model, {}).get("threshold")
    if threshold is None or not math.isfinite(float(threshold)):
        raise DataError(f"{run_dir}: no alert threshold of model {cfg.model!r}")
    return test, column, float(threshold)


def _customers_table(run_dir: Path, customers: pd.DataFrame | Path | None) -> pd.DataFrame | None:
    if isinstance(customers, pd.DataFrame):
        return customers
    path = Path(customers) if customers is not None else run_dir / "data" / "customers.parquet"
    if customers is not None and not path.is_file():
        from shared.errors import InputFileError

        raise InputFileError(f"{path}: no such customer table")
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        from shared.errors import InputFileError

        raise InputFileError(f"{path}: unreadable customer table ({exc})") from None


def build_model_card(
    run_dir: Path, cfg: ComplianceConfig | None = None, customers: pd.DataFrame | Path | None = None
) -> ModelCard:
    """The model card of a run folder: its own metrics, data, segments and fairness check.

    Args:
        run_dir: The run folder (``run.json``, ``metrics.json``, ``scores/``).
        cfg: Compliance settings (model, fold, bands, fairness limit).
        customers: The customer table or its file (default: ``RUN/data/customers.parquet`` when
            there; without one the segments are synthetic and the card says so).

    Raises:
        InputFileError: The run folder or one of its files is missing.
        DataError: The model has no scores or threshold.
    """
    from level4_fraud.train import read_run

    cfg = cfg or ComplianceConfig()
    run_dir = Path(run_dir)
    info = read_run(run_dir)  # first: a missing or foreign folder says so
    metrics = _read_json(run_dir / "metrics.json")
    test, score, threshold = _scored_test_rows(run_dir, info, cfg)
    segs, sources = customer_segments(
        _customers_table(run_dir, customers), test[schema.CUSTOMER_ID].to_numpy(), cfg
    )
    frame = test.merge(segs, on=schema.CUSTOMER_ID, how="left", validate="many_to_one")
    frame[ALERT] = frame[score].to_numpy(dtype=float) >= threshold
    frame["amount_band"] = amount_bands(frame[schema.TX_AMOUNT])
    kinds = [c for c in (schema.CHANNEL, "amount_band", *SEGMENTS) if c in frame.columns]
    fairness = fairness_check(
        frame, SEGMENTS, min_genuine=cfg.min_genuine, max_fpr_gap=cfg.max_fpr_gap, sources=sources
    )
    return ModelCard(
        run_dir=run_dir,
        model=cfg.model,
        details=_details(run_dir, cfg, info, metrics, threshold),
        data=_data_table(metrics),
        data_notes=_data_notes(info, metrics, frame),
        metrics=_metrics_table(metrics),
        by_segment=segment_metrics(frame, kinds, score),
        fairness=fairness,
        limitations=_limitations(cfg, metrics, frame, fairness),
    )


def _details(
    run_dir: Path,
    cfg: ComplianceConfig,
    info: Mapping[str, Any],
    metrics: Mapping[str, Any],
    threshold: float,
) -> dict[str, Any]:
    ens = info.get("ensemble") or {}
    members = ", ".join(ens.get("members", [])) if cfg.model == "ensemble" else ""
    out: dict[str, Any] = {
        "model": cfg.model + (f" ({ens.get('method', '')} of {members})" if members else ""),
        "run": run_dir.name,
        "trained": info.get("created", ""),
        "dataset": metrics.get("dataset", info.get("dataset", "")),
        "profile": metrics.get("profile", info.get("profile", "")),
        "alert threshold (validation, cost-optimal)": threshold,
        "review cost per alert": metrics.get("review_cost", ""),
        f"headline {metrics.get('headline_metric', '')}": metrics.get("headline_value"),
    }
    return out


def _data_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for fold in metrics.get("folds", []):
        for split, (start, end) in fold.get("periods", {}).items():
            rows.append(
                {
                    "fold": fold.get("fold"),
                    "split": split,
                    "from": start,
                    "to": end,
                    "transactions": fold.get(f"{split}_rows"),
                    "frauds": fold.get(f"{split}_frauds"),
                }
            )
    return pd.DataFrame(rows)


def _data_notes(info: Mapping[str, Any], metrics: Mapping[str, Any], frame: pd.DataFrame) -> list[str]:
    spec = info.get("spec", {})
    features = info.get("features", {})
    n_num, n_cat = len(spec.get("numeric", [])), len(spec.get("categorical", []))
    cats = ", ".join(spec.get("categorical", [])) or "none"
    notes = [
        f"Dataset: {metrics.get('dataset', 'unknown')} card transactions in the Fraud Detection Handbook's "
        "layout; the model sees only each transaction and the ones before it (point-in-time features).",
        f"Features: {n_num} numeric and {n_cat} categorical ({cats}); "
        f"card and terminal windows of {features.get('windows', '?')} days; fraud labels count as known "
        f"{features.get('delay_days', '?')} days after the transaction.",
        "Protocol: prequential folds (train a week, wait the label delay, test the next week); every choice "
        "(ensemble, calibration, threshold) is made on a validation fold shifted back two weeks.",
        f"Segment metrics below: the {len(frame):,} evaluated test transactions of the card's fold "
        f"({int(frame[schema.TX_FRAUD].sum())} frauds); cards already known to be compromised are excluded, "
        "as the bank has blocked them.",
    ]
    return notes


def _metrics_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    cols = ("average_precision", "card_precision_at_k", "roc_auc", "recall_at_fpr", "savings", "folds")
    table = pd.DataFrame.from_dict(
        {m: {c: v.get(c, math.nan) for c in cols} for m, v in metrics.get("test", {}).items()}, orient="index"
    )
    table.index.name = "model"
    return table


def _limitations(
    cfg: ComplianceConfig, metrics: Mapping[str, Any], frame: pd.DataFrame, fairness: FairnessResult
) -> list[str]:
    from level4_fraud.evaluate import recall_by_scenario

    out = []
    if metrics.get("dataset") == "simulated":
        out.append(
            "Trained and tested on simulated transactions: the numbers show the method works on the "
            "simulator's fraud patterns, not that it will on a real bank's; revalidate on real data first."
        )
    m = metrics.get("test", {}).get(cfg.model, {})
    if "average_precision_std" in m:
        out.append(
            f"Test AP {m['average_precision']:.3f} ± {m['average_precision_std']:.3f} over "
            f"{int(m.get('folds', 0))} fold(s): a test week holds few frauds, so every figure is noisy."
        )
    recall = recall_by_scenario(frame[schema.TX_FRAUD_SCENARIO], frame[ALERT])
    weak = {k: v for k, v in recall.items() if v < 0.5}
    if weak:
        listed = ", ".join(f"{k} ({v:.0%})" for k, v in sorted(weak.items(), key=lambda kv: kv[1]))
        out.append(f"Fraud patterns mostly missed at the threshold (recall < 50 %): {listed}.")
    out.append(
        "Fraud changes: a pattern absent from the training weeks (the simulator's drift event) is mostly "
        "missed until retraining; drift monitoring and the retraining flow exist for this."
    )
    synthetic = [k for k, v in fairness.sources.items() if v == SYNTHETIC]
    if synthetic:
        out.append(
            f"Segments {', '.join(synthetic)}: no such data, so derived from a keyed hash of the customer id "
            "(synthetic); the fairness check runs on them but cannot find a real disparity."
        )
    small = fairness.table[~fairness.table["compared"]]
    if len(small):
        out.append(
            f"{len(small)} segment(s) with fewer than {cfg.min_genuine} genuine test transactions are shown "
            "but left out of the gap."
        )
    if not fairness.passed:
        worst = max(fairness.gaps.items(), key=lambda kv: kv[1].gap if math.isfinite(kv[1].gap) else -1)
        out.append(
            f"Fairness check FAILED: the false-positive rate differs by {worst[1].gap:.4f} across {worst[0]} "
            f"({worst[1].highest} vs {worst[1].lowest}), above the allowed {cfg.max_fpr_gap}."
        )
    return out


# ---------------------------------------------------------------------------------- rendering
def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        number = float(value)
        return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(df: pd.DataFrame, *, index: bool = False) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (NaN as a dash, floats to 4 digits)."""
    table = df.reset_index() if index else df
    if table.empty:
        return "(none)"
    head = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _fairness_summary(card: ModelCard) -> list[str]:
    f = card.fairness
    lines = []
    for name, g in f.gaps.items():
        if g.highest is None:
            lines.append(f"{name}: fewer than two segments large enough to compare.")
            continue
        verdict = "ABOVE" if g.gap > f.max_fpr_gap else "within"
        lines.append(
            f"{name}: max FPR gap {g.gap:.4f} ({g.highest} {_fpr_of(f, name, g.highest):.4f} vs {g.lowest} "
            f"{_fpr_of(f, name, g.lowest):.4f}; ratio {g.ratio:.2f}, p = {g.p_value:.3g}), {verdict} the "
            f"allowed {f.max_fpr_gap} [segments from: {f.sources.get(name, 'given')}]"
        )
    lines.append(f"Verdict: {'PASS' if f.passed else 'FAIL'}.")
    return lines


def _fpr_of(f: FairnessResult, kind: str, segment: str | None) -> float:
    row = f.table[(f.table["segment_type"] == kind) & (f.table["segment"] == segment)]
    return float(row["fpr"].iloc[0]) if len(row) else math.nan


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {s}" for s in items)


def card_markdown(card: ModelCard) -> str:
    """The model card as Markdown."""
    details = "\n".join(f"- **{k}**: {_cell(v)}" for k, v in card.details.items())
    fair_cols = ["segment_type", "segment", "genuine", "false_positives", "fpr", "fpr_low", "fpr_high"]
    parts = [
        f"# Model card: level4_fraud {card.model} ({card.run_dir.name})",
        "## Model details",
        details,
        "## Intended use",
        _bullets(card.intended_use),
        "**Out of scope**",
        _bullets(card.out_of_scope),
        "## Data",
        _bullets(card.data_notes),
        markdown_table(card.data),
        "## Metrics (test, mean over folds)",
        markdown_table(card.metrics, index=True),
        "## Metrics by segment",
        "At the alert threshold, on the fold's evaluated test transactions.",
        markdown_table(card.by_segment),
        "## Fairness: false-positive rates across customer segments",
        _bullets(_fairness_summary(card)),
        markdown_table(card.fairness.table[[*fair_cols, "compared"]]),
        "## Limitations",
        _bullets(card.limitations),
    ]
    return "\n\n".join(parts) + "\n"


def card_section(card: ModelCard, report: Any) -> None:
    """Add the model card to a `shared.report.Report` (its HTML section)."""
    sec = report.section("Model card", f"level4_fraud {card.model}, run {card.run_dir.name}")
    sec.metrics({k: v for k, v in card.details.items() if isinstance(v, int | float)})
    sec.html(_html_list([f"{k}: {_cell(v)}" for k, v in card.details.items()]))
    sec.html("<h3>Intended use</h3>" + _html_list(card.intended_use))
    sec.html("<h4>Out of scope</h4>" + _html_list(card.out_of_scope))
    sec.html("<h3>Data</h3>" + _html_list(card.data_notes))
    sec.table(card.data, "Folds: periods, transactions and frauds", index=False)
    sec.table(card.metrics, "Test metrics of every model of the run (mean over folds)")
    sec.table(card.by_segment, "Metrics by segment at the alert threshold", index=False)
    sec.html("<h3>Fairness</h3>" + _html_list(_fairness_summary(card)))
    sec.table(card.fairness.table, "False-positive rate per segment (95 % Wilson interval)", index=False)
    sec.html("<h3>Limitations</h3>" + _html_list(card.limitations))


def _esc(text: Any) -> str:
    import html

    return html.escape(str(text))


def _html_list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_esc(s)}</li>" for s in items) + "</ul>"


def write_model_card(card: ModelCard, out: Path) -> dict[str, Path]:
    """Write the card: Markdown at `out`, HTML and the fairness table (CSV) beside it.

    Returns:
        ``{"markdown": ..., "html": ..., "fairness": ...}``.
    """
    from shared.atomic import atomic_write_text
    from shared.report import Report

    out = Path(out)
    md = atomic_write_text(out, card_markdown(card))
    report = Report(f"Model card: level4_fraud {card.model}", card.run_dir.name)
    card_section(card, report)
    page = report.write(out.with_suffix(".html"))
    table = card.fairness.table.to_csv(index=False)
    fairness = atomic_write_text(out.with_name(f"{out.stem}_fairness.csv"), table)
    return {"markdown": Path(md), "html": Path(page), "fairness": Path(fairness)}
