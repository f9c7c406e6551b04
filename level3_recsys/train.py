"""Training: fit the models of `models/`, save them in a run folder, log them to MLflow.

A run folder (``python -m level3_recsys train --out RUN``) holds

* ``models/<name>/``: each fitted model as `tracking.save_recommender` wrote it;
* ``run.json``: the dataset it was trained on, the models, their training seconds, their
  MLflow run ids and model URIs, and the full config.

`read_run_file` and `load_run_models` are how `evaluate`, `register` and `predict`
read a run folder back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from level3_recsys.config import RecsysConfig
from level3_recsys.data import InteractionData
from shared.atomic import atomic_write_json
from shared.errors import ConfigError, InputFileError
from shared.seeding import seed_everything
from shared.timing import Timer

RUN_FILE = "run.json"
# The default model per dataset: the best on the simulator, and on MovieLens the one the
# inner validation could not beat (README, "MovieLens: the Microsoft Recommenders protocol").
BEST_MODEL = {"simulated": "two_stage", "movielens": "ease"}


@dataclass
class TrainedModels:
    """Models of one run, their training times and MLflow run ids."""

    models: dict[str, Any]
    seconds: dict[str, float]
    mlflow_runs: dict[str, str] = field(default_factory=dict)
    model_uris: dict[str, str] = field(default_factory=dict)


def model_names(cfg: RecsysConfig, model: str | None, dataset: str) -> list[str]:
    """The models a ``train`` call fits: one name, ``all`` (the config's list) or the dataset's best.

    Raises:
        ConfigError: An unknown model name.
    """
    from level3_recsys.models import MODEL_NAMES

    name = model or BEST_MODEL[dataset]
    names = list(cfg.models) if name == "all" else [name]
    for n in names:
        if n not in MODEL_NAMES:
            raise ConfigError(f"unknown model {n!r}; choose one of: {', '.join(MODEL_NAMES)} or all")
    return names


def movielens_config(cfg: RecsysConfig) -> RecsysConfig:
    """`cfg` with the model settings tuned on the MovieLens protocol.

    Ratings have no meaningful time order, so the simulator's settings (decay half-lives,
    time windows) do not apply; `benchmark.benchmark_configs` holds the ones chosen on the
    inner validation splits.
    """
    from level3_recsys.benchmark import benchmark_configs

    tuned = benchmark_configs(cfg.seed, cfg.show_progress)
    merged = cfg.model_configs.model_validate({**cfg.model_configs.model_dump(), **tuned})
    return cfg.model_copy(update={"model_configs": merged})


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

    Every model is fitted after reseeding with ``cfg.seed``, so a model's result does not
    depend on which models were trained before it.

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
    """Read a run folder's ``run.json``.

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
    info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return info


def load_run_models(run_dir: Path, names: list[str] | None = None) -> dict[str, Any]:
    """Load the saved models of a run (all, or the named ones).

    Raises:
        InputFileError: The folder is not a run, or it lacks one of the named models.
    """
    from level3_recsys.tracking import load_saved_recommender

    info = read_run_file(run_dir)
    wanted = names or info["models"]
    unknown = sorted(set(wanted) - set(info["models"]))
    if unknown:
        raise InputFileError(f"run {run_dir} has no model(s) {unknown}; it holds {info['models']}")
    return {name: load_saved_recommender(run_dir / "models" / name) for name in wanted}


def trained_from_run(run_dir: Path) -> TrainedModels:
    """A run folder's models with their MLflow ids, as `train_models` returned them."""
    info = read_run_file(run_dir)
    return TrainedModels(
        load_run_models(run_dir),
        info["train_seconds"],
        info.get("mlflow_runs", {}),
        info.get("model_uris", {}),
    )
