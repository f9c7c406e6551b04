"""Ray Train with the mixture of experts: experts idle in a batch do not stall the gradient all-reduce."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from level4_fraud.distributed.cluster import RayConfig, ray_session
from level4_fraud.distributed.train import DataParallelConfig, train_data_parallel
from level4_fraud.models.moe import MixtureOfExperts, MoEConfig
from level4_fraud.models.training import TrainConfig

pytestmark = pytest.mark.slow  # a Ray start and a TorchTrainer run: about a minute on 2 busy cores


def test_sparse_mixture_of_experts_trains_data_parallel() -> None:
    config = MoEConfig(n_numeric=4, n_experts=8, top_k=1, expert_hidden=[4], balance_coef=0.01)
    train = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-2, seed=0)
    # 4 rows routed to 1 expert each reach at most 4 of the 8 experts: every batch leaves some
    # experts without a gradient, which plain DDP would wait for forever.
    assert train.batch_size * config.top_k < config.n_experts
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 0] > 1).astype(np.float32)
    with ray_session(RayConfig(num_cpus=2)) as session:
        result = train_data_parallel(
            functools.partial(MixtureOfExperts, config), [x], y, session, DataParallelConfig(train=train)
        )
    assert result.world_size == 2
    assert len(result.history) == train.epochs
    assert result.param_spread == 0.0
    assert isinstance(result.model, MixtureOfExperts)
