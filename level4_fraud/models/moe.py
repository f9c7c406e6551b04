"""Mixture of experts over tabular inputs: a gate routes each transaction to its top-k experts.

Following Shazeer et al. (2017) and the Switch Transformer (Fedus et al. 2021):

* the gate is a linear layer (or a small MLP) giving one logit per expert;
* each row goes to the ``top_k`` experts with the largest logits, weighted by a softmax over
  those ``k`` logits only; the other experts do not run on that row (sparse dispatch);
* a load-balancing loss ``E * sum_i f_i * P_i`` (``f_i``: share of routing assignments sent to
  expert ``i``, ``P_i``: mean gate probability of expert ``i`` over the batch) keeps the gate from
  sending everything to one expert. It is 1.0 when routing is uniform and up to ``E / k`` when it
  collapses; the model leaves ``balance_coef`` times it in ``model.aux_loss`` after each
  training forward, and `level4_fraud.models.training.fit` adds it to the loss.

`predict_routing` returns every row's experts and weights; `routing_summary` tabulates them by a
grouping (channel, scenario, amount band) to show what each expert specialises in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from level4_fraud.models.torch_models import TabularEncoder, mlp
from level4_fraud.models.training import to_tensor


class MoEConfig(BaseModel):
    """Mixture-of-experts architecture (quick profile; full: ``n_experts=8, top_k=2,
    expert_hidden=[64, 32]``)."""

    model_config = ConfigDict(extra="forbid")

    n_numeric: int = Field(..., ge=0)
    cardinalities: list[int] = Field(default_factory=list)
    embedding_dim: int = Field(8, ge=1)
    n_experts: int = Field(4, ge=1)
    top_k: int = Field(2, ge=1)
    expert_hidden: list[int] = Field(default_factory=lambda: [32])
    gate_hidden: int | None = Field(None, ge=1, description="hidden width of the gate; None = linear gate")
    dropout: float = Field(0.0, ge=0, lt=1)
    balance_coef: float = Field(0.01, ge=0, description="weight of the load-balancing loss")

    @model_validator(mode="after")
    def _k_le_e(self) -> MoEConfig:
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k ({self.top_k}) cannot exceed n_experts ({self.n_experts})")
        return self


def top_k_gating(gate_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Route each row to its `k` largest gate logits.

    Args:
        gate_logits: ``(batch, E)``.
        k: Experts per row.

    Returns:
        ``(ids, weights, probs)``: ``ids`` ``(batch, k)`` expert indices (largest logit first),
        ``weights`` ``(batch, k)`` softmax over the selected logits (rows sum to 1), ``probs``
        ``(batch, E)`` softmax over all logits (for the balance loss).
    """
    top_logits, ids = gate_logits.topk(k, dim=-1)
    weights = torch.softmax(top_logits, dim=-1)
    probs = torch.softmax(gate_logits, dim=-1)
    return ids, weights, probs


def dispatch_mask(ids: torch.Tensor, n_experts: int) -> torch.Tensor:
    """``(batch, E)`` 0/1 float mask: 1 where the row was routed to the expert."""
    mask = torch.zeros(ids.shape[0], n_experts, device=ids.device)
    return mask.scatter_(1, ids, 1.0)


def load_balancing_loss(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``E * sum_i f_i * P_i`` (Switch Transformer), differentiable through ``P``.

    Args:
        probs: ``(batch, E)`` gate probabilities (softmax over all experts).
        mask: ``(batch, E)`` dispatch mask (`dispatch_mask`).

    Returns:
        A scalar: 1.0 for uniform routing, larger when few experts take most rows.
    """
    n_experts = probs.shape[1]
    f = mask.sum(0) / mask.sum().clamp_min(1.0)
    p = probs.mean(0)
    return n_experts * torch.sum(f.detach() * p)


class MixtureOfExperts(nn.Module):
    """Gate + ``n_experts`` MLP experts -> one fraud logit: ``forward(x_num, x_cat=None)``."""

    config_cls: ClassVar[type[MoEConfig]] = MoEConfig

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TabularEncoder(config.n_numeric, config.cardinalities, config.embedding_dim)
        d = self.encoder.out_dim
        if config.gate_hidden is None:
            self.gate: nn.Module = nn.Linear(d, config.n_experts)
        else:
            self.gate = nn.Sequential(
                nn.Linear(d, config.gate_hidden), nn.ReLU(), nn.Linear(config.gate_hidden, config.n_experts)
            )
        self.experts = nn.ModuleList(
            mlp([d, *config.expert_hidden], config.dropout) for _ in range(config.n_experts)
        )
        self.aux_loss: torch.Tensor | None = None
        self.balance_loss: torch.Tensor | None = None

    def route(
        self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, weights, probs)`` of `top_k_gating` for a batch."""
        return top_k_gating(self.gate(self.encoder(x_num, x_cat)), self.config.top_k)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(x_num, x_cat)
        ids, weights, probs = top_k_gating(self.gate(h), self.config.top_k)
        out = h.new_zeros(h.shape[0])
        for e, expert in enumerate(self.experts):
            # Sparse dispatch: expert e runs only on the rows (and slot) that selected it.
            rows, slot = (ids == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            out = out.index_add(0, rows, weights[rows, slot] * expert(h[rows]).squeeze(-1))
        self.balance_loss = load_balancing_loss(probs, dispatch_mask(ids, self.config.n_experts))
        self.aux_loss = self.config.balance_coef * self.balance_loss if self.training else None
        return out


@dataclass
class Routing:
    """Per-row routing of a mixture of experts.

    Attributes:
        expert_ids: ``(n, k)`` selected experts, highest gate weight first.
        gate_weights: ``(n, k)`` their weights (rows sum to 1).
        probs: ``(n, E)`` full gate probabilities.
    """

    expert_ids: np.ndarray
    gate_weights: np.ndarray
    probs: np.ndarray

    @property
    def n_experts(self) -> int:
        """Number of experts E."""
        return int(self.probs.shape[1])

    def dense_weights(self) -> np.ndarray:
        """``(n, E)`` gate weight of each expert for each row (0 where not selected)."""
        dense = np.zeros((len(self.expert_ids), self.n_experts), dtype=np.float64)
        np.put_along_axis(dense, self.expert_ids, self.gate_weights.astype(np.float64), axis=1)
        return dense


@torch.no_grad()
def predict_routing(
    model: MixtureOfExperts, inputs: Sequence[np.ndarray], *, batch_size: int = 8192
) -> Routing:
    """Route every row of `inputs` (``[x_num]`` or ``[x_num, x_cat]``) through the gate."""
    device = next(model.parameters()).device
    xs = [to_tensor(a) for a in inputs]
    n = len(xs[0])
    was_training = model.training
    model.eval()
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    try:
        for lo in range(0, n, batch_size):
            ids, w, p = model.route(*[x[lo : lo + batch_size].to(device) for x in xs])
            parts.append((ids.cpu().numpy(), w.cpu().numpy(), p.cpu().numpy()))
    finally:
        model.train(was_training)
    k, e = model.config.top_k, model.config.n_experts
    if not parts:
        return Routing(np.zeros((0, k), np.int64), np.zeros((0, k), np.float32), np.zeros((0, e), np.float32))
    return Routing(*(np.concatenate([p[i] for p in parts]) for i in range(3)))


def routing_summary(routing: Routing, groups: Sequence[object] | np.ndarray | pd.Series) -> pd.DataFrame:
    """What each expert specialises in: the share of a group's gate weight each expert receives.

    Args:
        routing: From `predict_routing`.
        groups: One label per row (channel, fraud scenario, amount band...); missing labels
            form their own group.

    Returns:
        One row per group (sorted by label) with ``n`` (rows), ``expert_0..expert_{E-1}`` (mean
        gate weight of each expert over the group's rows; each row of the table sums to 1) and
        ``top_expert`` (the expert with the largest share), plus an ``"all"`` row for every row.
    """
    labels = pd.Series(
        np.asarray(groups, dtype=object) if not isinstance(groups, pd.Series) else groups.to_numpy()
    )
    if len(labels) != len(routing.expert_ids):
        raise ValueError(f"{len(labels)} group labels for {len(routing.expert_ids)} routed rows")
    cols = [f"expert_{i}" for i in range(routing.n_experts)]
    dense = pd.DataFrame(routing.dense_weights(), columns=cols)
    dense["group"] = labels.to_numpy()
    grouped = dense.groupby("group", dropna=False, sort=True)
    table = grouped[cols].mean()
    table.insert(0, "n", grouped.size().astype(int))
    overall = pd.DataFrame([[len(dense), *dense[cols].mean().tolist()]], columns=["n", *cols], index=["all"])
    table = pd.concat([table, overall])
    table["n"] = table["n"].astype(int)
    table["top_expert"] = table[cols].to_numpy().argmax(axis=1)
    table.index.name = "group"
    return table
