"""Device-aware training and scoring loops shared by every PyTorch model of the level.

A model here is an ``nn.Module`` whose ``forward(*inputs)`` returns one logit per row (shape
``(batch,)``) and whose constructor takes one pydantic config (kept as ``model.config``), so
`save_model`/`load_model` can rebuild it. A model with an auxiliary loss (the mixture of experts'
load-balancing term) leaves it, already weighted, in ``model.aux_loss`` after each forward;
`fit` adds it to the training loss.

Inputs are lists of NumPy arrays that share their first axis (tabular: numeric and categorical
matrices; sequences: the ``(n, L, F)`` tensor and its mask). Batches move to the device one at
a time, so a data set larger than GPU memory still trains.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score
from torch import nn

from shared.atomic import atomic_path, atomic_write_json

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss_fn(logits, targets_batch) -> scalar``; targets are whatever `fit` was given."""

MODEL_FILE = "model.pt"
META_FILE = "model.json"
_ALLOWED_PREFIX = "level4_fraud."


class TrainConfig(BaseModel):
    """Optimiser, loss and stopping settings (defaults: the quick profile).

    Full profile: ``epochs=40, patience=6, batch_size=1024``; the rest unchanged.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(15, ge=1)
    batch_size: int = Field(512, ge=1)
    eval_batch_size: int = Field(8192, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    loss: Literal["bce", "focal"] = "bce"
    pos_weight: float | Literal["auto"] | None = Field(
        "auto",
        description="BCE weight of a positive; 'auto' = sqrt(negatives / positives), a milder "
        "correction than the full ratio, which over-predicts fraud at 0.1-1 % prevalence",
    )
    focal_gamma: float = Field(2.0, ge=0)
    focal_alpha: float | None = Field(0.25, ge=0, le=1)
    patience: int = Field(4, ge=1, description="epochs without a better validation AP before stopping")
    grad_clip: float | None = Field(1.0, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(1, ge=1, description="torch CPU threads while training (restored after)")
    seed: int = 42


@dataclass
class FitResult:
    """What a training run did: per-epoch history, the epoch kept, its validation AP, duration.

    ``best_val_ap`` holds the kept epoch's validation AP, or its ``val_score`` when `fit` was
    given one.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_ap: float = math.nan
    seconds: float = 0.0
    device: str = "cpu"
    stopped_early: bool = False


def resolve_device(device: str = "auto") -> torch.device:
    """``cuda`` when asked for and present ('auto' picks it when available), else ``cpu``."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch CPU threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A CPU tensor for `array`: floats as float32, integers as int64, booleans kept."""
    t = torch.as_tensor(array)
    if t.is_floating_point():
        return t.float()
    if t.dtype == torch.bool:
        return t
    return t.long()


def auto_pos_weight(y: np.ndarray) -> float:
    """sqrt(negatives / positives), 1.0 when a class is missing."""
    y = np.asarray(y)
    pos = float((y > 0.5).sum())
    neg = float(len(y) - pos)
    if pos == 0 or neg == 0:
        return 1.0
    return math.sqrt(neg / pos)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: float | None
) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017), mean over the batch; targets may be soft."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t).pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean()


def make_loss(cfg: TrainConfig, y: np.ndarray) -> LossFn:
    """The loss `cfg` asks for, with the positive weight computed from the training labels."""
    if cfg.loss == "focal":
        return lambda logits, t: focal_loss(logits, t, cfg.focal_gamma, cfg.focal_alpha)
    if cfg.pos_weight is None:
        weight = None
    else:
        weight = torch.tensor(auto_pos_weight(y) if cfg.pos_weight == "auto" else float(cfg.pos_weight))

    def bce(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pw = None if weight is None else weight.to(logits.device)
        return nn.functional.binary_cross_entropy_with_logits(logits, t, pos_weight=pw)

    return bce


def _check_inputs(inputs: Sequence[np.ndarray], n: int | None = None) -> int:
    if not inputs:
        raise ValueError("inputs must hold at least one array")
    lengths = {len(a) for a in inputs}
    if len(lengths) != 1:
        raise ValueError(f"input arrays differ in length: {sorted(lengths)}")
    m = lengths.pop()
    if n is not None and m != n:
        raise ValueError(f"inputs have {m} rows but the targets have {n}")
    if m == 0:
        raise ValueError("no rows to train on")
    return m


def _aux_loss(model: nn.Module) -> torch.Tensor | None:
    aux = getattr(model, "aux_loss", None)
    return aux if isinstance(aux, torch.Tensor) else None


def _monitor(y_val: np.ndarray, scores: np.ndarray, logits: np.ndarray) -> float:
    # AP needs both classes; a validation slice without frauds falls back to minus the BCE.
    if 0 < int((y_val > 0.5).sum()) < len(y_val):
        return float(average_precision_score(y_val > 0.5, scores))
    t = torch.as_tensor(logits, dtype=torch.float32)
    return -float(
        nn.functional.binary_cross_entropy_with_logits(t, torch.as_tensor(y_val, dtype=torch.float32))
    )


def fit(
    model: nn.Module,
    inputs: Sequence[np.ndarray],
    y: np.ndarray,
    cfg: TrainConfig | None = None,
    *,
    val: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
    targets: np.ndarray | None = None,
    loss_fn: LossFn | None = None,
    val_score: Callable[[np.ndarray], float] | None = None,
) -> FitResult:
    """Train `model` in place with AdamW on mini-batches, keeping the best validation epoch.

    Only parameters with ``requires_grad`` are optimised (a LoRA-wrapped model trains its
    adapters only). With `val`, each epoch is scored by validation Average Precision; training
    stops after ``cfg.patience`` epochs without improvement and the best epoch's weights are
    restored. Without `val`, every epoch runs and the last weights are kept.

    Args:
        model: Module returning logits of shape ``(batch,)`` from ``model(*batch_inputs)``.
        inputs: Arrays with one row per example (same first axis).
        y: Hard 0/1 labels (used for the positive weight and, unless `targets`, as the target).
        cfg: Training settings (defaults: quick profile).
        val: ``(val_inputs, val_labels)`` for early stopping on validation AP.
        targets: What the loss compares the logits with, if not `y` (e.g. ``(n, 2)`` hard label
            and teacher probability for distillation); sliced like the inputs.
        loss_fn: ``loss_fn(logits, targets_batch)``; defaults to the loss `cfg` names.
        val_score: ``val_score(val_logits) -> float`` (higher is better) to select epochs by
            instead of validation AP (e.g. fidelity to a teacher); reported as ``val_ap``'s
            replacement ``val_score`` in the history.

    Returns:
        The training history and the epoch kept.
    """
    cfg = cfg or TrainConfig()
    y = np.asarray(y, dtype=np.float32)
    n = _check_inputs(inputs, len(y))
    tgt = y if targets is None else np.asarray(targets, dtype=np.float32)
    if len(tgt) != n:
        raise ValueError(f"targets have {len(tgt)} rows, inputs {n}")
    if val is not None:
        _check_inputs(val[0], len(val[1]))
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    loss_fn = loss_fn or make_loss(cfg, y)
    xs = [to_tensor(a) for a in inputs]
    t_all = torch.as_tensor(tgt)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    result = FitResult(device=str(device))
    start = time.perf_counter()
    with torch_threads(cfg.threads):
        model.to(device)
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        best_state: dict[str, torch.Tensor] | None = None
        best = -math.inf
        bad_epochs = 0
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen)
            total, batches = 0.0, 0
            for lo in range(0, n, cfg.batch_size):
                idx = order[lo : lo + cfg.batch_size]
                batch = [x[idx].to(device, non_blocking=True) for x in xs]
                logits = model(*batch)
                loss = loss_fn(logits, t_all[idx].to(device, non_blocking=True))
                aux = _aux_loss(model)
                if aux is not None:
                    loss = loss + aux
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                total += float(loss.detach())
                batches += 1
            record = {"epoch": float(epoch), "train_loss": total / max(batches, 1)}
            if val is not None:
                v_logits = predict_logits(model, val[0], batch_size=cfg.eval_batch_size, device=device)
                if val_score is None:
                    score = _monitor(np.asarray(val[1]), _sigmoid(v_logits), v_logits)
                    record["val_ap"] = score
                else:
                    score = float(val_score(v_logits))
                    record["val_score"] = score
                if score > best:
                    best, bad_epochs = score, 0
                    result.best_epoch, result.best_val_ap = epoch, score
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_epochs += 1
            else:
                result.best_epoch = epoch
            result.history.append(record)
            if val is not None and bad_epochs >= cfg.patience:
                result.stopped_early = True
                break
        if best_state is not None:
            model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    inputs: Sequence[np.ndarray],
    *,
    batch_size: int = 8192,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Logits for every row of `inputs`, in eval mode (float64, shape ``(n,)``).

    The model is put back in the mode it was in.
    """
    n = _check_inputs(inputs)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    xs = [to_tensor(a) for a in inputs]
    out = np.empty(n, dtype=np.float64)
    try:
        for lo in range(0, n, batch_size):
            batch = [x[lo : lo + batch_size].to(device) for x in xs]
            out[lo : lo + batch_size] = model(*batch).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def predict_proba(
    model: nn.Module,
    inputs: Sequence[np.ndarray],
    *,
    batch_size: int = 8192,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Fraud probabilities (sigmoid of the logits) for every row of `inputs`."""
    return _sigmoid(predict_logits(model, inputs, batch_size=batch_size, device=device))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def save_model(model: nn.Module, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.pt`` (state_dict) and ``model.json`` (class and config) into `folder`.

    Args:
        model: A level-4 model: constructor ``cls(config)`` and a pydantic ``model.config``.
        folder: Created when missing; both files are written atomically.
        extra: JSON-safe metadata stored beside the config (e.g. feature names).

    Returns:
        The folder.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, BaseModel):
        raise TypeError(f"{type(model).__name__} has no pydantic `config`; save its state_dict yourself")
    cls = type(model)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not name.startswith(_ALLOWED_PREFIX):
        raise TypeError(f"only level4_fraud models can be saved this way, not {name}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Edit the state_dict in place: it carries `_metadata` (module versions) that a quantized
    # model needs to load, and non-tensor entries (packed-parameter dtypes) stay as they are.
    state = model.state_dict()
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            state[k] = v.detach().cpu()
    with atomic_path(folder / MODEL_FILE) as tmp:
        torch.save(state, tmp)
    atomic_write_json(
        folder / META_FILE, {"class": name, "config": config.model_dump(), "extra": extra or {}}
    )
    return folder


def read_model_meta(folder: str | Path) -> dict[str, Any]:
    """The ``model.json`` written by `save_model`."""
    return json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))


def build_model(class_name: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate a level-4 model from its dotted class name and config dict (untrained)."""
    if not class_name.startswith(_ALLOWED_PREFIX):
        raise ValueError(f"refusing to load class {class_name!r}: not a level4_fraud model")
    module_name, _, attr = class_name.rpartition(".")
    cls = getattr(importlib.import_module(module_name), attr)
    cfg_cls = cls.config_cls
    return cls(cfg_cls.model_validate(config))


def load_model(folder: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by `save_model` (eval mode, on `map_location`)."""
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file() or not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no {MODEL_FILE} and {META_FILE}")
    meta = read_model_meta(folder)
    model = build_model(meta["class"], meta["config"])
    state = torch.load(folder / MODEL_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.to(map_location).eval()
