"""SAR-style item-item model: co-occurrence similarity times time-decayed user affinity."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from level3_recsys.data import InteractionData
from level3_recsys.models.base import Recommender


class ItemKNNConfig(BaseModel):
    """Similarity and affinity settings (SAR's defaults: Jaccard, 30-day half-life)."""

    model_config = ConfigDict(extra="forbid")

    similarity: Literal["jaccard", "cooccurrence", "lift", "cosine"] = "jaccard"
    half_life_days: float | None = Field(30.0, gt=0, description="affinity decay (None: no decay)")
    use_weights: bool = Field(True, description="affinity sums interaction weights")
    threshold: int = Field(1, ge=1, description="minimum co-occurrence count kept")
    neighbors: int | None = Field(None, ge=1, description="keep this many neighbours per item")


class ItemKNNRecommender(Recommender):
    """score(u, j) = sum_i affinity(u, i) * similarity(i, j)."""

    name = "itemknn"
    config_cls = ItemKNNConfig

    def _fit(self, data: InteractionData) -> None:
        cfg: ItemKNNConfig = self.config  # type: ignore[assignment]
        x = data.matrix("binary").tocsc().astype(np.float32)
        cooc = (x.T @ x).tocsr()
        cooc.data[cooc.data < cfg.threshold] = 0
        cooc.eliminate_zeros()
        diag = cooc.diagonal().astype(np.float64)
        coo = cooc.tocoo()
        c = coo.data.astype(np.float64)
        di, dj = diag[coo.row], diag[coo.col]
        if cfg.similarity == "jaccard":
            sim = c / (di + dj - c)
        elif cfg.similarity == "lift":
            sim = c / (di * dj)
        elif cfg.similarity == "cosine":
            sim = c / np.sqrt(di * dj)
        else:
            sim = c
        s = sp.csr_matrix((sim.astype(np.float32), (coo.row, coo.col)), shape=cooc.shape)
        if cfg.neighbors is not None:
            s = _keep_top_per_row(s, cfg.neighbors)
        self.similarity_ = s
        self.affinity_ = data.matrix(
            "weight" if cfg.use_weights else "binary", decay_half_life_days=cfg.half_life_days
        ).tocsr()

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray((self.affinity_[user_idx] @ self.similarity_).toarray(), dtype=np.float32)


def _keep_top_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the `n` largest entries of each row (vectorised over rows via a sort on (row, -value))."""
    coo = m.tocoo()
    order = np.lexsort((-coo.data, coo.row))
    rows = coo.row[order]
    starts = np.searchsorted(rows, rows, side="left")
    keep = (np.arange(len(rows)) - starts) < n
    sel = order[keep]
    return sp.csr_matrix((coo.data[sel], (coo.row[sel], coo.col[sel])), shape=m.shape)
