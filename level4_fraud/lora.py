"""LoRA adaptation of the pretrained sequence transformer to a new bank or region.

A model pretrained on the global population (population A) meets a new institution
(population B: other amounts, other habits) that has only a few labelled frauds. Three ways to
use those labels are compared on B's held-out transactions:

* **LoRA** (peft): the pretrained weights stay frozen; low-rank adapters ``B @ A`` (rank ``r``)
  are added to the named linear layers (``q_proj``, ``v_proj`` by default, as in Hu et al.
  2021) and, optionally, a trainable copy of the classification head is kept
  (``modules_to_save``). Only those train: a few percent of the parameters.
* **full fine-tuning**: every weight of a copy of the pretrained model trains.
* **from scratch**: a fresh model of the same architecture trains on B's labels alone.

`compare_adaptation` returns AP, trainable parameters and seconds for each (plus the
pretrained model applied to B as it is). Arrays in, frames out: the integration builds the two
populations with the simulator and `level4_fraud.models.sequence.build_card_sequences`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score
from torch import nn

from level4_fraud.models.sequence import SequenceTransformer, SequenceTransformerConfig
from level4_fraud.models.training import FitResult, TrainConfig, count_parameters, fit, predict_proba
from shared.atomic import atomic_dir

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class SequenceSet:
    """Card sequences with labels: ``x (n, L, F)``, ``mask (n, L)``, ``y (n,)``."""

    x: np.ndarray
    mask: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.x) == len(self.mask) == len(self.y)):
            raise ValueError(f"x ({len(self.x)}), mask ({len(self.mask)}) and y ({len(self.y)}) must align")

    @property
    def inputs(self) -> list[np.ndarray]:
        """``[x, mask]``, the model inputs `fit` and `predict_proba` take."""
        return [self.x, self.mask]

    def __len__(self) -> int:
        """Number of sequences."""
        return len(self.y)


class LoraSettings(BaseModel):
    """The adapter (quick and full profiles alike).

    With the default transformer (``d_model=64``, two blocks), rank 4 on ``q_proj`` and
    ``v_proj`` plus the head copy trains about 3 % of the parameters; adding ``k_proj``,
    ``out_proj``, ``fc1`` and ``fc2`` raises that to about 10 %.
    """

    model_config = ConfigDict(extra="forbid")

    r: int = Field(4, ge=1, description="rank of the low-rank update")
    # An integer, as peft's LoraConfig declares it.
    alpha: int = Field(8, gt=0, description="LoRA scaling numerator: the update is (alpha / r) * B @ A")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    train_head: bool = Field(True, description="train a copy of the classification head (modules_to_save)")


def _default_lora_train() -> TrainConfig:
    return TrainConfig(epochs=30, batch_size=64, learning_rate=1e-2, weight_decay=0.0, patience=8)


def _default_finetune() -> TrainConfig:
    return TrainConfig(epochs=30, batch_size=64, learning_rate=1e-3, patience=8)


def _default_scratch() -> TrainConfig:
    return TrainConfig(epochs=30, batch_size=64, learning_rate=3e-3, patience=8)


class AdaptationConfig(BaseModel):
    """Settings of the three adaptation arms (quick profile; full: ``epochs=60`` in each).

    Each arm gets the same data and early stopping on the same validation rows; learning rates
    differ as each method needs (adapters start at zero and want a larger step; a full
    fine-tune a small one, not to forget the pretraining).
    """

    model_config = ConfigDict(extra="forbid")

    lora: LoraSettings = Field(default_factory=LoraSettings)
    lora_train: TrainConfig = Field(default_factory=_default_lora_train)
    finetune: TrainConfig = Field(default_factory=_default_finetune)
    scratch: TrainConfig = Field(default_factory=_default_scratch)
    seed: int = 42


def apply_lora(model: nn.Module, settings: LoraSettings | None = None, *, seed: int = 42) -> nn.Module:
    """A peft LoRA model around a copy of `model` (which is left untouched).

    Args:
        model: The pretrained model (e.g. `SequenceTransformer`).
        settings: Rank, scaling, target module names, head.
        seed: Seeds the adapters' random initialisation.

    Returns:
        The ``PeftModel``: only adapter (and head-copy) parameters require gradients.
    """
    from peft import LoraConfig, get_peft_model

    settings = settings or LoraSettings()
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in settings.target_modules if t not in names]
    if missing:
        raise ValueError(f"LoRA target modules not in the model: {missing}")
    head = ["head"] if settings.train_head and "head" in names else None
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        modules_to_save=head,
        bias="none",
    )
    torch.manual_seed(seed)
    return get_peft_model(copy.deepcopy(model), config)


def save_adapter(peft_model: nn.Module, folder: str | Path) -> Path:
    """Write the adapter (weights as safetensors + ``adapter_config.json``) atomically to `folder`."""
    with atomic_dir(folder) as tmp:
        peft_model.save_pretrained(str(tmp))  # type: ignore[operator]
    return Path(folder)


def load_adapter(base_model: nn.Module, folder: str | Path) -> nn.Module:
    """The adapter in `folder` on a copy of `base_model` (the same pretrained weights), in eval mode."""
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"{folder} holds no {ADAPTER_CONFIG}")
    return PeftModel.from_pretrained(copy.deepcopy(base_model), str(folder)).eval()


def base_weights(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The wrapped pretrained model's own weights, under the names they have without peft.

    Adapter weights (``lora_*``) and the trainable head copy are left out; the frozen original
    head is included.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in peft_model.state_dict().items():
        if "lora_" in name or ".modules_to_save." in name:
            continue
        clean = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        out[clean.replace(".original_module.", ".")] = tensor
    return out


def pretrain(
    config: SequenceTransformerConfig,
    train: SequenceSet,
    val: SequenceSet | None,
    cfg: TrainConfig | None = None,
) -> tuple[SequenceTransformer, FitResult]:
    """Train a sequence transformer on population A (the model LoRA will adapt)."""
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    model = SequenceTransformer(config)
    record = fit(model, train.inputs, train.y, cfg, val=None if val is None else (val.inputs, val.y))
    return model, record


@dataclass
class AdaptationResult:
    """The comparison table and the adapted models (``"lora"``, ``"full_finetune"``, ``"scratch"``)."""

    table: pd.DataFrame
    models: dict[str, nn.Module]


def _ap(model: nn.Module, data: SequenceSet) -> float:
    return float(average_precision_score(data.y, predict_proba(model, data.inputs)))


def compare_adaptation(
    pretrained: SequenceTransformer,
    train_b: SequenceSet,
    val_b: SequenceSet,
    test_b: SequenceSet,
    cfg: AdaptationConfig | None = None,
) -> AdaptationResult:
    """Adapt `pretrained` to population B three ways and score each on B's test rows.

    Args:
        pretrained: Trained on population A (left unchanged).
        train_b: B's few labelled sequences.
        val_b: B's validation rows (early stopping of every arm).
        test_b: B's held-out rows.
        cfg: Settings of the arms.

    Returns:
        A table with one row per method (``pretrained_only``, ``lora``, ``full_finetune``,
        ``scratch``): ``ap``, ``trainable_params``, ``total_params``, ``trainable_share``,
        ``seconds`` (training time), ``epochs`` (kept epoch), and the trained models.
    """
    cfg = cfg or AdaptationConfig()
    rows: list[dict[str, Any]] = []
    models: dict[str, nn.Module] = {}
    val = (val_b.inputs, val_b.y)

    def record(method: str, model: nn.Module, seconds: float, epochs: int) -> None:
        trainable, total = count_parameters(model)
        rows.append(
            {
                "method": method,
                "ap": _ap(model, test_b),
                "trainable_params": trainable,
                "total_params": total,
                "trainable_share": trainable / total,
                "seconds": seconds,
                "epochs": epochs,
            }
        )

    frozen = copy.deepcopy(pretrained).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    record("pretrained_only", frozen, 0.0, 0)

    start = time.perf_counter()
    lora = apply_lora(pretrained, cfg.lora, seed=cfg.seed)
    res = fit(lora, train_b.inputs, train_b.y, cfg.lora_train.model_copy(update={"seed": cfg.seed}), val=val)
    record("lora", lora, time.perf_counter() - start, res.best_epoch)
    models["lora"] = lora

    start = time.perf_counter()
    full = copy.deepcopy(pretrained)
    for p in full.parameters():
        p.requires_grad_(True)
    res = fit(full, train_b.inputs, train_b.y, cfg.finetune.model_copy(update={"seed": cfg.seed}), val=val)
    record("full_finetune", full, time.perf_counter() - start, res.best_epoch)
    models["full_finetune"] = full

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    scratch = SequenceTransformer(pretrained.config)
    res = fit(scratch, train_b.inputs, train_b.y, cfg.scratch.model_copy(update={"seed": cfg.seed}), val=val)
    record("scratch", scratch, time.perf_counter() - start, res.best_epoch)
    models["scratch"] = scratch

    return AdaptationResult(table=pd.DataFrame(rows), models=models)
