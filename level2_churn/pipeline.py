"""The level's stages as plain functions, and the Prefect 3 flow that chains them.

``generate → ingest → validate → features → train → evaluate → register → report → predict``

Each stage reads and writes files, so the CLI (and DVC) can run one stage at a time, and the flow
runs them all. I/O stages retry (not on a user error: a wrong column stays wrong); the expensive
data stages are cached on their inputs' fingerprints, so a second run with the same data and config
goes straight to training. The flow runs locally against Prefect's ephemeral API: no server to set up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import joblib
import numpy as np
import pandas as pd
from prefect import flow, task

from level2_churn.business import Economics
from level2_churn.config import ChurnConfig
from shared.atomic import atomic_path, atomic_write_json, atomic_write_with
from shared.config import load_config
from shared.errors import DataError, InputFileError, UserError
from shared.metrics import write_metrics
from shared.paths import LevelPaths
from shared.tracking import MlflowTracker

if TYPE_CHECKING:
    from prefect.tasks import RetryConditionCallable

    from level2_churn.train import ModellingResult

log = logging.getLogger(__name__)

DEPLOYMENT_CRON = "0 3 1 * *"  # 03:00 on the first day of every month: a new month of labels is in


@dataclass(frozen=True)
class Layout:
    """Where every stage reads and writes, under one level root (the package folder by default)."""

    paths: LevelPaths

    @classmethod
    def at(cls, root: Path | None = None) -> Layout:
        return cls(LevelPaths(Path(root)) if root else LevelPaths.for_package(__file__))

    @property
    def raw(self) -> Path:
        return self.paths.raw

    @property
    def clean(self) -> Path:
        return self.paths.interim / "clean"

    @property
    def snapshots(self) -> Path:
        return self.paths.processed / "snapshots.parquet"

    @property
    def artifacts(self) -> Path:
        return self.paths.artifacts

    def latest_model(self) -> Path:
        """The newest ``model.joblib`` under the artifacts folder."""
        found = sorted(self.artifacts.glob("*/model.joblib"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise InputFileError(f"no trained model under {self.artifacts}; run `train` or `run` first")
        return found[-1]


# ------------------------------------------------------------------------------------------ stages


def generate_data(cfg: ChurnConfig, raw_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Simulate the raw sources (and the hidden truth) into `raw_dir`."""
    from level2_churn.simulate import generate

    summary = generate(cfg.simulator, raw_dir, progress=progress)
    return json.loads(summary.model_dump_json())


def ingest_data(raw_dir: Path, clean_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Validate and clean every raw source into `clean_dir` (quarantine and dq_report.json included)."""
    from level2_churn.ingest import load_and_clean

    res = load_and_clean(raw_dir, clean_dir, progress=progress)
    return {"rows_in": res.rows_in, "rows_out": res.rows_out, "quarantined": res.quarantined}


def validate_clean(clean_dir: Path, max_quarantine_share: float) -> dict[str, Any]:
    """Gate between cleaning and features: every source has rows and little was quarantined.

    Raises:
        InputFileError: No data-quality report (ingest did not run).
        DataError: A source is empty or lost more than `max_quarantine_share` of its rows.
    """
    path = Path(clean_dir) / "dq_report.json"
    if not path.is_file():
        raise InputFileError(f"data-quality report not found: {path} (run ingest first)")
    report = json.loads(path.read_text(encoding="utf-8"))
    shares = {}
    for source, counts in report["sources"].items():
        if counts["rows_out"] == 0:
            raise DataError(f"source {source} has no rows left after cleaning")
        shares[source] = counts["quarantined"] / max(counts["rows_in"], 1)
        if shares[source] > max_quarantine_share:
            raise DataError(
                f"source {source}: {shares[source]:.1%} of rows quarantined "
                f"(limit {max_quarantine_share:.0%}); "
                f"see {Path(clean_dir) / 'dq_report.json'}"
            )
    return {"quarantine_share": shares, "rules": len(report.get("rules", []))}


def build_features(clean_dir: Path, out_path: Path, cfg: ChurnConfig, *, progress: bool = True) -> int:
    """Write the labelled point-in-time snapshots to one Parquet file; returns the row count."""
    from level2_churn.features import write_snapshots

    return write_snapshots(clean_dir, out_path, cfg.features, progress=progress)


def read_snapshots(path: Path) -> pd.DataFrame:
    """Read the snapshot table written by `build_features`."""
    if not Path(path).is_file():
        raise InputFileError(f"snapshot table not found: {path} (run features first)")
    return pd.read_parquet(path)


def train_model(
    cfg: ChurnConfig,
    snapshots_path: Path,
    run_dir: Path,
    *,
    artifacts_dir: Path,
    truth_dir: Path | None = None,
    show_progress: bool = True,
    track: bool = True,
) -> dict[str, Any]:
    """All modelling stages on the snapshots; saves ``model.joblib`` and ``modelling.joblib`` in `run_dir`.

    With `track`, every Optuna trial is logged to MLflow (``cfg.mlflow``; SQLite under
    `artifacts_dir` by default).
    """
    from level2_churn.features import feature_columns
    from level2_churn.simulate import oracle_scores
    from level2_churn.splits import walk_forward
    from level2_churn.train import ModelData, run_modelling

    df = read_snapshots(snapshots_path)
    data = ModelData(df, feature_columns(df), id_col="customer_id", date_col="snapshot_date")
    sp = cfg.splits
    plan = walk_forward(
        df["snapshot_date"],
        n_folds=sp.n_folds,
        gap_periods=sp.gap_periods,
        valid_periods=sp.valid_periods,
        test_periods=sp.test_periods,
        min_train_periods=sp.min_train_periods,
    )
    oracle = None
    if truth_dir is not None and (Path(truth_dir) / "hazard").is_dir():
        oracle = oracle_scores(Path(truth_dir), df)
    with _tracking(cfg, artifacts_dir, track) as tracker:
        res = run_modelling(data, plan, cfg, tracker=tracker, oracle=oracle, show_progress=show_progress)
    return _save_training(res, run_dir, tracker)


def train_telco(
    cfg: ChurnConfig, csv: Path, run_dir: Path, *, artifacts_dir: Path, track: bool = True
) -> dict[str, Any]:
    """The modelling stages on a Telco-layout CSV; saves ``model.joblib`` and ``modelling.joblib``.

    With `track`, trials go to the MLflow experiment ``<cfg.mlflow.experiment>-telco``.
    """
    from level2_churn.telco import run_telco

    with _tracking(cfg, artifacts_dir, track, experiment_suffix="-telco") as tracker:
        res = run_telco(csv, cfg, tracker=tracker)
    return _save_training(res, run_dir, tracker)


@contextlib.contextmanager
def _tracking(
    cfg: ChurnConfig, artifacts_dir: Path, track: bool, *, experiment_suffix: str = ""
) -> Iterator[MlflowTracker | None]:
    """The MLflow tracker of ``cfg.mlflow``, active for the block (``None`` when not tracking)."""
    if not track:
        yield None
        return
    uri, artifact_location = cfg.mlflow.resolve(artifacts_dir)
    tracker = MlflowTracker(uri, cfg.mlflow.experiment + experiment_suffix, artifact_location)
    with tracker.active():
        yield tracker


def _save_training(res: ModellingResult, run_dir: Path, tracker: MlflowTracker | None) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_with(run_dir / "model.joblib", lambda p: joblib.dump(res.model, p))
    atomic_write_with(run_dir / "modelling.joblib", lambda p: joblib.dump(res, p))
    return {
        "run_dir": str(run_dir),
        "pr_auc": res.test_metrics["pr_auc"],
        "tracking_uri": tracker.tracking_uri if tracker is not None else None,
    }


def load_result(run_dir: Path) -> ModellingResult:
    """The modelling result saved by `train_model`."""
    path = Path(run_dir) / "modelling.joblib"
    if not path.is_file():
        raise InputFileError(f"no training result in {run_dir} (run train first)")
    return joblib.load(path)


def evaluate_run(cfg: ChurnConfig, run_dir: Path) -> dict[str, Any]:
    """Write ``metrics.json`` for a trained run: test window at the top level, folds under ``cv``."""
    from level2_churn.train import summary_metrics

    res = load_result(run_dir)
    metrics = summary_metrics(res)
    source = res.model.metadata.get("data_file")
    write_metrics(
        run_dir / "metrics.json",
        level=2,
        dataset=_dataset(res),
        headline_metric="pr_auc",
        headline_value=metrics["pr_auc"],
        profile=cfg.profile,
        seed=cfg.seed,
        **({"source": source} if source else {}),
        **metrics,
    )
    return {
        "metrics": str(run_dir / "metrics.json"),
        "baseline_pr_auc": metrics["baseline_test"]["pr_auc"],
        **_headline(metrics),
    }


def report_run(cfg: ChurnConfig, run_dir: Path, *, clean_dir: Path | None = None) -> dict[str, Any]:
    """Write ``report.html`` (and ``figures/``) for a trained run: every curve, choice and table.

    Args:
        cfg: Config (campaign economics for the profit curves).
        run_dir: The trained run.
        clean_dir: Clean simulator data, for the data-quality section (Telco runs have none).
    """
    from level2_churn.report import build_report

    res = load_result(run_dir)
    dataset = _dataset(res)
    data_file = res.model.metadata.get("data_file")
    telco = dataset == "telco"
    report = build_report(
        res,
        run_dir=run_dir,
        econ=Economics(cfg.campaign.contact_cost, cfg.campaign.save_rate, cfg.campaign.clv),
        title="Level 2 — Telco churn" if telco else "Level 2 — customer churn",
        subtitle=f"{dataset}{f' ({data_file})' if data_file else ''}, profile {cfg.profile}, seed {cfg.seed}",
        data_sections=_data_sections(clean_dir) if clean_dir is not None and not telco else [],
        registry=_read_json(run_dir / "registry.json"),
    )
    return {"report": str(report)}


def _dataset(res: ModellingResult) -> str:
    """Where a run's data came from: ``simulator`` or ``telco`` (recorded in the model)."""
    return str(res.model.metadata.get("source", "simulator"))


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "pr_auc",
        "oracle_pr_auc",
        "roc_auc",
        "top_decile_lift",
        "campaign_profit",
        "profit_everybody",
        "profit_random_k",
    )
    return {k: m[k] for k in keys if k in m}


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _data_sections(clean_dir: Path) -> list[tuple[str, str, list[Any]]]:
    path = Path(clean_dir) / "dq_report.json"
    if not path.is_file():
        return []
    report = json.loads(path.read_text(encoding="utf-8"))
    # Plain columns, no index: the reader sees source and rule names, not pandas row numbers.
    sources = pd.DataFrame(report["sources"]).T.rename_axis("source").reset_index()
    rules = pd.DataFrame(report.get("rules", []))
    return [
        (
            "Data quality",
            "Raw sources as the simulator wrote them (duplicates, misspellings, mixed dates, unit mistakes, "
            "late and orphan records); what ingest fixed, dropped or quarantined, per rule.",
            [sources, rules] if len(rules) else [sources],
        )
    ]


def register_model(cfg: ChurnConfig, run_dir: Path, *, artifacts_dir: Path) -> dict[str, Any]:
    """Register the run's model in the MLflow registry and point the configured alias at it."""
    from level2_churn.tracking import register_churn_model
    from level2_churn.train import summary_metrics

    res = load_result(run_dir)
    uri, artifact_location = cfg.mlflow.resolve(artifacts_dir)
    tracker = MlflowTracker(uri, cfg.mlflow.experiment, artifact_location)
    m = summary_metrics(res)
    flat = {k: v for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    params = {**res.best_params, "imbalance": res.imbalance_choice, "calibration": res.calibration_method}
    with tracker.active():
        info: dict[str, Any] = register_churn_model(
            tracker,
            run_dir / "model.joblib",
            name=cfg.mlflow.registered_model,
            alias=cfg.mlflow.alias,
            metrics=flat,
            params=params,
        )
    info["tracking_uri"] = uri
    atomic_write_json(run_dir / "registry.json", info)
    return info


def predict_customers(
    cfg: ChurnConfig, clean_dir: Path, model_path: Path, out_csv: Path, *, snapshot: str = "latest"
) -> dict[str, Any]:
    """Rank the customers active at a snapshot date by churn probability; write the retention list CSV.

    Args:
        cfg: Config (campaign economics).
        clean_dir: Clean data folder.
        model_path: A saved ``model.joblib``.
        out_csv: Where the list goes.
        snapshot: ``latest`` (the end of the data: who to call now) or a date ``YYYY-MM-DD``.

    Columns: ``rank, customer_id, churn_probability, expected_profit, contact``.
    """
    from level2_churn.features import build_scoring_snapshot
    from level2_churn.telco import load_model

    model = load_model(model_path)
    if snapshot == "latest":
        when = None
    else:
        try:
            when = pd.Timestamp(snapshot)
        except (ValueError, TypeError):
            raise DataError(
                f"--snapshot must be 'latest' or a date like 2024-06-01, got {snapshot!r}"
            ) from None
    frame = build_scoring_snapshot(clean_dir, when)
    if frame.empty:
        raise DataError("no active customers at that snapshot date")
    probs = model.predict_proba(frame)
    econ = Economics(cfg.campaign.contact_cost, cfg.campaign.save_rate, cfg.campaign.clv)
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "snapshot_date": pd.to_datetime(frame["snapshot_date"]).dt.date.astype(str),
            "churn_probability": probs,
            "expected_profit": econ.save_rate * econ.clv * probs - econ.contact_cost,
            "contact": probs >= model.threshold,
        }
    )
    out = out.sort_values(["churn_probability", "customer_id"], ascending=[False, True], kind="stable")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    with atomic_path(out_csv) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6f")
    return {
        "path": str(out_csv),
        "customers": len(out),
        "to_contact": int(out["contact"].sum()),
        "snapshot": out["snapshot_date"].iloc[0],
    }


# ------------------------------------------------------------------------------------------ Prefect


def _fingerprint(path: Path) -> str:
    """Names, sizes and modification times of every file under `path` (cheap, changes when data does)."""
    path = Path(path)
    if not path.exists():
        return "missing"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _not_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O failures, never a user's mistake (a missing column stays missing)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # state without a readable result: let the retry policy decide
        return True
    return not isinstance(exc, UserError)


class _IoOptions(TypedDict):
    """``@task`` options of the tasks that read or write files (typed: mypy checks them against ``task``)."""

    retries: int
    retry_delay_seconds: float
    retry_condition_fn: RetryConditionCallable


class _CacheOptions(TypedDict):
    """``@task`` options of the cached tasks."""

    persist_result: bool
    cache_expiration: timedelta


IO: _IoOptions = {"retries": 2, "retry_delay_seconds": 1, "retry_condition_fn": _not_user_error}
CACHE: _CacheOptions = {"persist_result": True, "cache_expiration": timedelta(days=30)}


@task(name="generate", cache_key_fn=lambda ctx, p: _key("generate", p["sim"], p["raw_dir"]), **IO, **CACHE)
def generate_task(sim: dict[str, Any], raw_dir: str, cfg_json: str) -> str:
    generate_data(ChurnConfig.model_validate_json(cfg_json), Path(raw_dir))
    return raw_dir


@task(
    name="ingest",
    cache_key_fn=lambda ctx, p: _key("ingest", _fingerprint(Path(p["raw_dir"])), p["clean_dir"]),
    **IO,
    **CACHE,
)
def ingest_task(raw_dir: str, clean_dir: str) -> str:
    ingest_data(Path(raw_dir), Path(clean_dir))
    return clean_dir


@task(name="validate")
def validate_task(clean_dir: str, max_share: float) -> dict[str, Any]:
    return validate_clean(Path(clean_dir), max_share)


@task(
    name="features",
    cache_key_fn=lambda ctx, p: _key(
        "features", _fingerprint(Path(p["clean_dir"])), p["feature_cfg"], p["out"]
    ),
    **IO,
    **CACHE,
)
def features_task(clean_dir: str, feature_cfg: dict[str, Any], out: str, cfg_json: str) -> str:
    build_features(Path(clean_dir), Path(out), ChurnConfig.model_validate_json(cfg_json))
    return out


@task(name="train")
def train_task(cfg_json: str, snapshots: str, run_dir: str, artifacts: str, truth: str) -> dict[str, Any]:
    cfg = ChurnConfig.model_validate_json(cfg_json)
    return train_model(
        cfg, Path(snapshots), Path(run_dir), artifacts_dir=Path(artifacts), truth_dir=Path(truth)
    )


@task(name="evaluate")
def evaluate_task(cfg_json: str, run_dir: str) -> dict[str, Any]:
    return evaluate_run(ChurnConfig.model_validate_json(cfg_json), Path(run_dir))


@task(name="report")
def report_task(cfg_json: str, run_dir: str, clean_dir: str) -> dict[str, Any]:
    return report_run(ChurnConfig.model_validate_json(cfg_json), Path(run_dir), clean_dir=Path(clean_dir))


@task(name="register", **IO)
def register_task(cfg_json: str, run_dir: str, artifacts: str) -> dict[str, Any]:
    return register_model(
        ChurnConfig.model_validate_json(cfg_json), Path(run_dir), artifacts_dir=Path(artifacts)
    )


@task(name="predict", **IO)
def predict_task(cfg_json: str, clean_dir: str, model: str, out: str) -> dict[str, Any]:
    return predict_customers(
        ChurnConfig.model_validate_json(cfg_json), Path(clean_dir), Path(model), Path(out)
    )


def _cached(task_fn: Any, check: Any, **kwargs: Any) -> str:
    """Run a cached task; if the cache points at outputs that are gone or changed, run it again for real.

    Args:
        task_fn: The Prefect task.
        check: A path that must exist, or a callable returning whether the outputs are still valid.
        **kwargs: The task's arguments.
    """
    valid = check if callable(check) else Path(check).exists
    out = task_fn(**kwargs)
    if not valid():
        out = task_fn.with_options(refresh_cache=True)(**kwargs)
    return str(out)


def _same_simulation(raw_dir: Path, sim: dict[str, Any]) -> Any:
    """Whether `raw_dir` holds the simulation of exactly this config (someone may have regenerated it)."""

    def check() -> bool:
        path = raw_dir / "_truth" / "config.json"
        if not path.is_file():
            return False
        return json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(sim, default=str))

    return check


@flow(name="level2-churn", log_prints=False, validate_parameters=True)
def churn_flow(
    profile: str = "quick",
    root: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    run_dir: str | None = None,
) -> dict[str, Any]:
    """Generate → ingest → validate → features → train → evaluate → register → report → predict.

    Args:
        profile: ``quick`` or ``full``.
        root: Level root holding ``data/`` and ``artifacts/`` (default: the package folder).
        config_path: Optional YAML/TOML config file.
        overrides: Explicit config values (highest precedence).
        run_dir: The run folder to write (default: a new ``artifacts/<timestamp>``).

    Returns:
        Paths and headline numbers of the run.
    """
    cfg = load_config(ChurnConfig, profile=profile, path=config_path, overrides=overrides)
    lay = Layout.at(Path(root) if root else None)
    cfg_json = cfg.model_dump_json()
    sim = cfg.simulator.model_dump(mode="json")
    raw = _cached(
        generate_task,
        _same_simulation(lay.raw, sim),
        sim=sim,
        raw_dir=str(lay.raw),
        cfg_json=cfg_json,
    )
    clean = _cached(ingest_task, lay.clean / "meta.json", raw_dir=raw, clean_dir=str(lay.clean))
    quality = validate_task(clean, cfg.max_quarantine_share)
    snaps = _cached(
        features_task,
        lay.snapshots,
        clean_dir=clean,
        feature_cfg=cfg.features.model_dump(mode="json"),
        out=str(lay.snapshots),
        cfg_json=cfg_json,
    )
    run = Path(run_dir) if run_dir else lay.paths.run_dir()
    trained = train_task(cfg_json, snaps, str(run), str(lay.artifacts), str(Path(raw) / "_truth"))
    evaluated = evaluate_task(cfg_json, str(run))
    registry = register_task(cfg_json, str(run), str(lay.artifacts))
    # After register, so the report names the registered version.
    reported = report_task(cfg_json, str(run), clean)
    predicted = predict_task(cfg_json, clean, str(run / "model.joblib"), str(run / "retention_list.csv"))
    return {
        **evaluated,
        **reported,
        "run_dir": trained["run_dir"],
        "registry": registry,
        "predict": predicted,
        "quality": quality,
    }


def monthly_deployment(name: str = "level2-churn-monthly", profile: str = "full") -> Any:
    """A Prefect deployment of the flow on a monthly cron schedule (03:00 UTC on the 1st).

    Serve it with ``prefect.serve(monthly_deployment())`` or push it to a work pool; building the
    definition needs no server.
    """
    return churn_flow.to_deployment(
        name=name,
        cron=DEPLOYMENT_CRON,
        parameters={"profile": profile},
        tags=["level2", "churn"],
        description="Monthly churn retraining and retention list",
    )
