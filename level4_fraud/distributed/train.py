"""Data-parallel training of a level-4 PyTorch model on Ray Train (`TorchTrainer`, DDP).

Each worker builds the model from the same factory and seed, `ray.train.torch.prepare_model`
wraps it in ``DistributedDataParallel`` (rank 0's weights broadcast at wrap time, gradients
averaged by all-reduce after every backward), and a ``DistributedSampler`` gives each worker its
own slice of every epoch's shuffled order. The process group is gloo on CPU and NCCL when the
workers get GPUs: the same code, chosen by `ScalingConfig.use_gpu` (`TorchTrainer` picks the
backend from it).

The training step is the one of `level4_fraud.models.training.fit` (AdamW, the configured loss
with its positive weight from the whole training set, an auxiliary loss the model leaves in
``aux_loss``, gradient clipping, the best validation epoch kept). Every worker scores the whole
validation set with its (identical) replica, so all of them take the same early-stopping decision
without another collective.
"""

from __future__ import annotations

import math
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from level4_fraud.distributed.cluster import RaySession
from level4_fraud.models.training import LossFn, TrainConfig
from shared.tracking import MlflowTracker

ModelFactory = Callable[[], nn.Module]
"""Builds the untrained model; it runs inside each Ray worker, so it must pickle (cloudpickle)."""

CHECKPOINT_FILE = "model.pt"


class DataParallelConfig(BaseModel):
    """Ray Train settings (quick profile; full profile: the same with ``train.epochs=40``).

    Args:
        num_workers: Training processes (one model replica each).
        use_gpu: ``None``: a GPU per worker when the cluster has that many, else CPU and gloo.
        threads_per_worker: torch CPU threads (and Ray CPUs reserved) per worker.
        find_unused_parameters: DDP option a mixture of experts needs: with top-k routing an
            expert that got no rows in a batch has no gradient, and DDP would wait for it.
        train: Optimiser, loss, batch size (per worker), epochs, early stopping, seed.
        name: Run name under the storage path (a unique suffix is added).
    """

    model_config = ConfigDict(extra="forbid")

    num_workers: int = Field(2, ge=1)
    use_gpu: bool | None = None
    threads_per_worker: int = Field(1, ge=1)
    find_unused_parameters: bool = True
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=5, patience=3))
    name: str = "l4-data-parallel"


@dataclass
class DataParallelResult:
    """What a data-parallel run returned.

    Attributes:
        state_dict: The kept weights (best validation epoch, or the last one without validation).
        model: The factory's model with those weights, in eval mode on the CPU.
        history: Per epoch: ``epoch``, ``train_loss`` (mean over all workers' batches),
            ``val_ap`` when validation data was given.
        best_epoch: The epoch whose weights were kept.
        best_val_ap: Its validation AP (NaN without validation).
        world_size: Number of workers.
        backend: The torch.distributed backend the workers used (``gloo`` or ``nccl``).
        device: The device of rank 0 (``cpu`` or ``cuda:0``).
        param_spread: Largest absolute difference of any parameter between two workers at the
            end (0.0 when the gradient all-reduce kept the replicas identical).
        seconds: Wall time of ``trainer.fit()``.
        path: The run folder on the storage path (checkpoint and Ray's records).
        mlflow_run_id: The MLflow run the training was logged to (None without a tracker).
    """

    state_dict: dict[str, torch.Tensor]
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_ap: float = math.nan
    world_size: int = 1
    backend: str = ""
    device: str = "cpu"
    param_spread: float = math.nan
    seconds: float = 0.0
    path: str = ""
    mlflow_run_id: str | None = None


def _use_gpu(cfg: DataParallelConfig) -> bool:
    import ray

    if cfg.use_gpu is not None:
        return cfg.use_gpu
    # One whole GPU per worker: NCCL refuses two ranks on one device.
    return float(ray.cluster_resources().get("GPU", 0.0)) >= cfg.num_workers


def _aux_loss(model: nn.Module) -> torch.Tensor | None:
    aux = getattr(model, "aux_loss", None)
    return aux if isinstance(aux, torch.Tensor) else None


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[Sequence[torch.Tensor]],
    loss_fn: LossFn,
    opt: torch.optim.Optimizer,
    *,
    device: torch.device,
    grad_clip: float | None,
    core: nn.Module | None = None,
) -> tuple[float, int]:
    """One pass of `models.training.fit`'s step over `batches` (each ``(*inputs, target)``).

    Args:
        model: The module called on the inputs (a DDP wrapper, or the model itself).
        batches: Mini-batches; the last tensor of each is the target.
        loss_fn: ``loss_fn(logits, target)``.
        opt: The optimiser over the trainable parameters.
        device: Where the batches go.
        grad_clip: Gradient-norm bound, or None.
        core: The unwrapped model, where a mixture of experts leaves its ``aux_loss``.

    Returns:
        The sum of the batch losses and the number of batches.
    """
    core = model if core is None else core
    params = [p for group in opt.param_groups for p in group["params"]]
    model.train()
    total, count = 0.0, 0
    for *xb, tb in batches:
        logits = model(*(x.to(device) for x in xb))
        loss = loss_fn(logits, tb.to(device))
        aux = _aux_loss(core)
        if aux is not None:
            loss = loss + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP the gradients are all-reduced (averaged) here
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        total += float(loss.detach())
        count += 1
    return total, count


def _val_score(y_val: np.ndarray, logits: np.ndarray) -> float:
    """Validation AP; minus the BCE when the slice lacks a class (as `models.training.fit` does)."""
    from sklearn.metrics import average_precision_score

    positives = int((y_val > 0.5).sum())
    if 0 < positives < len(y_val):
        return float(average_precision_score(y_val > 0.5, logits))
    t = torch.as_tensor(logits, dtype=torch.float32)
    return -float(
        nn.functional.binary_cross_entropy_with_logits(t, torch.as_tensor(y_val, dtype=torch.float32))
    )


def _train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """The training function every Ray Train worker runs (rank 0's return value comes back)."""
    import ray
    import ray.train
    import ray.train.torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from level4_fraud.models.training import make_loss, predict_logits, to_tensor

    cfg = DataParallelConfig.model_validate(config["cfg"])
    tcfg = cfg.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.threads_per_worker)
    inputs, y, val = ray.get(config["data"])

    torch.manual_seed(tcfg.seed)
    model = config["factory"]()
    model = ray.train.torch.prepare_model(
        model,
        parallel_strategy_kwargs={"find_unused_parameters": cfg.find_unused_parameters},
    )
    core: nn.Module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    device = ray.train.torch.get_device()
    dataset = TensorDataset(*(to_tensor(a) for a in inputs), torch.as_tensor(y, dtype=torch.float32))
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed
    )
    loader = DataLoader(dataset, batch_size=tcfg.batch_size, sampler=sampler)
    loss_fn = make_loss(tcfg, y)  # positive weight from all training labels, the same on every rank
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.learning_rate, weight_decay=tcfg.weight_decay)

    history: list[dict[str, float]] = []
    best, best_epoch, bad_epochs = -math.inf, 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(1, tcfg.epochs + 1):
        sampler.set_epoch(epoch)
        loss_sum, batches = train_one_epoch(
            model, loader, loss_fn, opt, device=device, grad_clip=tcfg.grad_clip, core=core
        )
        total = torch.tensor([loss_sum, float(batches)], dtype=torch.float64)
        if world > 1:
            total = total.to(device)
            dist.all_reduce(total)
            total = total.cpu()
        record = {"epoch": float(epoch), "train_loss": float(total[0] / max(float(total[1]), 1.0))}
        if val is not None:
            v_logits = predict_logits(core, val[0], batch_size=tcfg.eval_batch_size, device=device)
            score = _val_score(np.asarray(val[1]), v_logits)
            record["val_ap"] = score
            if score > best:
                best, best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
            else:
                bad_epochs += 1
        else:
            best_epoch = epoch
        history.append(record)
        ray.train.report(record)
        if val is not None and bad_epochs >= tcfg.patience:
            break
    if best_state is not None:
        core.load_state_dict(best_state)

    flat = torch.cat([p.detach().reshape(-1) for p in core.parameters()]).to(device)
    if world > 1:
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
    else:
        spread = 0.0
    final = {**history[-1], "best_epoch": float(best_epoch), "param_spread": spread}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(
                {k: v.detach().cpu() for k, v in core.state_dict().items()}, Path(tmp) / CHECKPOINT_FILE
            )
            ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(final)
    return {
        "history": history,
        "best_epoch": best_epoch,
        "best_val_ap": best if best_state is not None else math.nan,
        "param_spread": spread,
        "backend": dist.get_backend() if dist.is_initialized() else "none",
        "world_size": world,
        "device": str(device),
    }


def train_data_parallel(
    factory: ModelFactory,
    inputs: Sequence[np.ndarray],
    y: np.ndarray,
    session: RaySession,
    cfg: DataParallelConfig | None = None,
    *,
    val: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
    tracker: MlflowTracker | None = None,
    run_name: str = "data-parallel",
) -> DataParallelResult:
    """Train ``factory()`` on `inputs`/`y` with `cfg.num_workers` DDP workers on Ray Train.

    Args:
        factory: Builds the untrained model (``forward(*batch_inputs) -> (batch,)`` logits);
            called in every worker with the same seed, and once here to hold the result.
        inputs: Arrays sharing their first axis (numeric matrix, categorical codes, ...).
        y: 0/1 labels.
        session: The `ray_session` to run in (its storage path holds the run).
        cfg: Workers, devices and training settings.
        val: ``(val_inputs, val_labels)``: validation AP each epoch, early stopping, best epoch kept.
        tracker: When given, the run is logged to MLflow (`log_data_parallel`).
        run_name: The MLflow run's name.

    Returns:
        The kept weights (and the model holding them), history and how the workers ran.
    """
    import ray
    import ray.train

    # Train V2 (Ray's default): its `Result` carries the loop's return value.
    from ray.train.v2.api.config import RunConfig, ScalingConfig
    from ray.train.v2.api.result import Result
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    cfg = cfg or DataParallelConfig()
    y = np.asarray(y, dtype=np.float32)
    if not inputs or any(len(a) != len(y) for a in inputs):
        raise ValueError("every input array needs one row per label")
    if len(y) == 0:
        raise ValueError("no rows to train on")
    data_ref = ray.put((list(inputs), y, val))
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(), "factory": factory, "data": data_ref},
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=_use_gpu(cfg),
            resources_per_worker={"CPU": cfg.threads_per_worker},
        ),
        run_config=RunConfig(name=f"{cfg.name}-{uuid.uuid4().hex[:8]}", storage_path=session.storage_path),
    )
    start = time.perf_counter()
    # V2's fit() returns V2's Result; Ray annotates it as `ray.train.Result`, which a type checker
    # resolves to Train V1's class (no return_value).
    result = cast(Result, trainer.fit())
    seconds = time.perf_counter() - start
    if result.error is not None:
        raise result.error
    if result.checkpoint is None or result.return_value is None:
        raise RuntimeError("the Ray Train run ended without a checkpoint or a return value")
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    torch.manual_seed(cfg.train.seed)
    model = factory()
    model.load_state_dict(state)
    model.eval()
    info = result.return_value
    out = DataParallelResult(
        state_dict=state,
        model=model,
        history=info["history"],
        best_epoch=int(info["best_epoch"]),
        best_val_ap=float(info["best_val_ap"]),
        world_size=int(info["world_size"]),
        backend=str(info["backend"]),
        device=str(info["device"]),
        param_spread=float(info["param_spread"]),
        seconds=seconds,
        path=str(result.path),
    )
    if tracker is not None:
        out.mlflow_run_id = log_data_parallel(tracker, out, cfg, run_name=run_name)
    return out


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(f"{prefix}{key}.", value))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def log_data_parallel(
    tracker: MlflowTracker, result: DataParallelResult, cfg: DataParallelConfig, *, run_name: str
) -> str:
    """Log a data-parallel run to MLflow: settings, per-epoch metrics, the model under ``model/``.

    A level-4 model (pydantic ``config``) is saved with `models.training.save_model`, so
    ``load_model`` rebuilds it from the downloaded folder; any other model as its ``model.pt``
    state_dict.

    Returns:
        The MLflow run id.
    """
    import mlflow

    from level4_fraud.models.training import save_model

    with tracker.active(), tracker.start_run(run_name, tags={"kind": "ray-train"}) as run:
        tracker.log_params(_flat("", cfg.model_dump()))
        tracker.log_params(
            {"backend": result.backend, "device": result.device, "world_size": result.world_size}
        )
        for record in result.history:
            tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))
        tracker.log_metrics(
            {
                "best_val_ap": result.best_val_ap,
                "best_epoch": result.best_epoch,
                "param_spread": result.param_spread,
                "fit_seconds": result.seconds,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            try:
                save_model(result.model, folder)
            except TypeError:  # not a level-4 model: its weights only
                folder.mkdir()
                torch.save(result.state_dict, folder / CHECKPOINT_FILE)
            mlflow.log_artifacts(str(folder), artifact_path="model")
        return str(run.info.run_id)
