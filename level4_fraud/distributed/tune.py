"""Hyperparameter search on Ray Tune: Optuna proposes, ASHA stops the hopeless, MLflow records.

Two searches share one shape:

- `tune_lightgbm`: LightGBM on a feature frame; a trial reports validation Average Precision
  every ``rounds_per_report`` boosting rounds (``rounds`` is ASHA's time attribute), so a weak
  configuration is stopped after its first chunk of trees instead of growing all of them.
- `tune_torch`: a PyTorch model built by a factory from the sampled hyperparameters (the tabular
  MLP by default), trained epoch by epoch with the step of `models.training.fit`; ``epoch`` is
  ASHA's time attribute.

The search algorithm is Optuna's TPE (`OptunaSearch`, seeded), the scheduler ASHA
(`ASHAScheduler`: at each rung a trial below the top ``1/reduction_factor`` of the trials
already there is stopped). Each search returns a `TuneOutcome`: the best configuration (with
the number of rounds or epochs at which it peaked), one row per trial, and every reported step.
`log_tuning` writes it to MLflow from the driver, a parent run with one nested run per trial:
the trials run in Ray workers, which do not share the driver's MLflow state.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from level4_fraud.distributed.cluster import RaySession
from shared.tracking import MlflowTracker, finite_metrics

METRIC = "val_ap"
"""What every trial reports and the search maximises: validation Average Precision."""

Space = Mapping[str, Any]
"""A Ray Tune search space: ``{name: tune.loguniform(...) | tune.choice([...]) | constant}``."""


class TuneSettings(BaseModel):
    """Search budget and ASHA settings (quick profile; full: ``num_samples=40``, ``max_concurrent_trials=8``).

    Args:
        num_samples: Trials (configurations) to try, `points_to_evaluate` included.
        max_concurrent_trials: Trials running at once.
        cpus_per_trial: Ray CPUs (and LightGBM / torch threads) per trial.
        grace_period: ASHA's first rung, in reports: chunks of ``rounds_per_report`` rounds for
            LightGBM, epochs for torch. Rungs follow at ``grace_period * reduction_factor**k``.
        reduction_factor: ASHA keeps the top ``1/reduction_factor`` at each rung.
        seed: Seed of Optuna's sampler and of every trial's training.
        name: Experiment name under the storage path (a unique suffix is added).
    """

    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(8, ge=1)
    max_concurrent_trials: int = Field(2, ge=1)
    cpus_per_trial: int = Field(1, ge=1)
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)
    seed: int = 42
    name: str = "l4-tune"


class LightGBMSearch(BaseModel):
    """LightGBM trial settings (quick profile; full: ``max_rounds=1000, rounds_per_report=50``).

    Args:
        max_rounds: Boosting rounds of a trial that is never stopped (ASHA's ``max_t``).
        rounds_per_report: Rounds between two reports (ASHA's rungs fall on reports).
        fixed: LightGBM parameters every trial shares (sampled ones override them).
    """

    model_config = ConfigDict(extra="forbid")

    max_rounds: int = Field(200, ge=1)
    rounds_per_report: int = Field(20, ge=1)
    fixed: dict[str, Any] = Field(
        default_factory=lambda: {"objective": "binary", "bagging_freq": 1, "verbosity": -1}
    )


class TorchSearch(BaseModel):
    """PyTorch trial settings (quick profile; full: ``max_epochs=30``).

    Args:
        max_epochs: Epochs of a trial that is never stopped (ASHA's ``max_t``).
        loss: ``bce`` or ``focal``, as in `models.training.TrainConfig`.
        pos_weight: BCE weight of a positive (``auto``: sqrt of the class ratio).
        grad_clip: Gradient-norm bound.
        eval_batch_size: Rows per scoring batch on the validation set.
    """

    model_config = ConfigDict(extra="forbid")

    max_epochs: int = Field(8, ge=1)
    loss: Literal["bce", "focal"] = "bce"
    pos_weight: float | Literal["auto"] | None = "auto"
    grad_clip: float | None = Field(1.0, gt=0)
    eval_batch_size: int = Field(8192, ge=1)


def lightgbm_space() -> dict[str, Any]:
    """The default LightGBM search space (learning rate, tree size, sampling, regularisation)."""
    from ray import tune

    return {
        "learning_rate": tune.loguniform(0.02, 0.3),
        "num_leaves": tune.lograndint(8, 128),
        "min_child_samples": tune.lograndint(5, 200),
        "feature_fraction": tune.uniform(0.5, 1.0),
        "bagging_fraction": tune.uniform(0.5, 1.0),
        "lambda_l2": tune.loguniform(1e-3, 10.0),
        "scale_pos_weight": tune.loguniform(1.0, 30.0),
    }


def mlp_space() -> dict[str, Any]:
    """The default space of the tabular MLP (`TabularMLPFactory`) and its optimiser."""
    from ray import tune

    return {
        "learning_rate": tune.loguniform(3e-4, 1e-2),
        "weight_decay": tune.loguniform(1e-6, 1e-2),
        "batch_size": tune.choice([256, 512, 1024]),
        "width": tune.choice([32, 64, 128]),
        "depth": tune.randint(1, 3),
        "dropout": tune.uniform(0.0, 0.3),
        "embedding_dim": tune.choice([4, 8, 16]),
    }


@dataclass
class TabularMLPFactory:
    """Builds the level's `TabularMLP` from sampled hyperparameters.

    ``width``, ``depth`` give hidden layers ``[width, width/2, ...]``; ``dropout`` and
    ``embedding_dim`` go to `TabularMLPConfig` as they are.
    """

    n_numeric: int
    cardinalities: list[int] = field(default_factory=list)

    def __call__(self, params: Mapping[str, Any]) -> nn.Module:
        from level4_fraud.models.torch_models import TabularMLP, TabularMLPConfig

        width, depth = int(params.get("width", 64)), int(params.get("depth", 2))
        hidden = [max(4, width // 2**i) for i in range(depth)]
        return TabularMLP(
            TabularMLPConfig(
                n_numeric=self.n_numeric,
                cardinalities=self.cardinalities,
                embedding_dim=int(params.get("embedding_dim", 8)),
                hidden=hidden,
                dropout=float(params.get("dropout", 0.1)),
            )
        )


@dataclass
class TuneOutcome:
    """What a search found.

    Attributes:
        model: ``lightgbm`` or the torch factory's name.
        time_attr: ``rounds`` or ``epoch``: the unit of `best_step` and of ``history.step``.
        best_config: The best trial's sampled hyperparameters, plus ``num_boost_round`` or
            ``epochs``: the step at which its validation AP peaked.
        best_score: That peak validation AP.
        results: One row per trial: ``trial_id``, the sampled hyperparameters, ``val_ap`` (best),
            ``best_step``, ``steps`` (how far it ran), ``stopped_early`` (ASHA stopped it before
            ``max_t``), ``seconds``.
        history: Every report: ``trial_id``, ``step``, ``val_ap`` (and ``train_loss`` for torch).
        max_t: Steps of a trial that is never stopped.
        settings: The search settings, for the record.
    """

    model: str
    time_attr: str
    best_config: dict[str, Any]
    best_score: float
    results: pd.DataFrame
    history: pd.DataFrame
    max_t: int
    settings: dict[str, Any] = field(default_factory=dict)


def _ap(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    y = np.asarray(y) > 0.5
    if not 0 < int(y.sum()) < len(y):
        raise ValueError("the validation labels need both classes to compute Average Precision")
    return float(average_precision_score(y, scores))


def _lightgbm_trial(
    config: dict[str, Any], data: Any, search: dict[str, Any], threads: int, seed: int
) -> None:
    import lightgbm as lgb
    from ray import tune

    x, y, xv, yv = data
    s = LightGBMSearch.model_validate(search)
    params = {**s.fixed, **config, "num_threads": threads, "seed": seed, "metric": "none"}

    def report(env: Any) -> None:
        # One report per chunk of rounds: ASHA compares trials at the same number of trees.
        rounds = env.iteration + 1
        if rounds % s.rounds_per_report == 0 or rounds == s.max_rounds:
            tune.report({METRIC: _ap(yv, env.model.predict(xv, raw_score=True)), "rounds": rounds})

    lgb.train(params, lgb.Dataset(x, y), num_boost_round=s.max_rounds, callbacks=[report])


TorchFactory = Callable[[Mapping[str, Any]], nn.Module]
"""``factory(sampled_params) -> nn.Module``; runs in the Tune workers, so it must pickle."""


def _torch_trial(
    config: dict[str, Any], data: Any, factory: TorchFactory, search: dict[str, Any], threads: int, seed: int
) -> None:
    from ray import tune
    from torch.utils.data import DataLoader, TensorDataset

    from level4_fraud.distributed.train import train_one_epoch
    from level4_fraud.models.training import TrainConfig, make_loss, predict_logits, to_tensor

    inputs, y, val_inputs, yv = data
    s = TorchSearch.model_validate(search)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = factory(config)
    tcfg = TrainConfig(
        batch_size=int(config.get("batch_size", 512)),
        learning_rate=float(config.get("learning_rate", 2e-3)),
        weight_decay=float(config.get("weight_decay", 1e-4)),
        loss=s.loss,
        pos_weight=s.pos_weight,
        grad_clip=s.grad_clip,
        seed=seed,
    )
    loss_fn = make_loss(tcfg, y)
    data_set = TensorDataset(*(to_tensor(a) for a in inputs), torch.as_tensor(y, dtype=torch.float32))
    loader = DataLoader(
        data_set, batch_size=tcfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.learning_rate, weight_decay=tcfg.weight_decay)
    device = torch.device("cpu")
    for epoch in range(1, s.max_epochs + 1):
        total, batches = train_one_epoch(model, loader, loss_fn, opt, device=device, grad_clip=tcfg.grad_clip)
        logits = predict_logits(model, val_inputs, batch_size=s.eval_batch_size, device=device)
        tune.report({METRIC: _ap(yv, logits), "epoch": epoch, "train_loss": total / max(batches, 1)})


def _run_search(
    trainable: Callable[..., None],
    space: Space,
    session: RaySession,
    settings: TuneSettings,
    *,
    time_attr: str,
    max_t: int,
    report_every: int,
    points_to_evaluate: Sequence[Mapping[str, Any]] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        points_to_evaluate=[dict(p) for p in points_to_evaluate or []] or None,
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
    )
    scheduler = ASHAScheduler(
        time_attr=time_attr,
        max_t=max_t,
        grace_period=min(settings.grace_period * report_every, max_t),
        reduction_factor=settings.reduction_factor,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": settings.cpus_per_trial}),
        param_space=dict(space),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.max_concurrent_trials,
            reuse_actors=True,  # one worker process per slot, not one per trial (torch imports once)
        ),
        run_config=tune.RunConfig(
            name=f"{settings.name}-{uuid.uuid4().hex[:8]}",
            storage_path=session.storage_path,
            verbose=0,
        ),
    )
    # Tune prints its experiment table on stdout even at verbose=0, and Optuna announces each
    # study on stderr: a CLI prints its own summary instead.
    optuna_level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            grid = tuner.fit()
    finally:
        optuna.logging.set_verbosity(optuna_level)
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} Tune trial(s) failed; first: {grid.errors[0]}")
    rows, history = [], []
    for i in range(len(grid)):
        result = grid[i]
        frame = result.metrics_dataframe
        trial_id = str((result.metrics or {}).get("trial_id", ""))
        if frame is None or frame.empty or METRIC not in frame:
            continue
        frame = frame[frame[METRIC].notna()]
        best = frame.loc[frame[METRIC].idxmax()]
        steps = int(frame[time_attr].max())
        rows.append(
            {
                "trial_id": trial_id,
                **(result.config or {}),
                METRIC: float(best[METRIC]),
                "best_step": int(best[time_attr]),
                "steps": steps,
                "stopped_early": steps < max_t,
                "seconds": float(frame["time_total_s"].max()) if "time_total_s" in frame else math.nan,
            }
        )
        cols = [c for c in (METRIC, "train_loss") if c in frame]
        part = frame[[time_attr, *cols]].rename(columns={time_attr: "step"})
        history.append(part.assign(trial_id=trial_id))
    if not rows:
        raise RuntimeError("no Tune trial reported a validation AP")
    results = pd.DataFrame(rows).sort_values(METRIC, ascending=False, ignore_index=True)
    hist = pd.concat(history, ignore_index=True)[["trial_id", "step", *cols]]
    return results, hist


def _outcome(
    model: str, time_attr: str, step_key: str, space: Space, results: pd.DataFrame, history: pd.DataFrame,
    max_t: int, settings: dict[str, Any],
) -> TuneOutcome:  # fmt: skip
    best = results.iloc[0]
    config = {k: _plain(best[k]) for k in space}
    config[step_key] = int(best["best_step"])
    return TuneOutcome(
        model=model,
        time_attr=time_attr,
        best_config=config,
        best_score=float(best[METRIC]),
        results=results,
        history=history,
        max_t=max_t,
        settings=settings,
    )


def _plain(value: Any) -> Any:
    # NumPy scalars from the frame back to Python numbers (JSON, LightGBM and MLflow want them).
    return value.item() if isinstance(value, np.generic) else value


def tune_lightgbm(
    x: pd.DataFrame,
    y: np.ndarray,
    x_val: pd.DataFrame,
    y_val: np.ndarray,
    session: RaySession,
    settings: TuneSettings | None = None,
    search: LightGBMSearch | None = None,
    *,
    space: Space | None = None,
    points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
    tracker: MlflowTracker | None = None,
    run_name: str = "tune-lightgbm",
) -> TuneOutcome:
    """Search LightGBM hyperparameters with Optuna and ASHA on Ray Tune.

    Args:
        x: Training features (numeric columns; pandas ``category`` columns are used as
            LightGBM categoricals).
        y: Training labels (0/1).
        x_val: Validation features, same columns.
        y_val: Validation labels; need both classes.
        session: The `ray_session` to run in.
        settings: Budget, concurrency, ASHA, seed.
        search: Rounds, report interval, fixed LightGBM parameters.
        space: Search space (default `lightgbm_space`).
        points_to_evaluate: Configurations to try first (e.g. the current champion's).
        tracker: When given, the search is logged to MLflow (`log_tuning`).
        run_name: Name of the parent MLflow run.

    Returns:
        The best configuration (with ``num_boost_round``), per-trial results and history.
    """
    from ray import tune

    settings = settings or TuneSettings()
    search = search or LightGBMSearch()
    space = dict(space or lightgbm_space())
    _check_frames(x, y, x_val, y_val)
    _ap(y_val, np.zeros(len(y_val)))  # both classes present, before any worker starts
    data = (x, np.asarray(y), x_val, np.asarray(y_val))
    trainable = tune.with_parameters(
        _lightgbm_trial,
        data=data,
        search=search.model_dump(),
        threads=settings.cpus_per_trial,
        seed=settings.seed,
    )
    results, history = _run_search(
        trainable, space, session, settings,
        time_attr="rounds", max_t=search.max_rounds, report_every=search.rounds_per_report,
        points_to_evaluate=points_to_evaluate,
    )  # fmt: skip
    outcome = _outcome(
        "lightgbm", "rounds", "num_boost_round", space, results, history, search.max_rounds,
        {**settings.model_dump(), **search.model_dump()},
    )  # fmt: skip
    if tracker is not None:
        log_tuning(tracker, outcome, run_name=run_name)
    return outcome


def tune_torch(
    inputs: Sequence[np.ndarray],
    y: np.ndarray,
    val_inputs: Sequence[np.ndarray],
    y_val: np.ndarray,
    session: RaySession,
    factory: TorchFactory,
    settings: TuneSettings | None = None,
    search: TorchSearch | None = None,
    *,
    space: Space | None = None,
    points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
    tracker: MlflowTracker | None = None,
    run_name: str = "tune-torch",
) -> TuneOutcome:
    """Search a PyTorch model's hyperparameters with Optuna and ASHA (epochs as time) on Ray Tune.

    Args:
        inputs: Training arrays sharing their first axis (for the tabular MLP: the numeric
            matrix and the categorical codes of `TabularPreprocessor`).
        y: Training labels (0/1).
        val_inputs: Validation arrays, same layout.
        y_val: Validation labels; need both classes.
        session: The `ray_session` to run in.
        factory: ``factory(sampled_params) -> nn.Module`` (e.g. `TabularMLPFactory`); it runs in
            the workers, so it must pickle. ``learning_rate``, ``weight_decay`` and
            ``batch_size`` of the sampled parameters configure the optimiser.
        settings: Budget, concurrency, ASHA, seed.
        search: Epochs, loss, clipping.
        space: Search space (default `mlp_space`).
        points_to_evaluate: Configurations to try first.
        tracker: When given, the search is logged to MLflow (`log_tuning`).
        run_name: Name of the parent MLflow run.

    Returns:
        The best configuration (with ``epochs``), per-trial results and history.
    """
    from ray import tune

    settings = settings or TuneSettings()
    search = search or TorchSearch()
    space = dict(space or mlp_space())
    if not inputs or any(len(a) != len(y) for a in inputs):
        raise ValueError("every input array needs one row per label")
    if not val_inputs or any(len(a) != len(y_val) for a in val_inputs):
        raise ValueError("every validation array needs one row per validation label")
    _ap(y_val, np.zeros(len(y_val)))
    data = (list(inputs), np.asarray(y, dtype=np.float32), list(val_inputs), np.asarray(y_val))
    trainable = tune.with_parameters(
        _torch_trial,
        data=data,
        factory=factory,
        search=search.model_dump(),
        threads=settings.cpus_per_trial,
        seed=settings.seed,
    )
    results, history = _run_search(
        trainable, space, session, settings,
        time_attr="epoch", max_t=search.max_epochs, report_every=1, points_to_evaluate=points_to_evaluate,
    )  # fmt: skip
    outcome = _outcome(
        type(factory).__name__, "epoch", "epochs", space, results, history, search.max_epochs,
        {**settings.model_dump(), **search.model_dump()},
    )  # fmt: skip
    if tracker is not None:
        log_tuning(tracker, outcome, run_name=run_name)
    return outcome


def _check_frames(x: pd.DataFrame, y: np.ndarray, x_val: pd.DataFrame, y_val: np.ndarray) -> None:
    if len(x) != len(y) or len(x_val) != len(y_val):
        raise ValueError("features and labels differ in length")
    if len(x) == 0:
        raise ValueError("no rows to train on")
    if list(x.columns) != list(x_val.columns):
        raise ValueError("training and validation frames have different columns")


def log_tuning(tracker: MlflowTracker, outcome: TuneOutcome, *, run_name: str) -> str:
    """Log a search to MLflow: a parent run, and one nested run per trial with its history.

    The parent run holds the search settings, the best configuration (``best.<name>``) and
    score, and the per-trial table as ``tune_results.csv``. Each trial's run holds its sampled
    hyperparameters, its best ``val_ap``, ``steps`` and ``stopped_early``, and its ``val_ap``
    (and ``train_loss``) at every reported step.

    Returns:
        The parent run's id.
    """
    import mlflow
    from mlflow.entities import Metric

    with (
        tracker.active(),
        tracker.start_run(run_name, tags={"kind": "tune", "model": outcome.model}) as parent,
    ):
        tracker.log_params({f"search.{k}": v for k, v in outcome.settings.items()})
        tracker.log_params({"search.time_attr": outcome.time_attr, "search.algorithm": "optuna-tpe+asha"})
        tracker.log_params({f"best.{k}": v for k, v in outcome.best_config.items()})
        tracker.log_metrics(
            {
                f"best_{METRIC}": outcome.best_score,
                "trials": len(outcome.results),
                "trials_stopped_early": int(outcome.results["stopped_early"].sum()),
            }
        )
        mlflow.log_text(outcome.results.to_csv(index=False), "tune_results.csv")
        client = tracker.client()
        space_keys = [k for k in outcome.best_config if k in outcome.results.columns]
        stamp = int(time.time() * 1000)
        for trial in outcome.results.to_dict("records"):
            with tracker.start_run(f"{run_name}-{trial['trial_id']}", nested=True) as child:
                tracker.log_params({k: _plain(trial[k]) for k in space_keys})
                tracker.log_metrics(
                    {
                        METRIC: trial[METRIC],
                        "best_step": trial["best_step"],
                        "steps": trial["steps"],
                        "stopped_early": int(bool(trial["stopped_early"])),
                    }
                )
                steps = outcome.history[outcome.history["trial_id"] == trial["trial_id"]]
                metrics = [
                    Metric(f"{name}_by_{outcome.time_attr}", float(value), stamp, int(step))
                    for name in (METRIC, "train_loss")
                    if name in steps
                    for step, value in zip(steps["step"], steps[name], strict=True)
                    if finite_metrics({name: value})
                ]
                for lo in range(0, len(metrics), 1000):  # MLflow's batch limit
                    client.log_batch(child.info.run_id, metrics=metrics[lo : lo + 1000])
        return str(parent.info.run_id)
