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
