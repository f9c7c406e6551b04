"""Fixtures for the tracking, batch, store and CLI tests (small, generated, session-scoped)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level3_recsys.tracking import Tracking


def long_recs(n_users: int, k: int, *, offset: int = 0, seed: int = 0) -> pd.DataFrame:
    """Top-k rows for users 0..n_users-1 with distinct made-up items and descending scores."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), k)
    items = np.concatenate([rng.choice(1000, size=k, replace=False) + offset for _ in range(n_users)])
    ranks = np.tile(np.arange(1, k + 1), n_users)
    scores = np.tile(np.linspace(1.0, 0.1, k), n_users)
    return pd.DataFrame({"user_id": users, "item_id": items, "rank": ranks, "score": scores})


@pytest.fixture
def tracking(tmp_path: Path) -> Tracking:
    """An MLflow store of its own: SQLite tracking DB and artifact folder under tmp_path."""
    folder = tmp_path / "mlflow"
    folder.mkdir()
    return Tracking(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        artifact_location=(folder / "artifacts").as_uri(),
        experiment=f"test-{uuid.uuid4().hex[:6]}",
        registered_model="l3_test",
    )


@pytest.fixture(scope="session")
def tiny_world():
    """A small simulated platform (seconds to build) and its time split."""
    from level3_recsys.simulate import SimulatorConfig, simulate
    from level3_recsys.split import time_split

    world = simulate(
        SimulatorConfig(
            seed=7, n_users=150, n_items=120, new_items_per_day=4, days=12, n_creators=30, show_progress=False
        )
    )
    train, test = time_split(world.interaction_data(), test_days=3)
    return world, train, test


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, tiny_world):
    """Popularity and item-kNN trained on the tiny world, logged, evaluated and registered."""
    from level3_recsys.evaluate import evaluate_models
    from level3_recsys.models import build_model
    from level3_recsys.tracking import LoggedRun, log_training_run, register_winner

    world, train, test = tiny_world
    folder = tmp_path_factory.mktemp("mlflow")
    trk = Tracking(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        artifact_location=(folder / "artifacts").as_uri(),
        experiment="registry-test",
        registered_model="l3_registry_test",
    )
    models = {name: build_model(name).fit(train) for name in ("popularity", "itemknn")}
    table = evaluate_models(models, train, test, world=world, k=10)
    sample = train.interactions["user_id"].unique()[:5].tolist()
    runs = []
    for name, model in models.items():
        metrics = table.loc[name].to_dict()
        logged = log_training_run(
            model, tracking=trk, params={"model": name}, metrics=metrics, sample_users=sample, k=10
        )
        runs.append(LoggedRun(logged.run_id, logged.model_uri, name, logged.metrics))
    aliases = register_winner(runs, tracking=trk)
    return {
        "tracking": trk,
        "models": models,
        "table": table,
        "aliases": aliases,
        "runs": runs,
        "train": train,
    }
