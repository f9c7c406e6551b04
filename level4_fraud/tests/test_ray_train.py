"""Ray Train data parallelism: two DDP workers train the model one process would on the same batches."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from sklearn.metrics import average_precision_score
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from level4_fraud.distributed.cluster import RayConfig, RaySession, ray_session
from level4_fraud.distributed.train import DataParallelConfig, DataParallelResult, train_data_parallel
from level4_fraud.models.torch_models import TabularMLP, TabularMLPConfig
from level4_fraud.models.training import TrainConfig, load_model, make_loss, predict_logits, to_tensor
from shared.tracking import MlflowTracker

pytestmark = pytest.mark.slow  # a Ray start and a TorchTrainer run: about a minute on 2 busy cores

WORLD = 2
TRAIN = TrainConfig(epochs=5, batch_size=32, learning_rate=2e-2, patience=10, seed=3, grad_clip=1.0)


# The level's tabular MLP (numeric features and an embedded categorical field), without
# dropout so one process can replay the workers exactly.
Problem = tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]
"""Training inputs (numeric, categorical), labels, validation inputs, validation labels."""

FACTORY = functools.partial(
    TabularMLP, TabularMLPConfig(n_numeric=4, cardinalities=[4], embedding_dim=3, hidden=[16], dropout=0.0)
)


def _problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 4)).astype(np.float32)
    cat = rng.integers(1, 4, size=(1200, 1))
    y = (x[:, 0] + 0.7 * x[:, 1] + 0.8 * (cat[:, 0] == 2) + 0.3 * rng.normal(size=len(x)) > 1.5).astype(
        np.float32
    )
    return x, cat, y


def _replay_in_one_process(
    inputs: list[np.ndarray], y: np.ndarray, val: tuple[list[np.ndarray], np.ndarray]
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """What DDP computes, in one process: per step, the mean of each rank's mean loss on its batch.

    Each rank's batches come from its own DistributedSampler (the order the workers use); the
    gradient of the averaged loss is the all-reduced gradient DDP applies on every rank.
    """
    torch.manual_seed(TRAIN.seed)
    model = FACTORY()
    data = TensorDataset(*(to_tensor(a) for a in inputs), torch.from_numpy(y))
    samplers = [DistributedSampler(data, WORLD, r, shuffle=True, seed=TRAIN.seed) for r in range(WORLD)]
    loss_fn = make_loss(TRAIN, y)
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN.learning_rate, weight_decay=TRAIN.weight_decay)
    best, best_state, val_aps = -math.inf, None, []
    for epoch in range(1, TRAIN.epochs + 1):
        for s in samplers:
            s.set_epoch(epoch)
        loaders = [list(DataLoader(data, batch_size=TRAIN.batch_size, sampler=s)) for s in samplers]
        for per_rank in zip(*loaders, strict=True):
            loss = sum(loss_fn(model(*xb), tb) for *xb, tb in per_rank) / WORLD
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), TRAIN.grad_clip)
            opt.step()
        ap = float(average_precision_score(val[1], predict_logits(model, val[0])))
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
def problem() -> Problem:
    x, cat, y = _problem()
    return [x[:800], cat[:800]], y[:800], [x[800:], cat[800:]], y[800:]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> MlflowTracker:
    folder = tmp_path_factory.mktemp("mlflow")
    return MlflowTracker(f"sqlite:///{folder / 'mlflow.db'}", "l4-train-test")


@pytest.fixture(scope="module")
def run(session: RaySession, problem: Problem, tracker: MlflowTracker) -> DataParallelResult:
    inputs, y, val_inputs, yv = problem
    cfg = DataParallelConfig(num_workers=WORLD, train=TRAIN)
    return train_data_parallel(
        FACTORY, inputs, y, session, cfg, val=(val_inputs, yv), tracker=tracker, run_name="ddp-test"
    )


def test_two_gloo_workers_train_on_cpu(run: DataParallelResult) -> None:
    assert run.world_size == WORLD
    assert run.backend == ("nccl" if torch.cuda.device_count() >= WORLD else "gloo")
    assert len(run.history) == TRAIN.epochs
    losses = [h["train_loss"] for h in run.history]
    assert losses[-1] < 0.7 * losses[0], losses


def test_trained_model_ranks_far_above_chance(run: DataParallelResult, problem: Problem) -> None:
    _, _, val_inputs, yv = problem
    scores = predict_logits(run.model, val_inputs)
    ap = average_precision_score(yv, scores)
    assert ap > 0.8 > 3 * yv.mean(), (ap, yv.mean())
    assert run.best_val_ap == pytest.approx(ap, abs=1e-6)
    assert run.best_val_ap == max(h["val_ap"] for h in run.history)


def test_workers_end_with_identical_weights(run: DataParallelResult) -> None:
    # Each worker saw different rows; only averaged gradients keep the replicas equal.
    assert run.param_spread == 0.0


def test_gradients_were_averaged_like_one_process_on_the_global_batches(
    run: DataParallelResult,
    problem: Problem,
) -> None:
    inputs, y, val_inputs, yv = problem
    expected, val_aps = _replay_in_one_process(inputs, y, (val_inputs, yv))
    assert [h["val_ap"] for h in run.history] == pytest.approx(val_aps, abs=1e-6)
    assert expected.keys() == run.state_dict.keys()
    for name, value in expected.items():
        torch.testing.assert_close(run.state_dict[name], value, rtol=1e-5, atol=1e-5, msg=name)


def test_run_is_logged_to_mlflow_with_its_history_and_model(
    run: DataParallelResult, tracker: MlflowTracker
) -> None:
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    mlrun = client.get_run(run.mlflow_run_id)
    assert mlrun.info.run_name == "ddp-test"
    assert mlrun.data.params["num_workers"] == str(WORLD)
    assert mlrun.data.params["train.learning_rate"] == str(TRAIN.learning_rate)
    assert mlrun.data.params["backend"] == run.backend
    assert mlrun.data.metrics["best_val_ap"] == pytest.approx(run.best_val_ap)
    history = client.get_metric_history(run.mlflow_run_id, "val_ap")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, TRAIN.epochs + 1))
    folder = Path(client.download_artifacts(run.mlflow_run_id, "model"))
    restored = load_model(folder)
    for name, value in run.state_dict.items():
        torch.testing.assert_close(restored.state_dict()[name], value, msg=name)


def test_rejects_inputs_and_labels_of_different_lengths(session: RaySession) -> None:
    x, cat, y = _problem()
    with pytest.raises(ValueError, match="one row per label"):
        train_data_parallel(FACTORY, [x[:10], cat[:10]], y[:11], session)
