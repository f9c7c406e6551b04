"""Quality targets on the quick profile: the comparison table, cold start and CTR vs oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level3_recsys.evaluate import cold_items, evaluate_models
from level3_recsys.tests.recsys_helpers import quick, quick_models


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    world, train, test = quick()
    models, _ = quick_models()
    return evaluate_models(models, train, test, world=world, k=10)


def test_table_has_every_metric_for_every_model(table: pd.DataFrame) -> None:
    expected = {
        "precision@10",
        "recall@10",
        "ndcg@10",
        "map@10",
        "map",
        "coverage",
        "novelty",
        "popularity_bias",
        "cold_ndcg@10",
        "expected_ctr",
        "oracle_ctr",
    }
    assert expected <= set(table.columns)
    assert set(table.index) == {"popularity", "itemknn", "als", "ease", "two_tower", "two_stage"}
    assert table[list(expected)].notna().all().all()
    # sorted best first
    assert table["ndcg@10"].is_monotonic_decreasing


def test_every_learned_model_beats_popularity(table: pd.DataFrame) -> None:
    pop = table.loc["popularity", "ndcg@10"]
    for name in ("itemknn", "als", "ease", "two_tower", "two_stage"):
        assert table.loc[name, "ndcg@10"] > 2 * pop, name


def test_two_stage_is_best(table: pd.DataFrame) -> None:
    best_other = table.drop(index="two_stage")["ndcg@10"].max()
    assert table.loc["two_stage", "ndcg@10"] > best_other * 1.01


def test_two_tower_recommends_cold_items(table: pd.DataFrame) -> None:
    _world, train, test = quick()
    assert len(cold_items(train, test)) > 20
    # content lets it rank items nobody clicked in training; popularity can only guess
    assert table.loc["two_tower", "cold_ndcg@10"] > 3 * table.loc["popularity", "cold_ndcg@10"]
    assert table.loc["two_tower", "cold_ndcg@10"] > 0.1


def test_expected_ctr_is_below_oracle_and_orders_models(table: pd.DataFrame) -> None:
    assert (table["expected_ctr"] <= table["oracle_ctr"] + 1e-12).all()
    assert table.loc["two_stage", "expected_ctr"] > table.loc["popularity", "expected_ctr"] * 1.5
    # popularity is the most popularity-biased and covers the least of the catalogue
    assert table["popularity_bias"].idxmax() == "popularity"
    assert table["coverage"].idxmin() == "popularity"
    assert table.loc["popularity", "novelty"] == table["novelty"].min()


def test_oracle_ctr_beats_random_slates() -> None:
    world, train, test = quick()
    users = np.unique(test.interactions["user_id"])[:200]
    rng = np.random.default_rng(0)
    items = rng.choice(world.items["item_id"].to_numpy(), size=(len(users), 10))
    recs = pd.DataFrame(
        {
            "user_id": np.repeat(users, 10),
            "item_id": items.ravel(),
            "rank": np.tile(np.arange(1, 11), len(users)),
        }
    )
    assert world.oracle_ctr(users, 10, exclude=train) > 3 * world.expected_ctr(recs)
