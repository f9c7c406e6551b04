"""The level's stages as plain functions, and the Prefect 3 flow that chains them.

Stages (the same ones `dvc.yaml` runs through the CLI, each reading the
previous stage's files):

1. ``generate``  simulate the platform -> ``data/raw`` (items, users, impressions, the hidden world)
2. ``split``     clicks as implicit feedback, cut in time -> ``data/interim`` (train/test interactions)
3. ``features``  model inputs -> ``data/processed`` (`features.py`: train/test/items/users + item
                 content features)
4. ``train``     fit each model, save it in the run folder, log it to MLflow (`train.py`)
5. ``evaluate``  offline metrics per model (+ expected CTR vs oracle on the simulator), logged on
                 the models' MLflow runs
6. ``register``  the winner registered as ``champion``, the runner-up as ``challenger``
7. ``batch``     the champion's top-K for every active user, written atomically to the store
8. ``report``    ``report.html`` and ``metrics.json``

`level3_flow` runs 1-8 in one process for ``python -m level3_recsys run``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from level3_recsys.config import RecsysConfig
from level3_recsys.data import InteractionData
from level3_recsys.features import build_features, read_dataset, write_dataset, write_parquet
from level3_recsys.train import TrainedModels, train_models
from shared.atomic import atomic_path
from shared.errors import DataError, InputFileError
from shared.seeding import seed_everything

__all__ = [
    "RunSummary",
    "TrainedModels",
    "attach_evaluation",
    "evaluate",
    "evaluated_runs",
    "features",
    "generate",
    "level3_flow",
    "log_evaluation",
    "log_run_metrics",
    "read_dataset",
    "read_world",
    "register",
    "split",
    "train_models",
    "write_dataset",
]

RAW_TABLES = ("items", "users", "impressions")
WORLD_FILE = "world.pkl"


# ---------------------------------------------------------------------- 1. generate
def generate(cfg: RecsysConfig, out_dir: Path | None = None) -> tuple[Any, Path]:
    """Simulate the platform and write its observable tables plus the hidden world.

    Returns:
        The `SimulatedWorld` and the folder written.
    """
    from level3_recsys.simulate import simulate

    seed_everything(cfg.seed)
    world = simulate(cfg.simulator_config())
    out = out_dir or cfg.paths().raw
    out.mkdir(parents=True, exist_ok=True)
    for name in RAW_TABLES:
        write_parquet(getattr(world, name), out / f"{name}.parquet")
    # The hidden truth (tastes, latent vectors) is needed later for expected and oracle CTR.
    with atomic_path(out / WORLD_FILE) as tmp, open(tmp, "wb") as fh:
        pickle.dump(world, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return world, out


def read_world(raw_dir: Path) -> Any:
    """Load the simulated world written by `generate`.

    Raises:
        InputFileError: `generate` has not written the folder.
    """
    path = raw_dir / WORLD_FILE
    if not path.is_file():
        raise InputFileError(f"no simulated world at {path}; run `python -m level3_recsys generate` first")
    with open(path, "rb") as fh:
        return pickle.load(fh)


# ---------------------------------------------------------------------- 2. split
def split(cfg: RecsysConfig, world: Any) -> tuple[InteractionData, InteractionData]:
    """Clicks as implicit feedback, split in time: the last ``split.test_days`` days test."""
    from level3_recsys.split import time_split

    return time_split(
        world.interaction_data(),
        test_days=cfg.split.test_days,
        test_users=cfg.split.test_users,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------- 3. features, 4. train
# Both stages live in their own modules (`features.build_features`, `train.train_models`);
# `features` is the stage's name here, as the other stages' are.
features = build_features


# ---------------------------------------------------------------------- 5. evaluate
def evaluate(
    cfg: RecsysConfig,
    models: dict[str, Any],
    train: InteractionData,
    test: InteractionData,
    world: Any | None = None,
) -> pd.DataFrame:
    """One row per model: ranking metrics, coverage, novelty, bias, cold start and CTR vs oracle."""
    from level3_recsys.evaluate import evaluate_models

    table = evaluate_models(models, train, test, world=world, k=cfg.k)
    if "model" in table.columns:
        table = table.set_index("model")
    return table


def evaluated_runs(trained: TrainedModels, table: pd.DataFrame) -> list[Any]:
    """Each evaluated model's MLflow run with its finite offline metrics (`tracking.LoggedRun`).

    Raises:
        DataError: No evaluated model has an MLflow run (trained with ``--no-mlflow``).
    """
    from level3_recsys.tracking import LoggedRun
    from shared.tracking import finite_metrics

    runs = [
        LoggedRun(run_id, trained.model_uris[name], name, finite_metrics(table.loc[name].to_dict()))
        for name, run_id in trained.mlflow_runs.items()
        if name in table.index
    ]
    if not runs:
        raise DataError("no evaluated model has an MLflow run (train with MLflow logging on)")
    return runs


def log_run_metrics(cfg: RecsysConfig, trained: TrainedModels, table: pd.DataFrame) -> list[Any]:
    """Add each model's offline metrics to its MLflow run.

    Returns:
        The runs with their metrics (`tracking.LoggedRun`), ready for `register`.
    """
    from level3_recsys.tracking import log_metrics_to_run

    runs = evaluated_runs(trained, table)
    tracking = cfg.tracking_settings()
    for run in runs:
        log_metrics_to_run(tracking, run.run_id, run.metrics)
    return runs


def register(cfg: RecsysConfig, runs: list[Any]) -> dict[str, str]:
    """Register the best run by the selection metric as ``champion``, the runner-up ``challenger``.

    Returns:
        The aliases set: ``{"champion": version, "challenger": version}``.
    """
    from level3_recsys.tracking import register_winner

    return register_winner(runs, tracking=cfg.tracking_settings(), metric=cfg.tracking.selection_metric)


def log_evaluation(cfg: RecsysConfig, trained: TrainedModels, table: pd.DataFrame) -> dict[str, str]:
    """Add each model's offline metrics to its MLflow run and register the winner.

    Returns:
        The aliases set: ``{"champion": version, "challenger": version}``.
    """
    return register(cfg, log_run_metrics(cfg, trained, table))


def attach_evaluation(cfg: RecsysConfig, trained: TrainedModels, paths: list[Path]) -> None:
    """Attach the run's comparison table and report to every model's MLflow run."""
    if not trained.mlflow_runs:
        return
    client = cfg.tracking_settings().client()
    for run_id in trained.mlflow_runs.values():
        for path in paths:
            if path.is_file():
                client.log_artifact(run_id, str(path), artifact_path="evaluation")


# ---------------------------------------------------------------------- the flow
@dataclass
class RunSummary:
    """What `level3_flow` produced."""

    run_dir: Path
    report: Path
    metrics: Path
    table: pd.DataFrame
    aliases: dict[str, str]
    batch: dict[str, Any]
    headline_metric: str
    headline_value: float
    best_model: str


@task(cache_policy=NO_CACHE)
def _generate_task(cfg: RecsysConfig) -> Any:
    return generate(cfg)[0]


@task(cache_policy=NO_CACHE)
def _split_features_task(cfg: RecsysConfig, world: Any) -> tuple[InteractionData, InteractionData]:
    train, test = split(cfg, world)
    write_dataset(train, test, cfg.paths().interim)
    build_features(train, test, cfg.paths().processed)
    return train, test


@task(cache_policy=NO_CACHE)
def _train_task(cfg: RecsysConfig, train: InteractionData, run_dir: Path) -> TrainedModels:
    return train_models(cfg, train, list(cfg.models), run_dir)


@task(cache_policy=NO_CACHE)
def _evaluate_task(
    cfg: RecsysConfig, trained: TrainedModels, train: InteractionData, test: InteractionData, world: Any
) -> tuple[pd.DataFrame, list[Any]]:
    table = evaluate(cfg, trained.models, train, test, world)
    return table, log_run_metrics(cfg, trained, table)


@task(cache_policy=NO_CACHE)
def _register_task(cfg: RecsysConfig, runs: list[Any]) -> dict[str, str]:
    return register(cfg, runs)


@task(cache_policy=NO_CACHE)
def _batch_task(cfg: RecsysConfig, train: InteractionData) -> dict[str, Any]:
    from level3_recsys.batch import run_batch

    result = run_batch(
        tracking=cfg.tracking_settings(),
        store_url=cfg.store_url(),
        interactions=train.interactions,
        k=cfg.batch.k,
        active_days=cfg.batch.active_days,
        chunk_size=cfg.batch.chunk_size,
        show_progress=cfg.show_progress,
    )
    return {**result.batch.__dict__, "store_url": cfg.store_url(), "seconds": result.seconds}


@flow(name="level3-recsys", log_prints=True)
def level3_flow(cfg: RecsysConfig, out: Path | None = None) -> RunSummary:
    """Simulate -> split -> features -> train -> evaluate -> register -> batch -> report.

    Args:
        cfg: The run's config (data and artifacts folders included).
        out: The run folder to write (default: a new timestamped folder under the artifacts).
    """
    from level3_recsys.report import build_report, write_run_metrics

    run_dir = out if out is not None else cfg.paths().run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    world = _generate_task(cfg)
    train, test = _split_features_task(cfg, world)
    trained = _train_task(cfg, train, run_dir)
    table, runs = _evaluate_task(cfg, trained, train, test, world)
    aliases = _register_task(cfg, runs)
    batch_info = _batch_task(cfg, train)
    table.to_csv(run_dir / "comparison.csv")
    metrics_path, best, value = write_run_metrics(
        run_dir, table, metric=cfg.tracking.selection_metric, dataset="simulated", extra={"batch": batch_info}
    )
    report = build_report(
        run_dir,
        table,
        title="Level 3 — media recommendations (simulated platform)",
        train_seconds=trained.seconds,
        aliases=aliases,
        batch=batch_info,
        dataset=train.summary(),
    )
    # metrics.json itself is not attached: its numbers are the runs' MLflow metrics already, and a
    # second file of that name under artifacts/ would confuse `scripts/run_levels.py`.
    attach_evaluation(cfg, trained, [run_dir / "comparison.csv", report])
    return RunSummary(
        run_dir, report, metrics_path, table, aliases, batch_info, cfg.tracking.selection_metric, value, best
    )
