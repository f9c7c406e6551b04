"""Implicit-feedback matrix factorisation by alternating least squares (the `implicit` package)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits

from level3_recsys.data import InteractionData
from level3_recsys.models.base import Recommender
from shared.progress import make_progress


class ALSConfig(BaseModel):
    """Hu, Koren & Volinsky's weighted ALS: confidence 1 + alpha * weight."""

    model_config = ConfigDict(extra="forbid")

    factors: int = Field(16, ge=1)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0, description="confidence scale of observed interactions")
    iterations: int = Field(15, ge=1)
    use_weights: bool = Field(True, description="confidence from interaction weights, else binary")
    bm25: bool = Field(False, description="BM25-weight the matrix first (helps on ratings data)")
    threads: int = Field(1, ge=1, le=2)
    seed: int = 42
    show_progress: bool = True


class ALSRecommender(Recommender):
    """score(u, i) = user_factor(u) · item_factor(i)."""

    name = "als"
    config_cls = ALSConfig

    def _fit(self, data: InteractionData) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        cfg: ALSConfig = self.config  # type: ignore[assignment]
        m = data.matrix("weight" if cfg.use_weights else "binary").tocsr()
        if cfg.bm25:
            from implicit.nearest_neighbours import bm25_weight

            m = bm25_weight(m, K1=100, B=0.8).tocsr().astype(np.float32)
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                random_state=cfg.seed,
                num_threads=cfg.threads,
            )
        with make_progress(disable=not cfg.show_progress) as progress, threadpool_limits(1, "blas"):
            task = progress.add_task("ALS iterations", total=cfg.iterations)
            model.fit(m, show_progress=False, callback=lambda *_: progress.advance(task))
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T
