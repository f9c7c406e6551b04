"""Recent, time-decayed popularity: the fallback every other component relies on."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from level3_recsys.data import InteractionData
from level3_recsys.models.base import Recommender


class PopularityConfig(BaseModel):
    """Time-decayed popularity settings."""

    model_config = ConfigDict(extra="forbid")

    half_life_days: float | None = Field(
        7.0, gt=0, description="an interaction's weight halves every this many days (None: no decay)"
    )
    use_weights: bool = Field(False, description="sum interaction weights instead of counting users")


class PopularityRecommender(Recommender):
    """Scores every item by its decayed interaction count, the same list for every user."""

    name = "popularity"
    config_cls = PopularityConfig

    def _fit(self, data: InteractionData) -> None:
        cfg: PopularityConfig = self.config  # type: ignore[assignment]
        m = data.matrix("weight" if cfg.use_weights else "count", decay_half_life_days=cfg.half_life_days)
        self.popularity_ = np.asarray(m.sum(axis=0), dtype=np.float32).ravel()
        # the popularity model is its own fallback: unknown users get the decayed list too
        self.fallback_ = self.popularity_

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(user_idx), len(self.popularity_))).copy()
