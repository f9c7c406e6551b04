"""Metric implementations against hand-computed examples (Recommenders' definitions)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from level3_recsys.metrics import (
    catalog_coverage,
    map_at_k,
    map_score,
    ndcg_at_k,
    novelty,
    popularity_bias,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from shared.errors import SchemaError


@pytest.fixture
def truth() -> pd.DataFrame:
    # user 3 has no recommendations, so it is not a common user and never counts
    return pd.DataFrame({"user_id": [1, 1, 1, 2, 3], "item_id": ["a", "b", "c", "d", "e"]})


@pytest.fixture
def recs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2],
            "item_id": ["a", "x", "b", "y", "z", "d"],
            "rank": [1, 2, 3, 1, 2, 3],
        }
    )


def test_precision_and_recall_hand_computed(truth: pd.DataFrame, recs: pd.DataFrame) -> None:
    # user 1: 2 hits of 3 slots, 3 relevant; user 2: 1 hit, 1 relevant
    assert precision_at_k(truth, recs, 3) == pytest.approx((2 + 1) / (3 * 2))
    assert recall_at_k(truth, recs, 3) == pytest.approx((2 / 3 + 1 / 1) / 2)


def test_ndcg_hand_computed(truth: pd.DataFrame, recs: pd.DataFrame) -> None:
    u1 = (1 / math.log(2) + 1 / math.log(4)) / (1 / math.log(2) + 1 / math.log(3) + 1 / math.log(4))
    u2 = (1 / math.log(4)) / (1 / math.log(2))
    assert ndcg_at_k(truth, recs, 3) == pytest.approx((u1 + u2) / 2)
    assert ndcg_at_k(truth, recs, 3) == pytest.approx(0.6019587, abs=1e-6)


def test_map_divides_by_relevant_count_and_map_at_k_by_min(truth: pd.DataFrame, recs: pd.DataFrame) -> None:
    # k=3: user 1 precisions at hits 1/1 and 2/3; user 2 1/3
    assert map_score(truth, recs, 3) == pytest.approx(((1 + 2 / 3) / 3 + (1 / 3) / 1) / 2)
    assert map_at_k(truth, recs, 3) == pytest.approx(((1 + 2 / 3) / 3 + (1 / 3) / 1) / 2)
    # k=2: user 1 keeps only the hit at rank 1; Recommenders' MAP divides by 3, MAP@2 by 2
    assert map_score(truth, recs, 2) == pytest.approx((1 / 3 + 0) / 2)
    assert map_at_k(truth, recs, 2) == pytest.approx((1 / 2 + 0) / 2)


def test_perfect_and_empty_rankings() -> None:
    truth = pd.DataFrame({"user_id": [1, 1], "item_id": [10, 20]})
    perfect = pd.DataFrame({"user_id": [1, 1], "item_id": [20, 10], "rank": [1, 2]})
    out = ranking_metrics(truth, perfect, k=2)
    assert out == {"precision@2": 1.0, "recall@2": 1.0, "ndcg@2": 1.0, "map@2": 1.0, "map": 1.0}
    miss = pd.DataFrame({"user_id": [1, 1], "item_id": [30, 40], "rank": [1, 2]})
    assert all(v == 0.0 for v in ranking_metrics(truth, miss, k=2).values())


def test_rank_is_derived_from_score_when_missing(truth: pd.DataFrame, recs: pd.DataFrame) -> None:
    scored = recs.drop(columns="rank").assign(score=[0.9, 0.5, 0.1, 0.9, 0.5, 0.1])
    assert ndcg_at_k(truth, scored, 3) == pytest.approx(ndcg_at_k(truth, recs, 3))
    with pytest.raises(SchemaError, match="rank"):
        ndcg_at_k(truth, recs.drop(columns="rank"), 3)


def test_cutoff_ignores_items_below_k(truth: pd.DataFrame, recs: pd.DataFrame) -> None:
    # at k=1 user 1 hits (a), user 2 misses (y)
    assert precision_at_k(truth, recs, 1) == pytest.approx(0.5)
    assert ndcg_at_k(truth, recs, 1) == pytest.approx(0.5)


def test_beyond_accuracy_metrics() -> None:
    train = pd.DataFrame({"user_id": [1, 2, 3, 4, 1], "item_id": ["a", "a", "a", "a", "b"]})
    recs = pd.DataFrame({"user_id": [1, 1], "item_id": ["a", "b"], "rank": [1, 2]})
    # a seen by 4 of 4 users: -log2(1) = 0; b by 1 of 4: -log2(1/4) = 2
    assert novelty(recs, train) == pytest.approx(1.0)
    assert catalog_coverage(recs, 10) == pytest.approx(0.2)
    # percentiles of counts a=4, b=1, c=0, d=0 -> 1.0, 0.75, 0.375, 0.375
    assert popularity_bias(recs, train, np.array(["a", "b", "c", "d"])) == pytest.approx(0.875)
