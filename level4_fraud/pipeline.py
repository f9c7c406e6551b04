"""The level's stages as plain functions, and the Prefect flow that chains them (``run``).

1. ``generate``   simulate transactions into a folder in the Handbook's layout (`simulate.py`)
2. ``features``   point-in-time features and the prequential folds (`datasets.py`); the same
                  features are also materialised into the Feast store of the run folder
                  (`feature_store.py`, optional: ``stages.feature_store``)
3. ``train``      every baseline on every fold: validation models and final models (`train.py`)
4. ``deep``       the deep stage, when `level4_fraud.deep` exists and ``stages.deep`` is on:
                  PyTorch models on every fold (their scores join the ensemble's candidates),
                  then on fold 0 distillation of the ensemble, quantization, ONNX, LoRA, Ray
5. ``evaluate``   ensemble, validation thresholds and test metrics per fold, comparison table
6. ``register``   the run logged to MLflow, the ensemble registered with alias ``champion``
7. ``report``     ``report.html`` (`report.py`) and ``metrics.json``

The seam of stage 4 is `deep_stage`: it calls ``level4_fraud.deep.run_deep_stage(fold, cfg,
run_dir, ...)`` twice — on every fold with only the models switched on (``prior`` keeps them),
then on fold 0 with the ensemble as teacher (``teacher_scores``) for the fast path, LoRA and Ray.
The first calls' ``scores`` (``{model: {"valid", "test"}}``, aligned with ``fold.valid`` and
``fold.test``) become ensemble candidates; the final models are saved under ``RUN/deep/models``,
from where ``predict`` scores them when the ensemble picked them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from level4_fraud import data, schema
from level4_fraud.config import FraudConfig
from level4_fraud.datasets import FoldData, default_start, feature_frame, prequential_fold_data
from level4_fraud.predict import load_run, side_tables
from level4_fraud.simulate import TRANSACTIONS_DIR, SimulationSummary, simulate_to_folder
from level4_fraud.train import (
    ENSEMBLE,
    FoldRun,
    add_members,
    choose_thresholds,
    comparison_table,
    ensemble_candidates,
    evaluate_fold,
    fit_baselines,
    fit_fold_ensemble,
    save_run,
    write_comparison,
    write_run_metrics,
    write_scores,
)
from shared.errors import ConfigError, InputFileError
from shared.seeding import seed_everything
from shared.tracking import MlflowTracker

DATASET = "simulated"


@dataclass
class RunSummary:
    """What ``run`` produced (printed by the CLI)."""

    run_dir: Path
    table: pd.DataFrame
    metrics: Path
    report: Path | None
    headline_value: float
    registered: dict[str, str] | None = None
    deep: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- 1. generate
def generate(cfg: FraudConfig, out: Path | None = None) -> tuple[SimulationSummary, Path]:
    """Simulate into ``out`` (default ``data/raw/simulation``): ``transactions/`` daily files and
    the customer and terminal tables."""
    seed_everything(cfg.seed)
    folder = out or cfg.paths().raw / "simulation"
    summary = simulate_to_folder(cfg.simulator_config(), folder, progress=cfg.show_progress)
    return summary, folder


def read_simulation(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """Transactions (and side tables) of a `generate` folder or of any Handbook-layout folder."""
    tx_dir = folder / TRANSACTIONS_DIR if (folder / TRANSACTIONS_DIR).is_dir() else folder
    tx = data.read_fdh_folder(tx_dir)
    customers, terminals = side_tables(tx_dir)
    return tx, customers, terminals


# ---------------------------------------------------------------------------------- 2. features
def features(
    cfg: FraudConfig,
    tx: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
) -> list[FoldData]:
    """Point-in-time features of every transaction, cut into the prequential folds."""
    frame, spec = feature_frame(tx, cfg.features, customers=customers, terminals=terminals)
    start = cfg.start_date_training or default_start(frame, cfg.evaluation)
    return prequential_fold_data(frame, spec, start, cfg.evaluation)


def check_servable_windows(cfg: FraudConfig) -> None:
    """Refuse a run whose feature windows the Feast repository does not serve.

    Serving reads the repository's windows; a run trained on others would be served features it
    never saw.

    Raises:
        ConfigError: ``features.windows`` differs from the repository's ``WINDOWS_DAYS``.
    """
    from level4_fraud.feature_repo.feature_views import WINDOWS_DAYS

    if sorted(cfg.features.windows) != sorted(WINDOWS_DAYS):
        raise ConfigError(
            f"features.windows={list(cfg.features.windows)} but the Feast repository serves windows "
            f"{list(WINDOWS_DAYS)}: use those, or set stages.feature_store=false"
        )


def feature_store_stage(
    cfg: FraudConfig,
    tx: pd.DataFrame,
    customers: pd.DataFrame | None,
    terminals: pd.DataFrame | None,
    run_dir: Path,
) -> dict[str, Any]:
    """Write the batch sources into the run's Feast store, apply it and materialise the online
    store up to the end of the data (what the real-time path reads). Returns timings and counts."""
    from level4_fraud import feature_store as fst

    check_servable_windows(cfg)
    t0 = time.perf_counter()
    store = fst.FraudFeatureStore(run_dir, cfg.feature_store_config())
    sources = fst.sources_from_transactions(
        tx, customers=customers, terminals=terminals, delay_days=cfg.features.delay_days
    )
    store.write_sources(**sources)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Feast: "on demand feature view is an experimental feature"
        views = store.apply()
    t1 = time.perf_counter()
    # From the first day's midnight: the profile sources (home and terminal coordinates) are
    # stamped then, before the first transaction, and a later start would leave them out.
    start = tx[schema.TX_DATETIME].min().normalize().to_pydatetime()
    end = (tx[schema.TX_DATETIME].max().normalize() + pd.Timedelta(days=1)).to_pydatetime()
    # Feast prints a progress line per view on stdout; the flow prints its own summary.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.materialize(start, end)
    t2 = time.perf_counter()
    return {
        "path": str(store.layout.root) if hasattr(store, "layout") else str(run_dir / "feature_store"),
        "views": views,
        "apply_seconds": t1 - t0,
        "materialize_seconds": t2 - t1,
    }


# ---------------------------------------------------------------------------------- 3-5
def train_fold(cfg: FraudConfig, fold: FoldData) -> FoldRun:
    """Every baseline of the config on one fold (validation and final models)."""
    return fit_baselines(fold, cfg.models, cfg.baselines, seed=cfg.seed)


def evaluate_runs(cfg: FraudConfig, runs: list[FoldRun]) -> pd.DataFrame:
    """Ensemble, thresholds and test metrics of every fold; the comparison table."""
    for run in runs:
        fit_fold_ensemble(run, cfg.ensemble, candidates=ensemble_candidates(cfg, run))
        choose_thresholds(run, cfg.evaluation)
        evaluate_fold(run, cfg.evaluation)
    return comparison_table(runs)


def deep_available() -> bool:
    """Whether the deep stage's module is part of this checkout."""
    return importlib.util.find_spec("level4_fraud.deep") is not None


def deep_stage(
    cfg: FraudConfig,
    runs: list[FoldRun],
    run_dir: Path,
    *,
    tracker: MlflowTracker | None = None,
) -> dict[str, Any] | None:
    """The seam of the deep stage (see the module docstring); None when it is not built.

    The PyTorch models' scores join the folds (fold 0 only unless ``stages.deep_all_folds``);
    fold 0's ensemble — over the baselines, or over every model with ``deep_in_ensemble`` — is
    the teacher of the fast path (distillation, int8, ONNX); LoRA and Ray run on fold 0.
    """
    if not deep_available():
        return None
    from level4_fraud import deep

    dcfg = deep.resolve_config(cfg.deep_config() or {})
    models_only = dcfg.model_copy(
        update={
            "fast_path": dcfg.fast_path.model_copy(update={"enabled": False}),
            "lora": dcfg.lora.model_copy(update={"enabled": False}),
            "ray": dcfg.ray.model_copy(update={"enabled": False}),
            "write_tables": False,
        }
    )
    lead = runs[0]
    first = deep.run_deep_stage(lead.fold, models_only, run_dir, feature_cfg=cfg.features)
    add_members(lead, first["scores"])
    if cfg.stages.deep_all_folds:
        for run in runs[1:]:
            add_members(
                run, deep.run_deep_stage(run.fold, models_only, None, feature_cfg=cfg.features)["scores"]
            )
    fit_fold_ensemble(lead, cfg.ensemble, candidates=ensemble_candidates(cfg, lead))
    assert lead.ensemble is not None
    ensemble = lead.ensemble
    frame = lead.fold.frame

    def predict_rows(labels: pd.Index) -> np.ndarray:
        x = frame.loc[labels, lead.fold.spec.columns]
        scores = {m: model.predict_proba(x) for m, model in lead.final.items() if m in ensemble.members}
        if any(m not in scores for m in ensemble.members):
            scores.update(deep.member_scores(first, frame, labels))
        return ensemble.predict_proba(scores)

    teacher = {
        "name": ENSEMBLE,
        "valid": lead.valid[ENSEMBLE],
        "test": lead.test[ENSEMBLE],
        "predict_rows": predict_rows,
    }
    return deep.run_deep_stage(
        lead.fold,
        dcfg,
        run_dir,
        teacher_scores=teacher,
        prior=first,
        tracker=tracker,
        feature_cfg=cfg.features,
    )


# ---------------------------------------------------------------------------------- 6. register
def log_and_register(
    cfg: FraudConfig,
    run_dir: Path,
    table: pd.DataFrame,
    *,
    register: bool = True,
    example: pd.DataFrame | None = None,
) -> dict[str, str] | None:
    """Log the run to MLflow (settings, per-model test metrics, the run folder's files) and
    register the ensemble as a new version of the level's model with alias ``champion``."""
    import mlflow

    from level4_fraud.predict import log_pyfunc

    uri, root = cfg.mlflow_store()
    tracker = MlflowTracker(uri, cfg.tracking.experiment, root or None)
    with (
        tracker.active(),
        tracker.start_run(run_dir.name, tags={"level": "4", "profile": cfg.profile}) as active,
    ):
        tracker.log_params(
            {
                "profile": cfg.profile,
                "seed": cfg.seed,
                "models": ",".join(cfg.models),
                "n_folds": cfg.evaluation.n_folds,
                "feature_set": cfg.features.feature_set,
                "n_customers": cfg.simulator.n_customers,
                "nb_days": cfg.simulator.nb_days,
            }
        )
        for model, row in table.iterrows():
            tracker.log_metrics({f"{model}.{k}": v for k, v in row.items() if not str(k).endswith("_std")})
        # Not named metrics.json in the store: `make levelN` reads the newest metrics.json under
        # the level's artifacts, and the MLflow store lives there too.
        for name, as_name in (
            ("comparison.csv", "comparison.csv"),
            ("metrics.json", "run_metrics.json"),
            ("run.json", "run.json"),
            ("report.html", "report.html"),
        ):
            if (run_dir / name).is_file():
                mlflow.log_text((run_dir / name).read_text(encoding="utf-8"), as_name)
        model_uri = log_pyfunc(run_dir, example)
        if not register:
            return {"run_id": active.info.run_id, "uri": model_uri}
        reg = tracker.register(model_uri, name=cfg.tracking.registered_model, alias=cfg.tracking.alias)
        return reg


# ---------------------------------------------------------------------------------- the flow
@task(cache_policy=NO_CACHE)
def _generate_task(cfg: FraudConfig, out: Path | None) -> Path:
    return generate(cfg, out)[1]


@task(cache_policy=NO_CACHE)
def _features_task(cfg: FraudConfig, folder: Path) -> tuple[list[FoldData], pd.DataFrame, Any, Any]:
    tx, customers, terminals = read_simulation(folder)
    return features(cfg, tx, customers, terminals), tx, customers, terminals


@task(cache_policy=NO_CACHE)
def _train_task(cfg: FraudConfig, fold: FoldData) -> FoldRun:
    return train_fold(cfg, fold)


def finish_run(
    cfg: FraudConfig,
    runs: list[FoldRun],
    run_dir: Path,
    *,
    dataset: str = DATASET,
    extra: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Evaluate, then write scores, comparison, the deployable model and ``metrics.json``."""
    table = evaluate_runs(cfg, runs)
    write_scores(run_dir, runs)
    write_comparison(run_dir, table)
    save_run(run_dir, runs[0], feature_cfg=cfg.features, dataset=dataset, extra={"profile": cfg.profile})
    metrics = write_run_metrics(
        run_dir,
        table,
        dataset=dataset,
        runs=runs,
        extra={"review_cost": cfg.evaluation.review_cost, "profile": cfg.profile, **(extra or {})},
    )
    return table, metrics


@flow(name="level4-fraud", log_prints=False)
def level4_flow(cfg: FraudConfig, out: Path | None = None, data_dir: Path | None = None) -> RunSummary:
    """simulate -> features (+ Feast) -> train -> deep -> evaluate -> register -> report."""
    from level4_fraud.report import build_report

    if cfg.stages.feature_store:
        check_servable_windows(cfg)  # before minutes of simulation and features
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    run_dir = out or cfg.paths().run_dir(f"run-{cfg.profile}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if data_dir is None:
        data_dir = _generate_task(cfg, run_dir / "data")
    elif not data_dir.is_dir():
        raise InputFileError(f"{data_dir}: no such folder")
    seconds["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    folds, tx, customers, terminals = _features_task(cfg, data_dir)
    seconds["features"] = time.perf_counter() - t
    extra: dict[str, Any] = {}
    if cfg.stages.feature_store:
        t = time.perf_counter()
        extra["feature_store"] = feature_store_stage(cfg, tx, customers, terminals, run_dir)
        seconds["feature_store"] = time.perf_counter() - t

    t = time.perf_counter()
    runs = [_train_task(cfg, fold) for fold in folds]
    seconds["train"] = time.perf_counter() - t

    deep_result = None
    if cfg.stages.deep:
        t = time.perf_counter()
        deep_result = deep_stage(cfg, runs, run_dir)
        seconds["deep"] = time.perf_counter() - t

    t = time.perf_counter()
    if deep_result is not None:
        extra["deep"] = {"timings": deep_result.get("timings"), "skipped": deep_result.get("skipped")}
    extra["seconds"] = seconds
    table, metrics = finish_run(cfg, runs, run_dir, extra=extra)
    seconds["evaluate"] = time.perf_counter() - t

    report = None
    if cfg.stages.report:
        t = time.perf_counter()
        report = build_report(run_dir)
        seconds["report"] = time.perf_counter() - t

    registered = None
    if cfg.tracking.enabled:
        t = time.perf_counter()
        example = runs[0].fold.test.head(5)
        registered = log_and_register(cfg, run_dir, table, register=cfg.stages.registry, example=example)
        seconds["register"] = time.perf_counter() - t
    load_run(run_dir)  # the deployable model loads back
    return RunSummary(
        run_dir,
        table,
        metrics,
        report,
        float(table.loc[ENSEMBLE, "average_precision"]),
        registered,
        deep_result,
        seconds,
    )
