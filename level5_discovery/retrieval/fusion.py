"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009).

Each ranking contributes ``1 / (k + rank)`` (rank from 1) to every document it holds; documents
are ordered by the sum. It needs no score calibration between BM25 and cosine similarities,
which live on unrelated scales.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

H = TypeVar("H", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[H]], k: int = 60) -> list[tuple[H, float]]:
    """Fuse rankings (best first) into one list of ``(doc, score)``, best first.

    Args:
        rankings: Each a sequence of document keys, best first; a document may be missing from some.
        k: The RRF constant (60 in the original paper); larger values flatten the rank weights.

    Returns:
        Every document that appears in any ranking with its fused score, sorted by score
        descending; ties go to the document with the better best rank, then to first appearance.
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    scores: dict[H, float] = {}
    best_rank: dict[H, int] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
            best_rank[doc] = min(best_rank.get(doc, rank), rank)
    order = {doc: i for i, doc in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], best_rank[item[0]], order[item[0]]))
