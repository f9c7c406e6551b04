"""The Microsoft Recommenders MovieLens benchmark protocol, on any MovieLens-layout folder.

Protocol (``examples/06_benchmarks/movielens.ipynb``): every rating is a relevant
interaction; ``python_stratified_split(ratio=0.75, min_rating=1, filter_by="item",
seed=42)``; each model recommends its top 10 for every test user with items seen in training
removed; precision@10, recall@10, NDCG@10 and Recommenders' MAP with its definitions
(`level3_recsys.metrics`). The published figures on that split are in `PUBLISHED`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from level3_recsys.data import ITEM_COL, USER_COL
from level3_recsys.metrics import catalog_coverage, ranking_metrics
from level3_recsys.models import build_model
from level3_recsys.movielens import load_movielens
from level3_recsys.split import stratified_split
from shared.seeding import seed_everything

#: Published MovieLens-100k figures on the benchmark's own split (see DESIGN.md, level 3).
PUBLISHED = pd.DataFrame(
    {
        "ndcg@10": [0.4751, 0.4420, 0.3883, 0.48],
        "precision@10": [0.4118, 0.3882, 0.3338, 0.42],
        "recall@10": [0.2191, 0.2125, 0.1832, 0.22],
        "map": [0.1461, 0.1325, 0.1130, 0.148],
    },
    index=pd.Index(
        [
            "BiVAE (Recommenders README)",
            "BPR, Cornac (README)",
            "SAR, Jaccard (benchmark run)",
            "EASE λ=500 (approx.)",
        ],
        name="model",
    ),
)

BENCHMARK_MODELS = ("popularity", "itemknn", "als", "ease", "two_tower", "two_stage")

#: EASE penalties tried on the inner validation split (`inner_validation`); 500 won there.
EASE_L2_GRID = (100.0, 200.0, 300.0, 400.0, 500.0, 700.0, 1000.0)


def benchmark_configs(seed: int = 42, show_progress: bool = True) -> dict[str, dict[str, Any]]:
    """Model settings for rating data with a random (not chronological) split."""
    return {
        "popularity": {"half_life_days": None},
        "itemknn": {"similarity": "jaccard", "half_life_days": 30.0, "use_weights": False},
        "als": {
            "factors": 64,
            "regularization": 0.05,
            "alpha": 5.0,
            "iterations": 15,
            "bm25": True,
            "use_weights": False,
            "seed": seed,
            "show_progress": show_progress,
        },
        "ease": {"l2": 500.0},
        "two_tower": {"epochs": 8, "seed": seed, "show_progress": show_progress},
        "two_stage": {
            "holdout": "random",
            "holdout_fraction": 0.25,
            "candidates": ["popularity", "itemknn", "als", "ease"],
            "n_candidates": 50,
            "max_negatives": 200,
            "popularity": {"half_life_days": None},
            "als": {
                "factors": 64,
                "alpha": 5.0,
                "bm25": True,
                "use_weights": False,
                "seed": seed,
                "show_progress": show_progress,
            },
            "ease": {"l2": 500.0},
            "seed": seed,
            "show_progress": show_progress,
        },
    }


def run_benchmark(
    folder: str | Path,
    models: Sequence[str] = BENCHMARK_MODELS,
    *,
    k: int = 10,
    seed: int = 42,
    configs: Mapping[str, BaseModel | dict[str, Any]] | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Run the Recommenders MovieLens protocol on `folder` for each model.

    Args:
        folder: An ``ml-100k`` or ``ml-latest-small`` folder.
        models: Registry names to compare.
        k: Cut-off (the benchmark uses 10).
        seed: Split seed (the benchmark uses 42) and model seed.
        configs: Per-model overrides of `benchmark_configs`.
        show_progress: Draw training progress bars.

    Returns:
        One row per model (index ``model``): ``ndcg@k, precision@k, recall@k, map, map@k,
        coverage, train_seconds, users, beats_published`` (the best published NDCG), sorted
        by NDCG descending.
    """
    data = load_movielens(folder)
    train, test = stratified_split(data, ratio=0.75, min_rating=1, filter_by="item", seed=seed)
    truth = test.interactions[[USER_COL, ITEM_COL]]
    users = np.unique(truth[USER_COL].to_numpy())
    defaults = benchmark_configs(seed, show_progress)
    configs = dict(configs or {})
    rows = {}
    for name in models:
        seed_everything(seed)
        cfg = configs.get(name, defaults.get(name))
        model = build_model(name, cfg)
        start = time.perf_counter()
        model.fit(train)
        fit_seconds = time.perf_counter() - start
        recs = model.recommend(users, k=k, exclude_seen=True)
        row = ranking_metrics(truth, recs, k)
        row["coverage"] = catalog_coverage(recs, train.n_items)
        row["train_seconds"] = fit_seconds
        row["users"] = len(users)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    table["beats_published"] = table[f"ndcg@{k}"] > PUBLISHED["ndcg@10"].max()
    cols = [
        f"ndcg@{k}",
        f"precision@{k}",
        f"recall@{k}",
        "map",
        f"map@{k}",
        "coverage",
        "train_seconds",
        "users",
    ]
    return table[[*cols, "beats_published"]].sort_values(f"ndcg@{k}", ascending=False)


def inner_validation(
    folder: str | Path,
    candidates: Mapping[str, tuple[str, BaseModel | dict[str, Any]]],
    *,
    k: int = 10,
    seed: int = 42,
    inner_seeds: Sequence[int] = (1, 2),
) -> pd.DataFrame:
    """Score settings on inner splits of the protocol's *training* part only (never its test).

    The benchmark's 75% training split is itself split the protocol's way (items stratified
    75/25, other seeds); each candidate trains on the inner 75% and is scored on the inner 25%
    with the same metrics. The figures read lower than the test's (the outer test pairs count
    as misses here), but they rank settings without touching the test split.

    Args:
        folder: The MovieLens folder.
        candidates: ``label -> (model name, config)``.
        k: Cut-off.
        seed: The outer split seed (42 in the protocol).
        inner_seeds: Seeds of the inner splits (results are averaged).

    Returns:
        One row per label: ``ndcg@k`` (mean over inner splits) and one column per inner seed.
    """
    data = load_movielens(folder)
    train, _ = stratified_split(data, ratio=0.75, min_rating=1, filter_by="item", seed=seed)
    rows: dict[str, dict[str, float]] = {label: {} for label in candidates}
    for inner_seed in inner_seeds:
        fit_part, val = stratified_split(train, ratio=0.75, min_rating=1, filter_by="item", seed=inner_seed)
        truth = val.interactions[[USER_COL, ITEM_COL]]
        users = np.unique(truth[USER_COL].to_numpy())
        for label, (name, cfg) in candidates.items():
            seed_everything(seed)
            model = build_model(name, cfg).fit(fit_part)
            recs = model.recommend(users, k=k, exclude_seen=True)
            rows[label][f"seed {inner_seed}"] = ranking_metrics(truth, recs, k)[f"ndcg@{k}"]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.insert(0, f"ndcg@{k}", table.mean(axis=1))
    table.index.name = "setting"
    return table
