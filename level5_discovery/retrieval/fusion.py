"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009), optionally weighted per ranking.

Each ranking contributes ``weight / (k + rank)`` (rank from 1) to every document it holds;
documents are ordered by the sum. It needs no score calibration between BM25 and cosine
similarities, which live on unrelated scales. A weight per ranking is the usual extension when one
ranker is known to be the stronger (weighted RRF, e.g. Elasticsearch's and Vespa's hybrid search).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

H = TypeVar("H", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[H]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[H, float]]:
    """Fuse rankings (best first) into one list of ``(doc, score)``, best first.

    Args:
        rankings: Each a sequence of document keys, best first; a document may be missing from some.
        k: The RRF constant (60 in the original paper); larger values flatten the rank weights.
        weights: One non-negative weight per ranking (default: 1 each, plain RRF).

    Returns:
        Every document that appears in any ranking with its fused score, sorted by score
        descending; ties go to the document with the better best rank, then to first appearance.

    Raises:
        ValueError: ``k`` is negative, or the weights are negative or not one per ranking.
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    weights = _checked_weights(weights, len(rankings))
    scores: dict[H, float] = {}
    best_rank: dict[H, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
            best_rank[doc] = min(best_rank.get(doc, rank), rank)
    order = {doc: i for i, doc in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], best_rank[item[0]], order[item[0]]))


def _checked_weights(weights: Sequence[float] | None, n: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * n
    if len(weights) != n:
        raise ValueError(f"rrf needs one weight per ranking: {len(weights)} weights for {n} rankings")
    if any(w < 0 for w in weights):
        raise ValueError(f"rrf weights must be >= 0, got {list(weights)}")
    return tuple(float(w) for w in weights)
