"""Offline evaluation: one comparison table for a set of fitted models.

Columns per model: precision@k, recall@k, ndcg@k, map@k, Recommenders' map, catalogue
coverage, novelty, popularity bias, cold-start ndcg@k (ranking only the items that had no
training interactions, against the test interactions on them) and, with a simulator, the
expected CTR of the model's slates next to the oracle CTR.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from level3_recsys.data import ITEM_COL, USER_COL, InteractionData
from level3_recsys.metrics import (
    catalog_coverage,
    ndcg_at_k,
    novelty,
    popularity_bias,
    ranking_metrics,
)
from level3_recsys.models import Recommender, build_model
from level3_recsys.simulate import SimulatedWorld
from shared.errors import EmptyDataError


def cold_items(train: InteractionData, test: InteractionData) -> np.ndarray:
    """Item ids with test interactions and none in training."""
    warm = train.interactions[ITEM_COL].unique()
    tested = test.interactions[ITEM_COL].unique()
    return np.setdiff1d(tested, warm)


def fit_models(
    names: list[str],
    train: InteractionData,
    configs: Mapping[str, BaseModel | dict[str, Any]] | None = None,
) -> tuple[dict[str, Recommender], dict[str, float]]:
    """Build and fit models by name; returns the models and their fit times in seconds."""
    configs = configs or {}
    models, times = {}, {}
    for name in names:
        model = build_model(name, configs.get(name))
        start = time.perf_counter()
        model.fit(train)
        times[name] = time.perf_counter() - start
        models[name] = model
    return models, times


def evaluate_model(
    model: Recommender,
    train: InteractionData,
    test: InteractionData,
    *,
    world: SimulatedWorld | None = None,
    k: int = 10,
    oracle: float | None = None,
) -> dict[str, float]:
    """All metrics of one fitted model (see the module docstring)."""
    truth = test.interactions[[USER_COL, ITEM_COL]]
    if len(truth) == 0:
        raise EmptyDataError("the test set has no interactions to evaluate against")
    users = np.unique(truth[USER_COL].to_numpy())
    start = time.perf_counter()
    recs = model.recommend(users, k=k, exclude_seen=True)
    elapsed = time.perf_counter() - start
    row: dict[str, float] = ranking_metrics(truth, recs, k)
    row["coverage"] = catalog_coverage(recs, train.n_items)
    row["novelty"] = novelty(recs, train.interactions)
    row["popularity_bias"] = popularity_bias(recs, train.interactions, train.item_ids)
    cold = cold_items(train, test)
    cold_truth = truth[truth[ITEM_COL].isin(cold)]
    if len(cold_truth):
        cold_users = np.unique(cold_truth[USER_COL].to_numpy())
        cold_recs = model.recommend(cold_users, k=k, exclude_seen=True, items=cold)
        row[f"cold_ndcg@{k}"] = ndcg_at_k(cold_truth, cold_recs, k)
    else:
        row[f"cold_ndcg@{k}"] = float("nan")
    if world is not None:
        row["expected_ctr"] = world.expected_ctr(recs)
        row["oracle_ctr"] = world.oracle_ctr(users, k, exclude=train) if oracle is None else oracle
    row["recommend_seconds"] = elapsed
    return row


def evaluate_models(
    models: Mapping[str, Recommender],
    train: InteractionData,
    test: InteractionData,
    world: SimulatedWorld | None = None,
    k: int = 10,
) -> pd.DataFrame:
    """Comparison table, one row per model (index ``model``), sorted by ndcg@k descending.

    Args:
        models: Fitted models by display name.
        train: The data they were fitted on (for seen items, popularity, cold items).
        test: Held-out interactions.
        world: The simulator, for expected and oracle CTR.
        k: Slate length.
    """
    oracle = None
    if world is not None:
        users = np.unique(test.interactions[USER_COL].to_numpy())
        oracle = world.oracle_ctr(users, k, exclude=train)
    rows = {
        name: evaluate_model(model, train, test, world=world, k=k, oracle=oracle)
        for name, model in models.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table.sort_values(f"ndcg@{k}", ascending=False)
