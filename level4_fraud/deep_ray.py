"""Section 5 on one fold: Ray Tune searches and one Ray Train data-parallel run, in one Ray session.

* **Ray Tune** (`distributed.tune`): Optuna's TPE proposes, ASHA stops hopeless trials early.
  LightGBM is searched on the fold's feature columns, the tabular MLP on the same rows through
  its `TabularPreprocessor`; both train on ``valid_train`` and report Average Precision on
  ``valid`` (the rows the baselines and the ensemble choose their settings on, never the test
  days).
* **Ray Train** (`distributed.train`): the tabular MLP trained by two DDP workers (gloo on CPU,
  NCCL when every worker gets a GPU; the same code), on ``valid_train`` with validation AP on
  ``valid`` each epoch; the kept model then scores the test rows, for the record.

Every part is switchable, and the budgets are small on the quick profile: the point there is the
machinery (a search that stops trials, two workers that end identical), not the search's
result. With an `MlflowTracker`, each search is logged as a parent run with a nested run per
trial and the data-parallel run with its model.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from level4_fraud.datasets import FoldData
from level4_fraud.deep_models import fold_test_ap
from level4_fraud.distributed.cluster import RayConfig, ray_session
from level4_fraud.distributed.train import DataParallelConfig, train_data_parallel
from level4_fraud.distributed.tune import (
    LightGBMSearch,
    TabularMLPFactory,
    TorchSearch,
    TuneOutcome,
    TuneSettings,
    tune_lightgbm,
    tune_torch,
)
from level4_fraud.models.torch_models import TabularMLP, TabularMLPConfig, TabularPreprocessor
from level4_fraud.models.training import TrainConfig, predict_proba
from shared.tracking import MlflowTracker


class RayStageConfig(BaseModel):
    """Ray settings of the stage (quick profile; full: ``tune.num_samples=40,
    max_concurrent_trials=8``, ``lightgbm.max_rounds=1000, rounds_per_report=50``,
    ``torch.max_epochs=30``, ``data_parallel.train.epochs=40``, ``cluster.num_cpus=None``).

    Args:
        enabled: Run this part of the stage at all.
        tune_lightgbm: Search LightGBM.
        tune_mlp: Search the tabular MLP.
        data_parallel: Train the tabular MLP with Ray Train.
        cluster: Local Ray (CPUs) or the address of a cluster to join.
        tune: Trials, concurrency, ASHA's rungs (shared by both searches).
        lightgbm: Rounds per LightGBM trial and between reports.
        torch: Epochs per MLP trial.
        train: Workers, devices and training of the data-parallel run.
        mlp_hidden: Hidden layers of the data-parallel MLP.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    tune_lightgbm: bool = True
    tune_mlp: bool = True
    data_parallel: bool = True
    cluster: RayConfig = Field(default_factory=RayConfig)
    tune: TuneSettings = Field(
        default_factory=lambda: TuneSettings(num_samples=3, max_concurrent_trials=2, name="l4-deep-tune")
    )
    lightgbm: LightGBMSearch = Field(
        default_factory=lambda: LightGBMSearch(max_rounds=60, rounds_per_report=20)
    )
    torch: TorchSearch = Field(default_factory=lambda: TorchSearch(max_epochs=3))
    train: DataParallelConfig = Field(
        default_factory=lambda: DataParallelConfig(
            train=TrainConfig(epochs=3, patience=2, batch_size=256, learning_rate=5e-3), name="l4-deep-ddp"
        )
    )
    mlp_hidden: list[int] = Field(default_factory=lambda: [64, 32])


@dataclass
class RayOutcome:
    """What the Ray part did.

    Attributes:
        tune: One row per trial of every search: ``search`` (``lightgbm`` or ``mlp``),
            ``trial_id``, ``val_ap`` (the trial's best), ``best_step``, ``steps``,
            ``stopped_early`` (ASHA stopped it), ``seconds`` and the sampled hyperparameters.
        best: Per search, the best configuration (with its rounds or epochs) and its ``val_ap``.
        data_parallel: One row: ``world_size``, ``backend``, ``device``, ``best_epoch``,
            ``best_val_ap``, ``test_ap`` (the kept model on the evaluated test rows),
            ``param_spread`` (largest weight difference between workers), ``seconds``.
        resources: The Ray cluster's resources during the session.
        seconds: Per part (``ray_start``, ``tune_lightgbm``, ``tune_mlp``, ``data_parallel``).
    """

    tune: pd.DataFrame = field(default_factory=pd.DataFrame)
    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_parallel: pd.DataFrame = field(default_factory=pd.DataFrame)
    resources: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _trials(search: str, outcome: TuneOutcome) -> pd.DataFrame:
    return outcome.results.assign(search=search)


def run_ray(
    fold: FoldData,
    cfg: RayStageConfig,
    *,
    tracker: MlflowTracker | None = None,
    seed: int = 42,
) -> RayOutcome:
    """Tune LightGBM and the MLP, and train the MLP data-parallel, inside one `ray_session`.

    Args:
        fold: The fold (``valid_train`` trains, ``valid`` scores every trial and epoch).
        cfg: Which parts, budgets, where Ray runs.
        tracker: When given, every search and the data-parallel run are logged to MLflow.
        seed: Seed of the searches and of the data-parallel training.

    Returns:
        The per-trial table, the best configurations and the data-parallel summary.
    """
    out = RayOutcome()
    prep = TabularPreprocessor(fold.spec.numeric, fold.spec.categorical).fit(fold.valid_train)
    inputs = list(prep.transform(fold.valid_train))
    val_inputs = list(prep.transform(fold.valid))
    y, y_val = fold.y("valid_train"), fold.y("valid")
    tune_settings = cfg.tune.model_copy(update={"seed": seed})
    trials: list[pd.DataFrame] = []
    start = time.perf_counter()
    with ray_session(cfg.cluster) as session:
        out.resources = dict(session.resources)
        out.seconds["ray_start"] = time.perf_counter() - start
        if cfg.tune_lightgbm:
            t0 = time.perf_counter()
            res = tune_lightgbm(
                fold.X("valid_train"), y, fold.X("valid"), y_val, session, tune_settings, cfg.lightgbm,
                tracker=tracker, run_name="deep-tune-lightgbm",
            )  # fmt: skip
            out.seconds["tune_lightgbm"] = time.perf_counter() - t0
            trials.append(_trials("lightgbm", res))
            out.best["lightgbm"] = {**res.best_config, "val_ap": res.best_score}
        if cfg.tune_mlp:
            t0 = time.perf_counter()
            factory = TabularMLPFactory(len(prep.numeric_cols), prep.cardinalities)
            res = tune_torch(
                inputs, y, val_inputs, y_val, session, factory, tune_settings, cfg.torch,
                tracker=tracker, run_name="deep-tune-mlp",
            )  # fmt: skip
            out.seconds["tune_mlp"] = time.perf_counter() - t0
            trials.append(_trials("mlp", res))
            out.best["mlp"] = {**res.best_config, "val_ap": res.best_score}
        if cfg.data_parallel:
            t0 = time.perf_counter()
            model_cfg = TabularMLPConfig(
                n_numeric=len(prep.numeric_cols), cardinalities=prep.cardinalities, hidden=cfg.mlp_hidden
            )
            # A partial of the class and its config pickles to the workers (a lambda would not).
            factory_dp = functools.partial(TabularMLP, model_cfg)
            train_cfg = cfg.train.model_copy(
                update={"train": cfg.train.train.model_copy(update={"seed": seed})}
            )
            dp = train_data_parallel(
                factory_dp, inputs, y, session, train_cfg, val=(val_inputs, y_val), tracker=tracker,
                run_name="deep-data-parallel",
            )  # fmt: skip
            out.seconds["data_parallel"] = time.perf_counter() - t0
            test_ap = math.nan
            if len(fold.test):
                test_ap = fold_test_ap(fold, predict_proba(dp.model, list(prep.transform(fold.test))))
            out.data_parallel = pd.DataFrame(
                [
                    {
                        "world_size": dp.world_size,
                        "backend": dp.backend,
                        "device": dp.device,
                        "best_epoch": dp.best_epoch,
                        "best_val_ap": dp.best_val_ap,
                        "test_ap": test_ap,
                        "param_spread": dp.param_spread,
                        "seconds": dp.seconds,
                    }
                ]
            )
    if trials:
        table = pd.concat(trials, ignore_index=True)
        first = ["search", "trial_id", "val_ap", "best_step", "steps", "stopped_early", "seconds"]
        out.tune = table[[*first, *(c for c in table.columns if c not in first)]]
    out.seconds["total"] = time.perf_counter() - start
    return out
