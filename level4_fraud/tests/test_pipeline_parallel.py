"""Pipeline parallelism: two stage processes compute what one process computes on the same batches."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from level4_fraud.distributed.pipeline_parallel import (
    PipelineConfig,
    PipelineResult,
    bce_with_logits,
    train_pipeline,
)
from level4_fraud.models.sequence import SequenceTransformer, SequenceTransformerConfig

TOL = {"rtol": 1e-5, "atol": 1e-5}


class TwoStageMLP(nn.Module):
    """A small MLP whose two halves are views on its own layers; no dropout (deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh())
        self.back = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1))

    def stages(self) -> tuple[nn.Module, nn.Module]:
        return self.front, _Squeeze(self.back)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x)).squeeze(-1)


class _Squeeze(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.inner(h).squeeze(-1)


class HalfStaged(TwoStageMLP):
    """Forgets its last layer in stages(): the pipeline would never train it."""

    def stages(self) -> tuple[nn.Module, nn.Module]:
        return self.front, self.back[:2]


def _mlp_batches(steps: int = 3, rows: int = 16) -> list[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
    g = torch.Generator().manual_seed(11)
    out = []
    for _ in range(steps):
        x = torch.randn(rows, 5, generator=g)
        y = (x[:, 0] - x[:, 2] > 0.3).float()
        out.append(((x,), y))
    return out


def _single_process(factory, batches, cfg: PipelineConfig, seed: int = 0):  # type: ignore[no-untyped-def]
    """Plain training on the whole batch: losses per step, first-step gradients, final weights."""
    torch.manual_seed(seed)
    model = factory()
    opt_cls = torch.optim.SGD if cfg.optimizer == "sgd" else torch.optim.AdamW
    opt = opt_cls(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    losses, grads, micro = [], {}, []
    for i, (inputs, target) in enumerate(batches):
        opt.zero_grad()
        loss = bce_with_logits(model(*inputs), target)
        loss.backward()
        losses.append(float(loss.detach()))
        if i == 0:
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
            with torch.no_grad():
                chunks = zip(*(t.chunk(cfg.n_microbatches) for t in (*inputs, target)), strict=True)
                micro = [float(bce_with_logits(model(*c[:-1]), c[-1])) for c in chunks]
        opt.step()
    return losses, grads, micro, model.state_dict()


def _assert_matches_single_process(result: PipelineResult, factory, batches, cfg: PipelineConfig) -> None:  # type: ignore[no-untyped-def]
    losses, grads, micro, state = _single_process(factory, batches, cfg)
    assert result.microbatch_losses[0] == pytest.approx(micro, abs=1e-5)
    assert result.losses == pytest.approx(losses, abs=1e-5)
    assert result.first_step_grads.keys() == grads.keys()
    assert torch.cat([g.reshape(-1) for g in grads.values()]).norm() > 1e-3, "a zero gradient proves nothing"
    for name, g in grads.items():
        torch.testing.assert_close(result.first_step_grads[name], g, **TOL, msg=name)
    assert result.state_dict.keys() == state.keys()
    for name, value in state.items():
        torch.testing.assert_close(result.state_dict[name], value, **TOL, msg=name)


@pytest.mark.slow  # two spawned processes importing torch: about 30 s on 2 busy cores
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_two_stage_pipeline_equals_single_process_training(schedule: str) -> None:
    cfg = PipelineConfig(schedule=schedule, n_microbatches=4, learning_rate=1e-2)
    batches = _mlp_batches()
    result = train_pipeline(TwoStageMLP, batches, cfg)
    assert result.schedule == schedule and result.backend == "gloo"
    assert len(result.microbatch_losses) == len(batches)
    assert all(len(m) == cfg.n_microbatches for m in result.microbatch_losses)
    _assert_matches_single_process(result, TwoStageMLP, batches, cfg)
    assert result.losses[-1] != result.losses[0], "the optimiser stepped between batches"


@pytest.mark.slow
def test_sequence_transformer_pipeline_equals_single_process_training() -> None:
    # The level's own model: (x, mask) into the first stage, (h, mask) across the pipe.
    config = SequenceTransformerConfig(
        n_features=3, max_len=6, d_model=8, n_heads=2, n_layers=2, ff_dim=16, dropout=0.0
    )
    factory = functools.partial(SequenceTransformer, config)
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(2):
        x = torch.randn(8, 6, 3, generator=g)
        lengths = torch.randint(1, 7, (8,), generator=g)
        mask = (torch.arange(6)[None, :] >= 6 - lengths[:, None]).float()
        x = x * mask[:, :, None]
        y = (x[:, -1, 0] > 0).float()
        batches.append(((x, mask), y))
    # SGD: attention's key bias has a zero true gradient (softmax ignores a shift shared by all
    # keys); Adam would turn its rounding noise into full-size steps in either run.
    cfg = PipelineConfig(schedule="1f1b", n_microbatches=4, optimizer="sgd", learning_rate=0.1)
    result = train_pipeline(factory, batches, cfg)
    _assert_matches_single_process(result, factory, batches, cfg)


def test_rejects_batches_that_do_not_split_into_equal_microbatches() -> None:
    ((x,), y) = _mlp_batches(steps=1, rows=10)[0]
    with pytest.raises(ValueError, match="not a multiple of 4"):
        train_pipeline(TwoStageMLP, [((x,), y)], PipelineConfig(n_microbatches=4))


def test_rejects_models_without_stages_or_with_untrained_parameters() -> None:
    batches = _mlp_batches(steps=1)
    with pytest.raises(ValueError, match="no stages"):
        train_pipeline(functools.partial(nn.Linear, 5, 1), batches)
    with pytest.raises(ValueError, match=r"in no stage.*back\.2\.weight"):
        train_pipeline(HalfStaged, batches)
