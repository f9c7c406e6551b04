"""Pure metrics of level 5: causal-graph recovery and retrieval quality.

Graphs are boolean adjacency matrices ``adj[i, j] == True`` meaning an edge ``i -> j`` over the
same ordered gene list. Edge precision, recall and F1 count a predicted edge as right only when
its direction is right. The structural Hamming distance (SHD) counts the edge additions,
deletions and reversals that turn the prediction into the truth, a reversal counting once (the
convention of the causal-discovery toolboxes, e.g. ``cdt.metrics.SHD(double_for_anticausal=False)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _as_bool(adj: np.ndarray) -> np.ndarray:
    a = np.asarray(adj).astype(bool)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"an adjacency matrix must be square, got shape {a.shape}")
    return a


def shd(true_adj: np.ndarray, pred_adj: np.ndarray) -> int:
    """Structural Hamming distance between two directed graphs.

    Args:
        true_adj: Boolean ``(n, n)`` adjacency of the truth.
        pred_adj: Boolean ``(n, n)`` adjacency of the prediction.

    Returns:
        Additions + deletions + reversals (a reversed edge counts 1, not 2).
    """
    t, p = _as_bool(true_adj), _as_bool(pred_adj)
    if t.shape != p.shape:
        raise ValueError(f"shapes differ: {t.shape} vs {p.shape}")
    # Compare unordered pairs: a pair differs once whatever the difference (missing, extra, reversed).
    t_pair, p_pair = t | t.T, p | p.T
    diff = np.triu(t_pair != p_pair, k=1).sum()
    both = np.triu(t_pair & p_pair, k=1)
    reversed_ = both & np.triu((t != p) | (t.T != p.T), k=1)
    return int(diff + reversed_.sum())


def edge_scores(true_adj: np.ndarray, pred_adj: np.ndarray) -> dict[str, float]:
    """Directed-edge precision, recall, F1 and SHD.

    Args:
        true_adj: Boolean ``(n, n)`` adjacency of the truth.
        pred_adj: Boolean ``(n, n)`` adjacency of the prediction.

    Returns:
        ``precision``, ``recall``, ``f1``, ``shd``, ``n_true``, ``n_pred``, ``n_correct``. With no
        predicted edge precision is 0 (nothing was found, nothing is credited).
    """
    t, p = _as_bool(true_adj), _as_bool(pred_adj)
    if t.shape != p.shape:
        raise ValueError(f"shapes differ: {t.shape} vs {p.shape}")
    off = ~np.eye(t.shape[0], dtype=bool)
    t, p = t & off, p & off
    correct = int((t & p).sum())
    n_true, n_pred = int(t.sum()), int(p.sum())
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "shd": float(shd(t, p)),
        "n_true": float(n_true),
        "n_pred": float(n_pred),
        "n_correct": float(correct),
    }


def edges_to_adjacency(edges: Iterable[tuple[str, str]], genes: Sequence[str]) -> np.ndarray:
    """A boolean adjacency matrix from ``(cause, effect)`` name pairs.

    Raises:
        KeyError: A name is not in ``genes``.
    """
    index = {g: i for i, g in enumerate(genes)}
    adj = np.zeros((len(genes), len(genes)), dtype=bool)
    for cause, effect in edges:
        adj[index[cause], index[effect]] = True
    return adj


def recall_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[Iterable[str]], k: int = 5) -> float:
    """Mean over queries of the share of each query's relevant ids found in its top ``k``.

    Args:
        ranked: Per query, document ids best first.
        relevant: Per query, the ids that answer it (a query with none is skipped).
        k: Cut-off.
    """
    scores = []
    for docs, rel in zip(ranked, relevant, strict=True):
        rel_set = set(rel)
        if not rel_set:
            continue
        scores.append(len(rel_set.intersection(docs[:k])) / len(rel_set))
    return float(np.mean(scores)) if scores else 0.0


def mean_reciprocal_rank(ranked: Sequence[Sequence[str]], relevant: Sequence[Iterable[str]]) -> float:
    """Mean over queries of 1 / rank of the first relevant id (0 when none is retrieved)."""
    scores = []
    for docs, rel in zip(ranked, relevant, strict=True):
        rel_set = set(rel)
        if not rel_set:
            continue
        rr = 0.0
        for rank, doc in enumerate(docs, start=1):
            if doc in rel_set:
                rr = 1.0 / rank
                break
        scores.append(rr)
    return float(np.mean(scores)) if scores else 0.0
