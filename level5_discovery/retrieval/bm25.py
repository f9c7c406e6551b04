"""BM25 over the corpus with the `bm25s` library (sparse, pre-computed scores per token)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from level5_discovery.retrieval.text import tokenize, tokenize_many

# bm25s logs every save and load at INFO through its own DEBUG-level logger.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class BM25Index:
    """Okapi BM25 (Lucene variant, k1 = 1.5, b = 0.75) over tokenised texts."""

    def __init__(self, model: bm25s.BM25, n_docs: int) -> None:
        """Wrap a fitted `bm25s.BM25` over ``n_docs`` documents (use `build` or `load`)."""
        self._model = model
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> BM25Index:
        """Index ``texts`` (tokenised with `text.tokenize`)."""
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index(tokenize_many(texts), show_progress=False)
        return cls(model, len(texts))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (zeros when no query token is in the vocabulary)."""
        ids = self._model.get_tokens_ids(tokenize(query))
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._model.get_scores_from_ids(ids), dtype=np.float32)

    def top(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and scores of the best ``n`` documents that match at least one query token.

        Documents with a zero score (no query term) are left out: they are not BM25 candidates.
        """
        scores = self.scores(query)
        return top_positive(scores, n)

    def save(self, folder: Path) -> None:
        """Write the index files into ``folder`` (created)."""
        folder.mkdir(parents=True, exist_ok=True)
        self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, n_docs: int) -> BM25Index:
        """Read an index written by `save`."""
        model = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
        return cls(model, n_docs)


def top_positive(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` highest positive scores (ties broken by lower index) as ``(indices, scores)``."""
    positive = np.flatnonzero(scores > 0)
    if positive.size > n:
        # argpartition keeps the cost linear in the corpus size; the stable sort orders the few kept.
        keep = positive[np.argpartition(-scores[positive], n - 1)[:n]]
        positive = np.sort(keep)
    order = positive[np.argsort(-scores[positive], kind="stable")]
    return order, scores[order]
