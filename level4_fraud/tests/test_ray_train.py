"""Ray Train data parallelism: two DDP workers train the model one process would on the same batches."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from level4_fraud.distributed.cluster import RayConfig, RaySession, ray_session
from level4_fraud.distributed.train import DataParallelConfig, DataParallelResult, train_data_parallel
from level4_fraud.models.training import TrainConfig, make_loss, predict_logits

pytestmark = pytest.mark.slow  # a Ray start and a TorchTrainer run: about a minute on 2 busy cores

WORLD = 2
TRAIN = TrainConfig(epochs=5, batch_size=32, learning_rate=2e-2, patience=10, seed=3, grad_clip=1.0)


class TinyNet(nn.Module):
    """A two-layer MLP without dropout, so one process can replay the workers exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 4)).astype(np.float32)
    y = (x[:, 0] + 0.7 * x[:, 1] + 0.3 * rng.normal(size=len(x)) > 1.3).astype(np.float32)
    return x, y


def _replay_in_one_process(
    x: np.ndarray, y: np.ndarray, val: tuple[np.ndarray, np.ndarray]
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """What DDP computes, in one process: per step, the mean of each rank's mean loss on its batch.

    Each rank's batches come from its own DistributedSampler (the order the workers use); the
    gradient of the averaged loss is the all-reduced gradient DDP applies on every rank.
    """
    torch.manual_seed(TRAIN.seed)
    model = TinyNet()
    data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    samplers = [
        DistributedSampler(data, num_replicas=WORLD, rank=r, shuffle=True, seed=TRAIN.seed)
        for r in range(WORLD)
    ]
    loss_fn = make_loss(TRAIN, y)
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN.learning_rate, weight_decay=TRAIN.weight_decay)
    best, best_state, val_aps = -math.inf, None, []
    for epoch in range(1, TRAIN.epochs + 1):
        for s in samplers:
            s.set_epoch(epoch)
        loaders = [list(DataLoader(data, batch_size=TRAIN.batch_size, sampler=s)) for s in samplers]
        for per_rank in zip(*loaders, strict=True):
            loss = sum(loss_fn(model(xb), tb) for xb, tb in per_rank) / WORLD
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), TRAIN.grad_clip)
            opt.step()
        ap = float(average_precision_score(val[1], predict_logits(model, [val[0]])))
        val_aps.append(ap)
        if ap > best:
            best, best_state = ap, {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    return best_state, val_aps


@pytest.fixture(scope="module")
def session() -> Iterator[RaySession]:
    with ray_session(RayConfig(num_cpus=2)) as s:
        yield s


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = _problem()
    return x[:800], y[:800], x[800:], y[800:]


@pytest.fixture(scope="module")
def run(session: RaySession, problem: tuple[np.ndarray, ...]) -> DataParallelResult:
    x, y, xv, yv = problem
    cfg = DataParallelConfig(num_workers=WORLD, train=TRAIN)
    return train_data_parallel(TinyNet, [x], y, session, cfg, val=([xv], yv))


def test_two_gloo_workers_train_on_cpu(run: DataParallelResult) -> None:
    assert run.world_size == WORLD
    assert run.backend == ("nccl" if torch.cuda.device_count() >= WORLD else "gloo")
    assert len(run.history) == TRAIN.epochs
    losses = [h["train_loss"] for h in run.history]
    assert losses[-1] < 0.7 * losses[0], losses


def test_trained_model_ranks_far_above_chance(
    run: DataParallelResult, problem: tuple[np.ndarray, ...]
) -> None:
    _, _, xv, yv = problem
    scores = predict_logits(run.model, [xv])
    ap = average_precision_score(yv, scores)
    assert ap > 0.8 > 3 * yv.mean(), (ap, yv.mean())
    assert run.best_val_ap == pytest.approx(ap, abs=1e-6)
    assert run.best_val_ap == max(h["val_ap"] for h in run.history)


def test_workers_end_with_identical_weights(run: DataParallelResult) -> None:
    # Each worker saw different rows; only averaged gradients keep the replicas equal.
    assert run.param_spread == 0.0


def test_gradients_were_averaged_like_one_process_on_the_global_batches(
    run: DataParallelResult, problem: tuple[np.ndarray, ...]
) -> None:
    x, y, xv, yv = problem
    expected, val_aps = _replay_in_one_process(x, y, (xv, yv))
    assert [h["val_ap"] for h in run.history] == pytest.approx(val_aps, abs=1e-6)
    assert expected.keys() == run.state_dict.keys()
    for name, value in expected.items():
        torch.testing.assert_close(run.state_dict[name], value, rtol=1e-5, atol=1e-5, msg=name)


def test_rejects_inputs_and_labels_of_different_lengths(session: RaySession) -> None:
    x, y = _problem()
    with pytest.raises(ValueError, match="one row per label"):
        train_data_parallel(TinyNet, [x[:10]], y[:11], session)
