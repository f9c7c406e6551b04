"""The level's stages as plain functions, and the Prefect 3 flow that chains them.

Stages (the same ones `dvc.yaml` runs through the CLI, each reading the
previous stage's files):

1. ``generate``  simulate the platform -> ``data/raw`` (items, users, impressions, the hidden world)
2. ``split``     clicks as implicit feedback, cut in time -> ``data/interim`` (train/test interactions)
3. ``features``  model inputs -> ``data/processed`` (train/test/items/users + item content features)
4. ``train``     fit each model, save it in the run folder, log it to MLflow
5. ``evaluate``  offline metrics per model (+ expected CTR vs oracle on the simulator),
                 metrics on the MLflow runs, winner registered as ``champion``/``challenger``
6. ``batch``     the champion's top-K for every active user, written atomically to the store
7. ``report``    ``report.html`` and ``metrics.json``

`level3_flow` runs 1-7 in one process for ``python -m level3_recsys run``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from level3_recsys.config import RecsysConfig
from level3_recsys.data import InteractionData
from shared.atomic import atomic_path, atomic_write_json
from shared.errors import DataError, InputFileError
from shared.seeding import seed_everything
from shared.timing import Timer

RAW_TABLES = ("items", "users", "impressions")
WORLD_FILE = "world.pkl"
RUN_FILE = "run.json"


# ---------------------------------------------------------------------- file helpers
def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame to Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """Read a Parquet file a previous stage wrote, with a hint when it is missing."""
    if not path.is_file():
        raise InputFileError(f"{what} not found at {path}; run the previous stage first")
    return pd.read_parquet(path)


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
    """Load the simulated world written by `generate`."""
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


def write_dataset(train: InteractionData, test: InteractionData, out: Path) -> Path:
    """Write train/test interactions plus the shared catalogue and user table."""
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(train.interactions, out / "train.parquet")
    write_parquet(test.interactions, out / "test.parquet")
    write_parquet(train.items, out / "items.parquet")
    write_parquet(train.users, out / "users.parquet")
    return out


def read_dataset(folder: Path, name: str = "") -> tuple[InteractionData, InteractionData]:
    """Read what `write_dataset` wrote (train and test share one catalogue and index)."""
    items = read_parquet(folder / "items.parquet", "item catalogue")
    users = read_parquet(folder / "users.parquet", "user table")
    train = InteractionData.from_frames(
        read_parquet(folder / "train.parquet", "training interactions"), items, users, name=name
    )
    test = train.with_interactions(read_parquet(folder / "test.parquet", "test interactions"))
    return train, test


# ---------------------------------------------------------------------- 3. features
def features(train: InteractionData, test: InteractionData, out: Path) -> dict[str, Any]:
    """Write the model inputs: the dataset, the item content matrix and dataset statistics.

    The content encoder is fitted on the catalogue only (no interactions), so it
    cannot leak the test period. The two-tower and two-stage models refit the
    same encoder inside ``fit`` so a saved model stays self-contained; this
    stage's matrix is what DVC versions and what the report summarises.
    """
    import scipy.sparse as sp

    from level3_recsys.models.content import ContentEncoder

    write_dataset(train, test, out)
    encoder = ContentEncoder().fit(train.items)
    matrix = encoder.transform(train.items)
    with atomic_path(out / "item_features.npz") as tmp, open(tmp, "wb") as fh:
        sp.save_npz(fh, matrix)
    stats = {
        "train": train.summary(),
        "test": test.summary(),
        "item_features": int(matrix.shape[1]),
        "cold_items": len(np.setdiff1d(train.item_ids, train.interactions["item_id"].unique())),
    }
    atomic_write_json(out / "dataset.json", stats)
    return stats


# ---------------------------------------------------------------------- 4. train
@dataclass
class TrainedModels:
    """Models of one run, their training times and MLflow run ids."""

    models: dict[str, Any]
    seconds: dict[str, float]
    mlflow_runs: dict[str, str] = field(default_factory=dict)
    model_uris: dict[str, str] = field(default_factory=dict)


def train_models(
    cfg: RecsysConfig,
    train: InteractionData,
    names: list[str],
    run_dir: Path,
    *,
    log_to_mlflow: bool = True,
    dataset: str = "simulated",
) -> TrainedModels:
    """Fit every named model, save it under ``run_dir/models/<name>`` and log it to MLflow.

    Raises:
        ConfigError: An unknown model name (raised by ``models.build_model``).
    """
    from level3_recsys.models import build_model
    from level3_recsys.tracking import log_training_run, save_recommender

    built = {name: build_model(name, cfg.model_configs.for_model(name)) for name in names}
    result = TrainedModels({}, {})
    tracking = cfg.tracking_settings()
    sample_users = train.interactions["user_id"].drop_duplicates().head(5).tolist()
    for name, model in built.items():
        seed_everything(cfg.seed)
        with Timer() as t:
            model.fit(train)
        result.models[name] = model
        result.seconds[name] = t.seconds
        save_recommender(model, run_dir / "models" / name)
        if log_to_mlflow:
            params = {"model": name, "dataset": dataset, "seed": cfg.seed, "k": cfg.k}
            params.update({f"model.{k}": v for k, v in model.config.model_dump().items()})
            logged = log_training_run(
                model,
                tracking=tracking,
                params=params,
                metrics={"train_seconds": t.seconds},
                sample_users=sample_users,
                k=cfg.k,
                run_name=name,
                tags={"run_dir": str(run_dir)},
            )
            result.mlflow_runs[name] = logged.run_id
            result.model_uris[name] = logged.model_uri
    write_run_file(run_dir, cfg, result, dataset=dataset)
    return result


def write_run_file(run_dir: Path, cfg: RecsysConfig, trained: TrainedModels, *, dataset: str) -> Path:
    """Record what a run holds (models, MLflow ids, where its data lives) for later commands."""
    payload = {
        "dataset": dataset,
        "models": sorted(trained.models),
        "train_seconds": trained.seconds,
        "mlflow_runs": trained.mlflow_runs,
        "model_uris": trained.model_uris,
        "config": cfg.model_dump(mode="json"),
    }
    return atomic_write_json(run_dir / RUN_FILE, payload)


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read a run folder's `run.json`.

    Raises:
        InputFileError: The folder is missing or is not a training run.
    """
    if not run_dir.is_dir():
        raise InputFileError(f"run folder not found: {run_dir}")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise InputFileError(
            f"{run_dir} is not a training run ({RUN_FILE} missing); use a folder `train` wrote"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def load_run_models(run_dir: Path, names: list[str] | None = None) -> dict[str, Any]:
    """Load the saved models of a run (all, or the named ones)."""
    from level3_recsys.tracking import load_saved_recommender

    info = read_run_file(run_dir)
    wanted = names or info["models"]
    unknown = sorted(set(wanted) - set(info["models"]))
    if unknown:
        raise InputFileError(f"run {run_dir} has no model(s) {unknown}; it holds {info['models']}")
    return {name: load_saved_recommender(run_dir / "models" / name) for name in wanted}


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


def log_evaluation(cfg: RecsysConfig, trained: TrainedModels, table: pd.DataFrame) -> dict[str, str]:
    """Add each model's offline metrics to its MLflow run and register the winner.

    Returns:
        The aliases set: ``{"champion": version, "challenger": version}``.
    """
    from level3_recsys.tracking import LoggedRun, mlflow_key, register_winner

    tracking = cfg.tracking_settings()
    tracking.activate()
    client = tracking.client()
    runs = []
    for name, run_id in trained.mlflow_runs.items():
        if name not in table.index:
            continue
        metrics = {
            str(k): float(v)
            for k, v in table.loc[name].items()
            if isinstance(v, int | float | np.floating | np.integer) and np.isfinite(v)
        }
        for key, value in metrics.items():
            client.log_metric(run_id, mlflow_key(key), value)
        runs.append(LoggedRun(run_id, trained.model_uris[name], name, metrics))
    if not runs:
        raise DataError("no evaluated model has an MLflow run to register")
    return register_winner(runs, tracking=tracking, metric=cfg.tracking.selection_metric)


def attach_evaluation(cfg: RecsysConfig, trained: TrainedModels, paths: list[Path]) -> None:
    """Attach the run's comparison table and report to every model's MLflow run."""
    if not trained.mlflow_runs:
        return
    tracking = cfg.tracking_settings()
    tracking.activate()
    client = tracking.client()
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
    features(train, test, cfg.paths().processed)
    return train, test


@task(cache_policy=NO_CACHE)
def _train_task(cfg: RecsysConfig, train: InteractionData, run_dir: Path) -> TrainedModels:
    return train_models(cfg, train, list(cfg.models), run_dir)


@task(cache_policy=NO_CACHE)
def _evaluate_task(
    cfg: RecsysConfig, trained: TrainedModels, train: InteractionData, test: InteractionData, world: Any
) -> tuple[pd.DataFrame, dict[str, str]]:
    table = evaluate(cfg, trained.models, train, test, world)
    aliases = log_evaluation(cfg, trained, table)
    return table, aliases


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
def level3_flow(cfg: RecsysConfig, run_name: str | None = None) -> RunSummary:
    """Simulate -> split -> features -> train -> evaluate -> register -> batch -> report."""
    from level3_recsys.report import build_report, write_run_metrics

    run_dir = cfg.paths().run_dir(run_name)
    world = _generate_task(cfg)
    train, test = _split_features_task(cfg, world)
    trained = _train_task(cfg, train, run_dir)
    table, aliases = _evaluate_task(cfg, trained, train, test, world)
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
