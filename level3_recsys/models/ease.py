"""EASE (Steck 2019): a closed-form linear item-item autoencoder, strong on MovieLens."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from level3_recsys.data import InteractionData
from level3_recsys.models.base import Recommender
from shared.errors import DataError


class EASEConfig(BaseModel):
    """L2 strength; Steck's MovieLens setting is around 500."""

    model_config = ConfigDict(extra="forbid")

    l2: float = Field(500.0, gt=0, description="ridge penalty lambda")
    max_items: int = Field(30_000, ge=1, description="refuse larger catalogues (dense item×item inverse)")


class EASERecommender(Recommender):
    """B = I - P / diag(P) with P = (XᵀX + λI)⁻¹; score = X_u B (diagonal constrained to 0)."""

    name = "ease"
    config_cls = EASEConfig

    def _fit(self, data: InteractionData) -> None:
        cfg: EASEConfig = self.config  # type: ignore[assignment]
        if data.n_items > cfg.max_items:
            raise DataError(f"EASE needs a dense {data.n_items}² matrix; raise max_items to allow it")
        x = data.matrix("binary")
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += cfg.l2
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights_ = b.astype(np.float32)
        self.x_ = x.tocsr()

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.x_[user_idx] @ self.weights_, dtype=np.float32)
