"""Mixture of experts: top-k routing, sparse dispatch, gradients, balance loss, routing summary."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import BaseModel, ValidationError
from sklearn.metrics import average_precision_score
from torch import nn

from level4_fraud.models.moe import (
    MixtureOfExperts,
    MoEConfig,
    Routing,
    dispatch_mask,
    load_balancing_loss,
    predict_routing,
    routing_summary,
    top_k_gating,
)
from level4_fraud.models.training import TrainConfig, fit, load_model, predict_proba, save_model


def _model(**kw) -> MixtureOfExperts:
    torch.manual_seed(0)
    cfg = {"n_numeric": 3, "cardinalities": [5], "n_experts": 4, "top_k": 2, "expert_hidden": [8], **kw}
    return MixtureOfExperts(MoEConfig(**cfg))


def _batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g), torch.randint(0, 5, (n, 1), generator=g)


def test_top_k_gating_known_answer():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 5.0, 4.0]])
    ids, w, probs = top_k_gating(logits, 2)
    assert ids.tolist() == [[1, 2], [2, 3]]
    e = math.exp(1.0)
    np.testing.assert_allclose(w.numpy(), [[e / (e + 1), 1 / (e + 1)]] * 2, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(1).numpy(), [1.0, 1.0], rtol=1e-6)
    mask = dispatch_mask(ids, 4)
    assert mask.tolist() == [[0, 1, 1, 0], [0, 0, 1, 1]]


def test_forward_backward_shapes_and_aux_loss_only_in_training():
    model = _model()
    x, c = _batch()
    out = model(x, c)
    assert out.shape == (64,)
    assert model.aux_loss is not None and model.aux_loss.ndim == 0
    (out.sum() + model.aux_loss).backward()
    assert model.gate.weight.grad is not None and model.gate.weight.grad.abs().sum() > 0
    model.eval()
    model(x, c)
    assert model.aux_loss is None and model.balance_loss is not None


def test_sparse_dispatch_equals_dense_mixture_of_selected_experts():
    model = _model().eval()
    x, c = _batch(32)
    with torch.no_grad():
        h = model.encoder(x, c)
        ids, w, _ = model.route(x, c)
        every = torch.stack([e(h).squeeze(-1) for e in model.experts], dim=1)  # (n, E)
        expected = (torch.gather(every, 1, ids) * w).sum(1)
        torch.testing.assert_close(model(x, c), expected)


def test_gradients_reach_exactly_the_selected_experts():
    model = _model()
    # Bias the gate so that every row picks experts 0 and 2: 1 and 3 must get no gradient.
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.copy_(torch.tensor([5.0, -5.0, 4.0, -5.0]))
    x, c = _batch()
    ids, _, _ = model.route(x, c)
    assert set(ids.flatten().tolist()) == {0, 2}
    model(x, c).sum().backward()
    for e, expert in enumerate(model.experts):
        grads = [p.grad for p in expert.parameters()]
        if e in (0, 2):
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None or g.abs().sum() == 0 for g in grads)


def test_gradients_reach_every_expert_selected_by_some_row():
    model = _model()
    x, c = _batch(256)
    selected = set(model.route(x, c)[0].flatten().tolist())
    model(x, c).sum().backward()
    got = {
        e
        for e, ex in enumerate(model.experts)
        if ex[0].weight.grad is not None and ex[0].weight.grad.abs().sum() > 0
    }
    assert got == selected and len(selected) >= 2


def test_balance_loss_is_one_for_uniform_routing_and_larger_when_collapsed():
    n, e = 8, 4
    uniform_probs = torch.full((n, e), 1 / e)
    # k=2, each expert picked by exactly half of the rows.
    ids = torch.tensor([[0, 1], [2, 3]] * (n // 2))
    assert float(load_balancing_loss(uniform_probs, dispatch_mask(ids, e))) == pytest.approx(1.0)
    # Top-1 collapse onto expert 0 with a confident gate: the loss approaches E.
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01]]).repeat(n, 1)
    collapsed = load_balancing_loss(probs, dispatch_mask(torch.zeros(n, 1, dtype=torch.long), e))
    assert float(collapsed) == pytest.approx(e * 0.97)
    # Top-2 collapse onto experts 0 and 1: E/k = 2 in the limit.
    probs2 = torch.tensor([[0.5, 0.5, 0.0, 0.0]]).repeat(n, 1)
    ids2 = torch.tensor([[0, 1]] * n)
    assert float(load_balancing_loss(probs2, dispatch_mask(ids2, e))) == pytest.approx(2.0)


def test_balance_loss_gradient_spreads_a_collapsed_gate():
    model = _model(balance_coef=1.0)
    with torch.no_grad():
        model.gate.bias.copy_(torch.tensor([3.0, 2.5, 0.0, 0.0]))
    x, c = _batch(256)
    opt = torch.optim.SGD(model.gate.parameters(), lr=0.5)
    first = None
    for _ in range(60):
        model(x, c)
        loss = model.balance_loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    model(x, c)
    assert float(model.balance_loss.detach()) < first - 0.2
    counts = dispatch_mask(model.route(x, c)[0], 4).sum(0)
    assert int((counts > 0).sum()) >= 3


def test_config_rejects_k_larger_than_experts():
    with pytest.raises(ValidationError):
        MoEConfig(n_numeric=2, n_experts=2, top_k=3)


class _AuxOnly(nn.Module):
    """A model whose only learning signal is its auxiliary loss (w pulled to 3)."""

    class Cfg(BaseModel):
        pass

    config_cls: ClassVar = Cfg

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.aux_loss = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.aux_loss = (self.w - 3.0) ** 2
        return x[:, 0] * 0.0 + self.w.detach() * 0.0


def test_fit_adds_the_models_aux_loss():
    model = _AuxOnly()
    x = np.zeros((64, 1), np.float32)
    y = np.zeros(64, np.float32)
    fit(model, [x], y, TrainConfig(epochs=30, batch_size=64, learning_rate=0.2, weight_decay=0, device="cpu"))
    assert model.w.item() == pytest.approx(3.0, abs=0.1)


def _two_regime_task(n: int, seed: int):
    # Channel 1 frauds are large amounts, channel 2 frauds are tiny amounts: two regimes.
    rng = np.random.default_rng(seed)
    ch = rng.integers(1, 3, size=n)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    logit = np.where(ch == 1, 3 * x[:, 0], -3 * x[:, 0]) - 3.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, ch[:, None].astype(np.int64), y, logit


def test_moe_fits_a_two_regime_task_and_routes_every_row():
    x, c, y, _ = _two_regime_task(3000, 0)
    xv, cv, yv, lv = _two_regime_task(1500, 1)
    model = _model(cardinalities=[3])
    fit(
        model,
        [x, c],
        y,
        TrainConfig(epochs=10, batch_size=128, learning_rate=5e-3, device="cpu"),
        val=([xv, cv], yv),
    )
    ap = average_precision_score(yv, predict_proba(model, [xv, cv]))
    assert ap > 0.85 * average_precision_score(yv, lv)
    routing = predict_routing(model, [xv, cv], batch_size=500)
    assert routing.expert_ids.shape == (1500, 2) and routing.probs.shape == (1500, 4)
    np.testing.assert_allclose(routing.gate_weights.sum(1), 1.0, rtol=1e-5)
    assert (routing.expert_ids[:, 0] == routing.probs.argmax(1)).all()
    table = routing_summary(routing, np.where(cv[:, 0] == 1, "pos", "ecom"))
    assert list(table.index) == ["ecom", "pos", "all"]
    assert table.loc["all", "n"] == 1500


def test_routing_summary_known_input():
    routing = Routing(
        expert_ids=np.array([[0, 1], [0, 2], [2, 1], [1, 0]]),
        gate_weights=np.array([[0.75, 0.25], [0.5, 0.5], [1.0, 0.0], [0.6, 0.4]]),
        probs=np.full((4, 3), 1 / 3),
    )
    table = routing_summary(routing, pd.Series(["b", "b", "a", None]))
    assert list(table.columns) == ["n", "expert_0", "expert_1", "expert_2", "top_expert"]
    assert table.loc["a"].tolist() == [1, 0.0, 0.0, 1.0, 2]
    assert table.loc["b", "n"] == 2
    np.testing.assert_allclose(
        table.loc["b", ["expert_0", "expert_1", "expert_2"]].astype(float), [0.625, 0.125, 0.25]
    )
    assert table.loc["b", "top_expert"] == 0
    missing = table[table.index.isna()]
    assert missing["expert_1"].item() == pytest.approx(0.6) and missing["top_expert"].item() == 1
    np.testing.assert_allclose(
        table.loc["all", ["expert_0", "expert_1", "expert_2"]].astype(float),
        [(0.75 + 0.5 + 0.4) / 4, 0.85 / 4, 1.5 / 4],
    )
    with pytest.raises(ValueError, match="group labels"):
        routing_summary(routing, ["a"])


def test_moe_save_load_round_trip(tmp_path):
    model = _model().eval()
    x, c = _batch(16)
    save_model(model, tmp_path / "moe")
    back = load_model(tmp_path / "moe")
    assert isinstance(back, MixtureOfExperts)
    np.testing.assert_array_equal(
        predict_proba(model, [x.numpy(), c.numpy()]), predict_proba(back, [x.numpy(), c.numpy()])
    )
