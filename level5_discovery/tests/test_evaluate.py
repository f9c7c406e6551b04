"""Known answers for the graph and retrieval metrics."""

from __future__ import annotations

import numpy as np
import pytest

from level5_discovery.evaluate import (
    edge_scores,
    edges_to_adjacency,
    mean_reciprocal_rank,
    recall_at_k,
    shd,
)

GENES = ["A", "B", "C", "D"]


def test_identical_graphs_score_perfectly() -> None:
    t = edges_to_adjacency([("A", "B"), ("B", "C")], GENES)
    s = edge_scores(t, t)
    assert (s["precision"], s["recall"], s["f1"], s["shd"]) == (1.0, 1.0, 1.0, 0.0)


def test_shd_counts_a_reversal_once_and_missing_and_extra_edges_once_each() -> None:
    t = edges_to_adjacency([("A", "B"), ("B", "C"), ("C", "D")], GENES)
    p = edges_to_adjacency(
        [("B", "A"), ("B", "C"), ("A", "D")], GENES
    )  # reversed, right, extra; C->D missing
    assert shd(t, p) == 3
    s = edge_scores(t, p)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(1 / 3)


def test_empty_prediction_has_zero_precision_and_shd_equal_to_true_edges() -> None:
    t = edges_to_adjacency([("A", "B"), ("C", "D")], GENES)
    s = edge_scores(t, np.zeros_like(t))
    assert s["precision"] == 0.0 and s["f1"] == 0.0 and s["shd"] == 2.0


def test_retrieval_metrics_known_case() -> None:
    ranked = [["d1", "d2", "d3"], ["d9", "d8", "d4"], ["x"]]
    relevant = [{"d2"}, {"d4", "d5"}, set()]
    assert recall_at_k(ranked, relevant, k=2) == pytest.approx((1.0 + 0.0) / 2)
    assert recall_at_k(ranked, relevant, k=3) == pytest.approx((1.0 + 0.5) / 2)
    assert mean_reciprocal_rank(ranked, relevant) == pytest.approx((1 / 2 + 1 / 3) / 2)
