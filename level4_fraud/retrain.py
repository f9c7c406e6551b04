"""Drift-triggered retraining: detect drift, retrain, compare challenger and champion, promote or alert.

`retrain_flow` (Prefect) runs at a moment ``as_of`` ("now": the end of the newest day in the
data folder by default) on what is known then:

1. **history** — the transactions before ``as_of`` and their point-in-time features, computed
   with the champion's own feature settings (`datasets.feature_frame`: the offline definitions the
   Feast store materialises, so the training set is the feature store's history, row for row). A
   label counts only once it has arrived: ``delay_days`` after its transaction (the level's
   convention) or at its ``LABEL_AVAILABLE_FROM``.
2. **drift** — every day since the champion's training reference, against it (`monitoring.
   drift`: PSI and KS per feature and on the champion's score). No alarm in the last
   ``detect_days`` days and no ``force``: stop there (decision ``no_drift``). An alarm with fewer
   than ``min_post_drift_days`` fully labelled days since the first alarm (the drift's onset):
   stop too (``waiting_for_labels``): a challenger could not learn the new pattern yet.
3. **challenger** — the level's recipe (`train.fit_baselines`, `train.fit_fold_ensemble`,
   `train.choose_thresholds`, as ``train`` does on a folder) on the last ``train_days`` labelled
   days, except the **comparison window**: the most recent ``compare_days`` labelled days.
4. **compare** — champion and challenger score the comparison window, which neither has trained
   on: average precision (the level's headline) and CP@100.
5. **promote or alert** — a challenger whose AP beats the champion's by more than
   ``min_improvement`` is logged to MLflow and registered with the alias ``champion`` (the
   registry's previous champion version stays, without the alias); otherwise it is registered as
   ``challenger``, and an alert is raised: one JSON line in ``OUT/alerts.jsonl``, a warning in the
   log, and a POST to Alertmanager's ``/api/v2/alerts`` when ``alertmanager_url`` is set.

Everything lands in the retrain folder ``OUT``: ``retrain.json`` (the decision, the figures, the
drift summary), ``drift.csv``, ``alerts.jsonl`` when alerted, and ``challenger/``, a run folder
``predict`` and ``serve`` load like any other (its ``run.json`` records its training period:
the reference of the next drift check).

The label delay is why a retrain cannot follow the drift at once: the first labels of the new
pattern arrive ``delay_days`` after it starts, so a retrain the day drift is detected would learn
only the old world. Measured on the simulator's drift event (``tests/test_retrain.py``): a
challenger retrained two weeks after the onset (7 labelled days of the new pattern, 3 of them
held out to compare) beat the champion on the comparison window and lost to it on the next
week; three weeks after the onset (14 labelled days) it came within 2 % of the oracle. Hence
``min_post_drift_days = 14``. A scheduler runs the flow daily, or Alertmanager's drift route
(``fraud-retrain`` receiver) triggers it; it retrains once the labels allow.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from level4_fraud import data, evaluate, schema
from level4_fraud.config import FraudConfig  # at run time: Prefect validates the flow's parameters
from level4_fraud.datasets import FeatureConfig, FeatureSpec, feature_frame, training_fold_data
from level4_fraud.monitoring import MonitoringConfig
from level4_fraud.monitoring.drift import SCORE, drift_by_window, first_alarm, window_summary
from level4_fraud.monitoring.performance import labels_arrived, performance_by_window
from level4_fraud.predict import LoadedRun, load_run, side_tables
from level4_fraud.simulate import TRANSACTIONS_DIR
from level4_fraud.train import choose_thresholds, fit_baselines, fit_fold_ensemble, save_run
from shared.atomic import atomic_write_json, atomic_write_text, json_safe
from shared.errors import EmptyDataError, InputFileError

log = logging.getLogger(__name__)

RETRAIN_FILE = "retrain.json"
DRIFT_FILE = "drift.csv"
ALERTS_FILE = "alerts.jsonl"
CHALLENGER_DIR = "challenger"
Decision = Literal["no_drift", "waiting_for_labels", "promoted", "kept_champion"]


class RetrainConfig(BaseModel):
    """The ``retrain`` section of the level's config."""

    model_config = ConfigDict(extra="forbid")

    detect_days: int = Field(7, ge=1, description="Drift is looked for in the last N days before now")
    min_post_drift_days: int = Field(
        14, ge=0, description="Labelled days since the drift's first alarm before a drift-triggered retrain"
    )
    compare_days: int = Field(3, ge=1, description="Most recent labelled days: challenger vs champion")
    train_days: int | None = Field(
        21, ge=2, description="Last labelled days the challenger learns from (None: every one)"
    )
    min_improvement: float = Field(0.0, ge=0, description="AP the challenger must gain to be promoted")
    challenger_alias: str = Field("challenger", description="Registry alias of a challenger not promoted")
    register_models: bool = Field(True, description="Log and register challengers in MLflow")
    alertmanager_url: str | None = Field(
        None, description="POST alerts to this Alertmanager (http://host:9093)"
    )
    alert_timeout_s: float = Field(5.0, gt=0)


# ---------------------------------------------------------------------------------- history
@dataclass
class History:
    """What is known at ``as_of``: the features of every earlier transaction and which labels have
    arrived (``LABELLED``; ``TX_FRAUD`` NaN where not), with the champion when there is one."""

    frame: pd.DataFrame
    spec: FeatureSpec
    feature_cfg: FeatureConfig
    as_of: pd.Timestamp
    delay_days: float
    model: LoadedRun | None = None

    @property
    def days(self) -> pd.Series:
        """Each row's day (midnight)."""
        return self.frame[schema.TX_DATETIME].dt.normalize()

    @property
    def champion(self) -> LoadedRun:
        """The champion (a history read with `load_history`)."""
        if self.model is None:
            raise ValueError("this history was read without a champion (use load_history)")
        return self.model


def read_transactions(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """Transactions and side tables of a `generate` folder or a Handbook-layout folder."""
    if not Path(data_dir).exists():
        raise InputFileError(f"{data_dir}: no such folder")
    tx_dir = data_dir / TRANSACTIONS_DIR if (data_dir / TRANSACTIONS_DIR).is_dir() else data_dir
    tx = data.read_fdh_folder(tx_dir)
    customers, terminals = side_tables(tx_dir)
    return tx, customers, terminals


def default_as_of(tx: pd.DataFrame) -> pd.Timestamp:
    """The end of the newest day in the data: everything in it has happened."""
    return tx[schema.TX_DATETIME].max().normalize() + pd.Timedelta(days=1)


def mask_labels(frame: pd.DataFrame, as_of: pd.Timestamp, delay_days: float) -> pd.DataFrame:
    """A copy of a feature frame whose labels not arrived by `as_of` are unknown (NaN, unlabelled)."""
    out = frame.copy()
    arrived = labels_arrived(out, as_of, delay_days)
    out[schema.TX_FRAUD] = out[schema.TX_FRAUD].where(arrived)
    out[schema.LABELLED] = arrived
    return out


def known_history(
    data_dir: Path,
    as_of: pd.Timestamp | str | None = None,
    feature_cfg: FeatureConfig | None = None,
    *,
    spec: FeatureSpec | None = None,
    labels_as_of: pd.Timestamp | str | None = None,
) -> History:
    """The features of `data_dir`'s transactions before `as_of` and the labels arrived by then.

    Args:
        data_dir: Transactions (a `generate` folder or daily files).
        as_of: Now (default: the end of the newest day in `data_dir`).
        feature_cfg: Feature settings (default: the level's).
        spec: The model inputs to compute (a champion's; default: from `feature_cfg` and the data).
        labels_as_of: When labels count as arrived (default `as_of`; later only for an oracle).

    Raises:
        InputFileError, SchemaError: A missing folder, or data that cannot give `spec`.
        EmptyDataError: No transaction before `as_of`.
    """
    feature_cfg = feature_cfg or FeatureConfig()
    tx, customers, terminals = read_transactions(Path(data_dir))
    now = default_as_of(tx) if as_of is None else pd.Timestamp(as_of)
    tx = tx.loc[tx[schema.TX_DATETIME] < now].reset_index(drop=True)
    if tx.empty:
        raise EmptyDataError(f"{data_dir}: no transaction before {now.date()}")
    frame, spec = feature_frame(tx, feature_cfg, customers=customers, terminals=terminals, spec=spec)
    delay = float(feature_cfg.delay_days)
    frame = mask_labels(frame, now if labels_as_of is None else pd.Timestamp(labels_as_of), delay)
    return History(frame, spec, feature_cfg, now, delay)


def load_history(
    run_dir: Path,
    data_dir: Path,
    as_of: pd.Timestamp | str | None = None,
    *,
    labels_as_of: pd.Timestamp | str | None = None,
) -> History:
    """`known_history` with the champion of `run_dir` (its feature settings and inputs).

    Raises:
        InputFileError, SchemaError: A missing run or data folder, or data the champion cannot score.
        EmptyDataError: No transaction before `as_of`.
    """
    model = load_run(run_dir)
    history = known_history(data_dir, as_of, model.feature_cfg, spec=model.spec, labels_as_of=labels_as_of)
    history.model = model
    return history


# ---------------------------------------------------------------------------------- monitoring
def reference_index(model: LoadedRun, frame: pd.DataFrame, days: int) -> pd.Index:
    """Rows of the champion's training reference: the last `days` days of its training period.

    Raises:
        InputFileError: The run records no training period, or `frame` has no row in it.
    """
    period = (model.info.get("fold") or {}).get("periods", {}).get("train")
    if not period:
        raise InputFileError(f"{model.folder}: run.json records no training period (fold.periods.train)")
    start, end = pd.Timestamp(period[0]), pd.Timestamp(period[1])
    start = max(start, end - pd.Timedelta(days=days))
    when = frame[schema.TX_DATETIME]
    rows = frame.index[((when >= start) & (when < end)).to_numpy()]
    if len(rows) == 0:
        raise InputFileError(
            f"the data hold no transaction of the model's reference period {start.date()} to {end.date()}"
        )
    return rows


def _rows_between(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp | None = None) -> pd.Index:
    when = frame[schema.TX_DATETIME]
    keep = when >= start if end is None else (when >= start) & (when < end)
    return frame.index[keep.to_numpy()]


def drift_report(
    history: History, monitoring: MonitoringConfig, since: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-window drift of the features and of the champion's score (from `since`, or from the end
    of the reference).

    Features are compared with the champion's training rows (the last ``reference_days`` of its
    training period). The score is compared with the champion's scores on the
    ``score_reference_days`` days right after its training period: scores of the rows a forest
    was trained on are in-sample (the frauds it memorised score near 1), so they are no reference
    for the scores of new traffic; the first days it scored unseen are. Score rows start after them.

    A reference taken before the windows have filled (the 30-day terminal windows, delayed by the
    label delay, need 37 days of history) makes those features "drift" while they fill: true of
    the data, not of the customers; the quick profile's run shows it.

    Returns:
        ``(table, summary)``: `monitoring.drift.drift_by_window` and its `window_summary`.
    """
    cfg = monitoring.drift
    model, frame = history.champion, history.frame
    ref_rows = reference_index(model, frame, cfg.reference_days)
    ref_end = frame.loc[ref_rows, schema.TX_DATETIME].max().normalize() + pd.Timedelta(days=1)
    start = ref_end if since is None else max(pd.Timestamp(since), ref_end)
    cols = [c for c in (cfg.features or model.spec.columns) if c != SCORE]
    table = drift_by_window(
        frame.loc[ref_rows, cols], frame.loc[_rows_between(frame, start), [*cols, schema.TX_DATETIME]], cfg
    )
    score_end = ref_end + pd.Timedelta(days=cfg.score_reference_days)
    score_ref = _rows_between(frame, ref_end, score_end)
    score_cur = _rows_between(frame, max(start, score_end))
    if len(score_ref) and len(score_cur):
        ref = pd.DataFrame({SCORE: model.score(frame, score_ref)})
        cur = pd.DataFrame(
            {
                SCORE: model.score(frame, score_cur),
                schema.TX_DATETIME: frame.loc[score_cur, schema.TX_DATETIME],
            }
        )
        scores = drift_by_window(ref, cur, cfg.model_copy(update={"features": [SCORE], "exclude": []}))
        table = pd.concat([table, scores], ignore_index=True).sort_values("window", kind="mergesort")
    return table.reset_index(drop=True), window_summary(table, cfg)


def performance_report(history: History, monitoring: MonitoringConfig) -> pd.DataFrame:
    """The champion's AP and CP@100 per window after its training period, once labels are in."""
    model, frame = history.champion, history.frame
    period = (model.info.get("fold") or {}).get("periods", {}).get("train")
    start = pd.Timestamp(period[1]) if period else frame[schema.TX_DATETIME].min().normalize()
    rows = frame.index[(frame[schema.TX_DATETIME] >= start).to_numpy()]
    if len(rows) == 0:
        return pd.DataFrame()
    part = frame.loc[rows]
    # LABELLED already says "arrived by as_of": judge arrival again with no extra delay.
    return performance_by_window(
        part, model.score(frame, rows), history.as_of, monitoring.performance, delay_days=history.delay_days
    )


# ---------------------------------------------------------------------------------- challenger
def comparison_window(history: History, days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)``: the most recent `days` days whose labels have all arrived.

    Raises:
        EmptyDataError: Fewer labelled days than that.
    """
    labelled = history.frame[schema.LABELLED].to_numpy(dtype=bool)
    day = history.days
    complete = day[labelled].unique()
    # A day counts only when every one of its rows is labelled (its labels have all arrived).
    partial = set(day[~labelled].unique())
    full = sorted(d for d in complete if d not in partial)
    if len(full) < days:
        raise EmptyDataError(
            f"only {len(full)} fully labelled day(s) before {history.as_of.date()}; need {days}"
        )
    end = pd.Timestamp(full[-1]) + pd.Timedelta(days=1)
    return end - pd.Timedelta(days=days), end


def fit_recipe(
    cfg: FraudConfig,
    history: History,
    out: Path,
    *,
    exclude: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    train_days: int | None = None,
    dataset: str = "retrain",
) -> LoadedRun:
    """Train the level's recipe on the labels known in `history` and save a run folder at `out`.

    Args:
        cfg: The level's config (models, baselines, ensemble, evaluation protocol, seed).
        history: The features and arrived labels.
        out: The run folder to write.
        exclude: ``[start, end)`` whose labels are held out (the comparison window).
        train_days: Learn only from the last N labelled days (None: every one).
        dataset: Recorded in ``run.json``.

    Returns:
        The saved run, loaded back.
    """
    frame = history.frame
    labelled = frame[schema.LABELLED].to_numpy(dtype=bool).copy()
    when = frame[schema.TX_DATETIME]
    if exclude is not None:
        labelled &= ~((when >= exclude[0]) & (when < exclude[1])).to_numpy()
    if train_days is not None and labelled.any():
        last = when[labelled].max().normalize()
        labelled &= (when >= last - pd.Timedelta(days=train_days - 1)).to_numpy()
    view = frame.copy()
    view[schema.LABELLED] = labelled
    view[schema.TX_FRAUD] = view[schema.TX_FRAUD].where(labelled)
    fold = training_fold_data(view, history.spec, cfg.evaluation)
    run = fit_baselines(fold, cfg.models, cfg.baselines, seed=cfg.seed, final_only=True)
    fit_fold_ensemble(run, cfg.ensemble)
    choose_thresholds(run, cfg.evaluation)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"as_of": history.as_of.isoformat(), "profile": cfg.profile}
    save_run(out, run, feature_cfg=history.feature_cfg, dataset=dataset, extra=extra)
    return load_run(out)


def window_scores(
    models: dict[str, LoadedRun], history: History, window: tuple[pd.Timestamp, pd.Timestamp]
) -> dict[str, dict[str, float]]:
    """AP and CP@100 of each model on the labelled rows of ``[start, end)``."""
    frame = history.frame
    when = frame[schema.TX_DATETIME]
    rows = frame.index[
        ((when >= window[0]) & (when < window[1])).to_numpy() & frame[schema.LABELLED].to_numpy(dtype=bool)
    ]
    part = frame.loc[rows]
    y = part[schema.TX_FRAUD].to_numpy(dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        s = model.score(frame, rows)
        cp, _ = evaluate.card_precision_at_k(part, s, 100)
        out[name] = {
            "average_precision": evaluate.average_precision(y, s),
            "card_precision_at_k": cp,
            "rows": float(len(rows)),
            "frauds": float(y.sum()),
        }
    return out


def is_better(challenger_ap: float, champion_ap: float, min_improvement: float) -> bool:
    """The promotion rule: the challenger's AP beats the champion's by more than the margin."""
    if not math.isfinite(challenger_ap):
        return False
    if not math.isfinite(champion_ap):
        return True
    return challenger_ap > champion_ap + min_improvement


# ---------------------------------------------------------------------------------- registry, alerts
def register_run(
    cfg: FraudConfig, run_dir: Path, alias: str, metrics: dict[str, Any] | None = None
) -> dict[str, str]:
    """Log a run folder's model to MLflow and register it as a new version with `alias`."""
    from level4_fraud.predict import log_pyfunc
    from shared.tracking import MlflowTracker

    uri, root = cfg.mlflow_store()
    tracker = MlflowTracker(uri, cfg.tracking.experiment, root or None)
    with tracker.active(), tracker.start_run(run_dir.name, tags={"level": "4", "stage": "retrain"}):
        tracker.log_metrics(metrics or {})
        model_uri = log_pyfunc(run_dir)
        return tracker.register(model_uri, name=cfg.tracking.registered_model, alias=alias)


def registry_version(cfg: FraudConfig, alias: str) -> str | None:
    """The registered model version holding `alias` (None when there is none)."""
    from shared.tracking import MlflowTracker

    uri, root = cfg.mlflow_store()
    tracker = MlflowTracker(uri, cfg.tracking.experiment, root or None)
    try:
        mv = tracker.client().get_model_version_by_alias(cfg.tracking.registered_model, alias)
    except Exception:  # no such model or alias yet: the registry simply holds none
        return None
    return str(mv.version)


def raise_alert(out: Path, alert: dict[str, Any], rcfg: RetrainConfig) -> dict[str, Any]:
    """Record an alert: a JSON line in ``OUT/alerts.jsonl``, a warning in the log, and a POST to
    Alertmanager when configured (a failed POST is recorded, never raised: the record stands)."""
    record = {"raised_at": datetime.now(UTC).isoformat(timespec="seconds"), **alert}
    if rcfg.alertmanager_url:
        record["alertmanager"] = post_alertmanager(rcfg.alertmanager_url, alert, rcfg.alert_timeout_s)
    path = out / ALERTS_FILE
    previous = path.read_text(encoding="utf-8") if path.is_file() else ""
    atomic_write_text(path, previous + json.dumps(json_safe(record)) + "\n")
    log.warning("retrain alert: %s", alert.get("summary", alert))
    return record


def alertmanager_payload(alert: dict[str, Any]) -> list[dict[str, Any]]:
    """The alert in Alertmanager's API v2 form (labels route it: component=model -> fraud team)."""
    return [
        {
            "labels": {
                "alertname": str(alert.get("alertname", "FraudChallengerNotPromoted")),
                "severity": str(alert.get("severity", "warning")),
                "component": "model",
            },
            "annotations": {
                "summary": str(alert.get("summary", "")),
                "description": str(alert.get("description", "")),
            },
            "startsAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    ]


def post_alertmanager(url: str, alert: dict[str, Any], timeout: float) -> str:
    """POST to ``URL/api/v2/alerts``; returns ``"sent"`` or why it failed."""
    body = json.dumps(alertmanager_payload(alert)).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return "sent" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except OSError as exc:  # unreachable or refused: the alert is still in alerts.jsonl
        return f"failed: {exc}"


# ---------------------------------------------------------------------------------- the flow
@dataclass
class RetrainResult:
    """What `retrain_flow` decided and why (also ``OUT/retrain.json``)."""

    out: Path
    decision: Decision
    as_of: pd.Timestamp
    drift_alarm: bool
    first_alarm: pd.Timestamp | None
    drift: pd.DataFrame
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    challenger: Path | None = None
    registered: dict[str, str] | None = None
    alert: dict[str, Any] | None = None
    labelled_days_since_onset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return json_safe(
            {
                "decision": self.decision,
                "as_of": self.as_of.isoformat(),
                "drift_alarm": self.drift_alarm,
                "first_alarm": None if self.first_alarm is None else self.first_alarm.isoformat(),
                "labelled_days_since_onset": self.labelled_days_since_onset,
                "drifted_days": [
                    {"day": str(w.date()), "drifted": r["drifted"], "score_psi": r["score_psi"]}
                    for w, r in self.drift.iterrows()
                    if r["alarm"]
                ]
                if len(self.drift)
                else [],
                "comparison_window": None if self.window is None else [str(w.date()) for w in self.window],
                "scores": self.scores,
                "challenger": None if self.challenger is None else str(self.challenger),
                "registered": self.registered,
                "alert": self.alert,
            }
        )


def _config_sections(cfg: FraudConfig) -> tuple[MonitoringConfig, RetrainConfig]:
    return cfg.section("monitoring", MonitoringConfig), cfg.section("retrain", RetrainConfig)


@task(cache_policy=NO_CACHE)
def _history_task(run_dir: Path, data_dir: Path, as_of: pd.Timestamp | str | None) -> History:
    return load_history(run_dir, data_dir, as_of)


@task(cache_policy=NO_CACHE)
def _detect_task(
    history: History, monitoring: MonitoringConfig, days: int
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    return detect(history, monitoring, days)


@task(cache_policy=NO_CACHE)
def _challenger_task(
    cfg: FraudConfig, history: History, out: Path, rcfg: RetrainConfig
) -> tuple[Decision, tuple[pd.Timestamp, pd.Timestamp], dict[str, dict[str, float]], Path]:
    return compare_and_decide(cfg, history, out, rcfg)


@task(cache_policy=NO_CACHE)
def _register_task(cfg: FraudConfig, run_dir: Path, alias: str, metrics: dict[str, Any]) -> dict[str, str]:
    return register_run(cfg, run_dir, alias, metrics)


def detect(
    history: History, monitoring: MonitoringConfig, days: int
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Drift of every day since the champion's reference (`drift_report`), and whether one of the
    last `days` days before ``as_of`` raised the alarm (drift that is still there)."""
    table, summary = drift_report(history, monitoring)
    recent = summary.index >= history.as_of - pd.Timedelta(days=days) if len(summary) else []
    return table, summary, bool(len(summary) and summary.loc[recent, "alarm"].any())


def labelled_days_since(history: History, onset: pd.Timestamp) -> int:
    """Days from `onset` on whose labels have all arrived."""
    lab = history.frame[schema.LABELLED].to_numpy(dtype=bool)
    day = history.days
    after = (day >= onset).to_numpy()
    complete = set(day[after & lab].unique()) - set(day[after & ~lab].unique())
    return len(complete)


def compare_and_decide(
    cfg: FraudConfig,
    history: History,
    out: Path,
    rcfg: RetrainConfig,
) -> tuple[Decision, tuple[pd.Timestamp, pd.Timestamp], dict[str, dict[str, float]], Path]:
    """Fit the challenger without the comparison window, score both models there, decide."""
    window = comparison_window(history, rcfg.compare_days)
    challenger_dir = out / CHALLENGER_DIR
    challenger = fit_recipe(cfg, history, challenger_dir, exclude=window, train_days=rcfg.train_days)
    scores = window_scores({"champion": history.champion, "challenger": challenger}, history, window)
    better = is_better(
        scores["challenger"]["average_precision"],
        scores["champion"]["average_precision"],
        rcfg.min_improvement,
    )
    return ("promoted" if better else "kept_champion"), window, scores, challenger_dir


def _not_promoted_alert(result: RetrainResult) -> dict[str, Any]:
    ch, cp = result.scores["challenger"], result.scores["champion"]
    assert result.window is not None
    start, end = (w.date() for w in result.window)
    return {
        "alertname": "FraudChallengerNotPromoted",
        "severity": "warning",
        "summary": f"drift-triggered retrain at {result.as_of.date()} kept the champion: challenger AP "
        f"{ch['average_precision']:.4f} vs champion {cp['average_precision']:.4f} on {start}..{end}",
        "description": "The retrained model is not better on the most recent labelled window; the champion "
        "keeps serving while drift persists. Investigate the drifted features and the new labels.",
        "drift_alarm": result.drift_alarm,
        "challenger": str(result.challenger),
    }


@flow(name="level4-retrain", log_prints=False)
def retrain_flow(
    cfg: FraudConfig,
    run_dir: Path,
    data_dir: Path,
    *,
    out: Path | None = None,
    as_of: pd.Timestamp | str | None = None,
    force: bool = False,
) -> RetrainResult:
    """Detect drift, retrain, compare, promote or alert (the module docstring), as a Prefect flow.

    Args:
        cfg: The level's config (``monitoring`` and ``retrain`` sections, models, MLflow store).
        run_dir: The champion's run folder.
        data_dir: Transactions up to now (a `generate` folder or daily files).
        out: The retrain folder (default: a new one under the artifacts).
        as_of: Now (default: the end of the newest day in `data_dir`).
        force: Retrain even without a drift alarm.
    """
    monitoring, rcfg = _config_sections(cfg)
    history = _history_task(run_dir, data_dir, as_of)
    out = out or cfg.paths().run_dir(f"retrain-{history.as_of.date()}")
    out.mkdir(parents=True, exist_ok=True)
    table, summary, alarm = _detect_task(history, monitoring, rcfg.detect_days)
    if len(table):
        atomic_write_text(out / DRIFT_FILE, table.to_csv(index=False))
    onset = first_alarm(summary)
    result = RetrainResult(out, "no_drift", history.as_of, alarm, onset, summary)
    if alarm and not force and onset is not None:
        result.labelled_days_since_onset = labelled_days_since(history, onset)
        if result.labelled_days_since_onset < rcfg.min_post_drift_days:
            result.decision = "waiting_for_labels"
    if (alarm or force) and result.decision != "waiting_for_labels":
        decision, window, scores, challenger = _challenger_task(cfg, history, out, rcfg)
        result.decision, result.window, result.scores, result.challenger = (
            decision,
            window,
            scores,
            challenger,
        )
        metrics = {f"{m}.{k}": v for m, s in scores.items() for k, v in s.items()}
        if rcfg.register_models and cfg.tracking.enabled:
            alias = cfg.tracking.alias if decision == "promoted" else rcfg.challenger_alias
            result.registered = _register_task(cfg, challenger, alias, metrics)
        if decision != "promoted":
            result.alert = raise_alert(out, _not_promoted_alert(result), rcfg)
    atomic_write_json(out / RETRAIN_FILE, result.to_dict())
    return result
