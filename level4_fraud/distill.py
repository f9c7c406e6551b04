"""Knowledge distillation of the ensemble (the teacher) into a small MLP (the student).

The teacher is whatever scores transactions best offline (the calibrated ensemble); it is too
slow for the real-time path, so a small MLP learns to reproduce its scores (Hinton et al. 2015):

    loss = alpha * T^2 * KL(soften(p_teacher, T) || sigmoid(z / T)) + (1 - alpha) * BCE(z, y)

where ``soften(p, T) = sigmoid(logit(p) / T)`` flattens the teacher's scores so that its ranking
of the many near-zero transactions carries signal, and ``T^2`` keeps the soft term's gradient on
the scale of the hard one. The teacher's scores exist for every transaction, labels only for
some (they arrive late, see the issue's label delay): rows whose label is NaN train on the
teacher alone. With ``alpha=0`` the same code trains the student on hard labels only, the
baseline distillation must beat.

The student takes raw numeric features: their standardisation is stored in the model (buffers),
so the quantized and ONNX exports (`level4_fraud.quantize`) need no separate preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from level4_fraud.models.torch_models import mlp
from level4_fraud.models.training import FitResult, LossFn, TrainConfig, fit, make_loss

_EPS = 1e-6


class StudentConfig(BaseModel):
    """Student MLP architecture (`DistillConfig.hidden` sets ``hidden`` when distilling)."""

    model_config = ConfigDict(extra="forbid")

    n_features: int = Field(..., ge=1)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.0, ge=0, lt=1)


class StudentMLP(nn.Module):
    """Standardisation (stored buffers) + MLP: ``forward(x_raw (batch, F)) -> (batch,)`` logits."""

    config_cls: ClassVar[type[StudentConfig]] = StudentConfig
    # Buffers registered in __init__ (declared so that type checkers see tensors, not modules).
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.n_features))
        self.register_buffer("scale", torch.ones(config.n_features))
        self.net = mlp([config.n_features, *config.hidden], config.dropout)

    def set_standardisation(self, x: np.ndarray) -> StudentMLP:
        """Store the mean and standard deviation of the training rows `x` (missing values ignored)."""
        x = np.asarray(x, dtype=np.float64)
        mean = np.nan_to_num(np.nanmean(x, axis=0))
        std = np.nanstd(x, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(1.0 / std, dtype=torch.float32))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) * self.scale).squeeze(-1)


class DistillConfig(BaseModel):
    """Distillation settings (quick profile; full: ``train.epochs=40``, ``hidden=[128, 64]``).

    The student trains on the teacher's scores, not on a few hundred frauds, so it needs more
    epochs and a larger learning rate than a label-trained model.
    """

    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the teacher term (1 - alpha: hard labels)")
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=25, batch_size=256, learning_rate=1e-2, patience=6)
    )


def soften(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """``sigmoid(logit(p) / T)``: the teacher's probability flattened towards 0.5 by `T`."""
    p = p.clamp(_EPS, 1 - _EPS)
    return torch.sigmoid(torch.log(p / (1 - p)) / temperature)


def bernoulli_kl(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(Bernoulli(target) || Bernoulli(sigmoid(logits)))`` (0 when they agree)."""
    t = target.clamp(_EPS, 1 - _EPS)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    entropy = -(t * torch.log(t) + (1 - t) * torch.log(1 - t))
    return bce - entropy


def distillation_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    hard_loss: LossFn | None = None,
) -> torch.Tensor:
    """The distillation objective for a batch.

    Args:
        logits: Student logits ``(batch,)``.
        targets: ``(batch, 2)``: hard label (NaN when not known yet) and teacher probability.
        temperature: Softening temperature ``T``.
        alpha: Weight of the teacher term.
        hard_loss: ``hard_loss(logits, labels)`` for labelled rows (default: plain BCE).

    Returns:
        ``alpha * T^2 * mean KL + (1 - alpha) * hard loss over the labelled rows``.
    """
    y, p_teacher = targets[:, 0], targets[:, 1]
    soft = bernoulli_kl(soften(p_teacher, temperature), logits / temperature).mean() * temperature**2
    labelled = ~torch.isnan(y)
    if alpha < 1 and bool(labelled.any()):
        hard_fn = hard_loss or nn.functional.binary_cross_entropy_with_logits
        hard = hard_fn(logits[labelled], y[labelled])
    else:
        hard = logits.new_zeros(())
    return alpha * soft + (1 - alpha) * hard


@dataclass
class DistillResult:
    """The trained student and its training record."""

    model: StudentMLP
    fit: FitResult


def distill(
    x: np.ndarray,
    y: np.ndarray,
    teacher_probs: np.ndarray,
    cfg: DistillConfig | None = None,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    val_teacher_probs: np.ndarray | None = None,
) -> DistillResult:
    """Train a student MLP on the teacher's scores and the labels known so far.

    Args:
        x: Raw numeric features ``(n, F)``.
        y: 0/1 labels, NaN where the label is not (yet) known.
        teacher_probs: The teacher's fraud probabilities for the same rows.
        cfg: Distillation settings (``alpha=0`` trains on hard labels only).
        val: ``(x_val, y_val)``, for early stopping on validation AP (labels known).
        val_teacher_probs: The teacher's scores of the validation rows: epochs are then selected
            by fidelity to the teacher (minus the mean KL at T=1), which a few hundred
            validation frauds measure far less noisily than AP. Needs `val`; its labels may
            then be NaN.

    Returns:
        The student (eval mode, best validation epoch) and the fit record.
    """
    cfg = cfg or DistillConfig()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    teacher_probs = np.asarray(teacher_probs, dtype=np.float32)
    if x.ndim != 2 or not (len(x) == len(y) == len(teacher_probs)):
        raise ValueError(f"x {x.shape}, y {y.shape} and teacher_probs {teacher_probs.shape} must align")
    if not np.isfinite(teacher_probs).all() or teacher_probs.min() < 0 or teacher_probs.max() > 1:
        raise ValueError("teacher_probs must be probabilities in [0, 1]")
    labelled = ~np.isnan(y)
    if cfg.alpha < 1 and not labelled.any():
        raise ValueError("alpha < 1 needs at least one labelled row")
    torch.manual_seed(cfg.train.seed)
    model = StudentMLP(StudentConfig(n_features=x.shape[1], hidden=cfg.hidden)).set_standardisation(x)
    # The hard term is plain BCE, whatever `cfg.train.pos_weight` says: a weighted BCE would pull
    # the student's calibration away from the (calibrated) teacher's, and the two terms would fight.
    hard = None if cfg.train.loss == "bce" else make_loss(cfg.train, y[labelled])
    targets = np.stack([y, teacher_probs], axis=1)

    def loss_fn(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return distillation_loss(logits, t, temperature=cfg.temperature, alpha=cfg.alpha, hard_loss=hard)

    val_inputs = None if val is None else ([np.asarray(val[0], dtype=np.float32)], np.asarray(val[1]))
    val_score = None
    if val_teacher_probs is not None:
        if val is None or len(val_teacher_probs) != len(val[0]):
            raise ValueError("val_teacher_probs needs val with as many rows")
        pv = torch.as_tensor(np.asarray(val_teacher_probs, dtype=np.float32))

        def val_score(logits: np.ndarray) -> float:
            z = torch.as_tensor(logits, dtype=torch.float32)
            return -float(bernoulli_kl(pv, z).mean())

    record = fit(
        model,
        [x],
        np.nan_to_num(y, nan=0.0),
        cfg.train,
        val=val_inputs,
        targets=targets,
        loss_fn=loss_fn,
        val_score=val_score,
    )
    return DistillResult(model=model, fit=record)
