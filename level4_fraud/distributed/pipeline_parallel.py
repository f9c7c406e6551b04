"""Pipeline parallelism: a model's two ``stages()`` trained as a two-process pipeline.

A model too big for one device is cut in two: the first stage's process runs the first half of
the network, sends the activations of each micro-batch to the second stage's process, which runs
the rest and the loss; gradients flow back the same way. `torch.distributed.pipelining` provides
the stage (`PipelineStage`) and the schedule: GPipe (every micro-batch forward, then every
backward) or 1F1B (one forward, one backward in steady state, so fewer activations are held).

Any level-4 model with ``stages() -> (first, second)`` qualifies: two ``nn.Module`` views that
share the model's parameters and compose to its ``forward`` (the sequence transformer and GRU
have it). The processes are started with ``torch.multiprocessing.spawn``; they talk over gloo on
CPU, or NCCL when there are two GPUs (one stage per GPU).

With equal-size micro-batches and a mean loss, the schedule's gradient (micro-batch gradients
summed, then divided by their number) is the gradient of the whole batch's mean loss: one step
of the pipeline is one step of single-process training. A model with dropout draws other random
masks in the two processes, so that identity needs a deterministic forward (no dropout). The
loss is `loss_fn` on the last stage's output only: an auxiliary loss a model computes inside a
stage (the mixture of experts' load balancing) does not reach the pipeline's backward.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from shared.process import free_port

ModelFactory = Callable[[], nn.Module]
"""Builds the model (with ``stages()``); pickled to the spawned processes, so module-level."""

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(output_of_last_stage, target) -> mean loss over the micro-batch``."""

Batch = tuple[Sequence[torch.Tensor], torch.Tensor]
"""``(inputs of the first stage, target)`` of one training step."""

NUM_STAGES = 2


def bce_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on logits: the default loss of a pipeline step."""
    return nn.functional.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


class PipelineConfig(BaseModel):
    """Pipeline settings (quick profile; the full profile uses ``n_microbatches=8``).

    Args:
        schedule: ``gpipe`` (all forwards, then all backwards) or ``1f1b`` (interleaved).
        n_microbatches: Micro-batches per step; every batch size must be a multiple of it.
        optimizer: ``adamw`` or ``sgd``, one per stage over that stage's parameters.
        learning_rate: Step size.
        weight_decay: AdamW/SGD weight decay.
        device: ``auto``: one GPU per stage with NCCL when two exist, else CPU with gloo.
        threads_per_stage: torch CPU threads in each stage's process.
        timeout_s: Collective timeout: a stage waiting longer for its peer fails.
    """

    model_config = ConfigDict(extra="forbid")

    schedule: Literal["gpipe", "1f1b"] = "1f1b"
    n_microbatches: int = Field(4, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads_per_stage: int = Field(1, ge=1)
    timeout_s: float = Field(300.0, gt=0)


@dataclass
class PipelineResult:
    """What a pipeline run did.

    Attributes:
        losses: Per step, the mean of its micro-batch losses (the batch's mean loss).
        microbatch_losses: Per step, each micro-batch's loss, as the last stage computed it.
        first_step_grads: Gradient of every parameter after the first step's backward (before the
            optimiser moved anything), keyed by the model's own parameter names.
        state_dict: The model's weights after the last step, keyed like ``model.state_dict()``.
        schedule: The schedule used.
        backend: ``gloo`` or ``nccl``.
        seconds: Wall time of the whole run, process start-up included.
    """

    losses: list[float] = field(default_factory=list)
    microbatch_losses: list[list[float]] = field(default_factory=list)
    first_step_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    schedule: str = ""
    backend: str = ""
    seconds: float = math.nan


def _stages(model: nn.Module) -> Sequence[Any]:
    """What the model's ``stages()`` returns (a model without one cannot be split)."""
    stages = getattr(model, "stages", None)
    if not callable(stages):
        raise ValueError(f"{type(model).__name__} has no stages() to split it into a pipeline")
    return list(stages())


def _stage_names(model: nn.Module) -> list[dict[str, str]]:
    """For each stage, ``{stage-local name: model name}`` of its parameters and buffers.

    Raises:
        ValueError: The model has no ``stages()``, a stage is not a module, a parameter sits in
            both stages, or a parameter is in neither (the pipeline would never train it).
    """
    stages = _stages(model)
    if len(stages) != NUM_STAGES or not all(isinstance(s, nn.Module) for s in stages):
        raise ValueError(f"stages() must return {NUM_STAGES} nn.Modules")
    by_id = {id(t): name for name, t in [*model.named_parameters(), *model.named_buffers()]}
    mapping: list[dict[str, str]] = []
    for stage in stages:
        names: dict[str, str] = {}
        for local, t in [*stage.named_parameters(), *stage.named_buffers()]:
            if id(t) not in by_id:
                raise ValueError(f"stage tensor {local!r} is not one of the model's own tensors")
            names[local] = by_id[id(t)]
        mapping.append(names)
    params = {name for name, _ in model.named_parameters()}
    first, second = (set(m.values()) & params for m in mapping)
    if both := first & second:
        raise ValueError(f"parameters in both stages (tied weights cannot be split): {sorted(both)}")
    if missing := params - first - second:
        raise ValueError(f"parameters in no stage would never be trained: {sorted(missing)}")
    return mapping


def _devices(cfg: PipelineConfig) -> tuple[str, list[str]]:
    gpus = torch.cuda.device_count()
    if cfg.device == "cuda" and gpus < NUM_STAGES:
        raise RuntimeError(f"device 'cuda' needs {NUM_STAGES} GPUs (one per stage), found {gpus}")
    if cfg.device == "cuda" or (cfg.device == "auto" and gpus >= NUM_STAGES):
        return "nccl", [f"cuda:{r}" for r in range(NUM_STAGES)]
    return "gloo", ["cpu"] * NUM_STAGES


def _stage_process(
    rank: int,
    factory: ModelFactory,
    state: dict[str, torch.Tensor],
    batches: list[Batch],
    cfg: PipelineConfig,
    loss_fn: LossFn,
    init_method: str,
    out_dir: str,
) -> None:
    """One stage's process: build the model, keep stage `rank`, run every step of the schedule."""
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    torch.set_num_threads(cfg.threads_per_stage)
    backend, devices = _devices(cfg)
    device = torch.device(devices[rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method=init_method,
        rank=rank,
        world_size=NUM_STAGES,
        timeout=timedelta(seconds=cfg.timeout_s),
    )
    try:
        model = factory()
        model.load_state_dict(state)
        module = _stages(model)[rank].to(device)
        module.train()
        stage = PipelineStage(module, rank, NUM_STAGES, device)
        schedule_cls = ScheduleGPipe if cfg.schedule == "gpipe" else Schedule1F1B
        schedule = schedule_cls(stage, n_microbatches=cfg.n_microbatches, loss_fn=loss_fn)
        params = [p for p in module.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        step_losses: list[list[float]] = []
        grads: dict[str, torch.Tensor] = {}
        for i, (inputs, target) in enumerate(batches):
            opt.zero_grad(set_to_none=True)
            if rank == 0:
                schedule.step(*(t.to(device) for t in inputs))
            else:
                losses: list[torch.Tensor] = []
                schedule.step(target=target.to(device), losses=losses)
                step_losses.append([float(v.detach()) for v in losses])
            if i == 0:
                grads = {
                    n: p.grad.detach().cpu().clone()
                    for n, p in module.named_parameters()
                    if p.grad is not None
                }
            opt.step()
        out = {
            "losses": step_losses,
            "grads": grads,
            "state": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "backend": dist.get_backend(),
        }
        torch.save(out, Path(out_dir) / f"stage{rank}.pt")
    finally:
        dist.destroy_process_group()


def train_pipeline(
    factory: ModelFactory,
    batches: Sequence[Batch],
    cfg: PipelineConfig | None = None,
    *,
    loss_fn: LossFn = bce_with_logits,
    seed: int = 0,
) -> PipelineResult:
    """Train ``factory()`` for one step per batch as a two-stage pipeline in two processes.

    Args:
        factory: Builds the model; module-level (pickled to the processes). The model is built
            here once with `seed`; both processes load these weights, so the run starts exactly
            where a single-process run from ``factory()`` with that seed would.
        batches: ``(inputs, target)`` per step; ``inputs`` go to the first stage (for the sequence
            models: ``(x, mask)``), ``target`` to the loss on the last stage.
        cfg: Schedule, micro-batches, optimiser, devices.
        loss_fn: Mean loss of one micro-batch (module-level, pickled).
        seed: Seed of the initial weights.

    Returns:
        Losses per step and micro-batch, the first step's gradients, the final weights.

    Raises:
        ValueError: No batches, a batch not divisible into equal micro-batches, or a model
            whose stages do not split its parameters in two.
    """
    from torch.multiprocessing.spawn import spawn

    cfg = cfg or PipelineConfig()
    batches = [(tuple(inputs), target) for inputs, target in batches]
    if not batches:
        raise ValueError("no batches to train on")
    for i, (inputs, target) in enumerate(batches):
        sizes = {len(t) for t in (*inputs, target)}
        if len(sizes) != 1:
            raise ValueError(f"batch {i}: inputs and target differ in length {sorted(sizes)}")
        n = sizes.pop()
        if n % cfg.n_microbatches:
            raise ValueError(f"batch {i} has {n} rows, not a multiple of {cfg.n_microbatches} micro-batches")
    torch.manual_seed(seed)
    model = factory()
    names = _stage_names(model)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    backend, _ = _devices(cfg)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="l4-pipeline-") as out_dir:
        init_method = f"tcp://127.0.0.1:{free_port()}"
        spawn(
            _stage_process,
            args=(factory, state, batches, cfg, loss_fn, init_method, out_dir),
            nprocs=NUM_STAGES,
            join=True,
        )
        outs: list[dict[str, Any]] = [
            torch.load(Path(out_dir) / f"stage{r}.pt", weights_only=True) for r in range(NUM_STAGES)
        ]
    seconds = time.perf_counter() - start
    final = dict(state)
    grads: dict[str, torch.Tensor] = {}
    for rank, out in enumerate(outs):
        for local, value in out["state"].items():
            final[names[rank][local]] = value
        for local, value in out["grads"].items():
            grads[names[rank][local]] = value
    micro = outs[-1]["losses"]
    return PipelineResult(
        losses=[sum(m) / len(m) for m in micro],
        microbatch_losses=micro,
        first_step_grads=grads,
        state_dict=final,
        schedule=cfg.schedule,
        backend=str(outs[0]["backend"]) or backend,
        seconds=seconds,
    )
