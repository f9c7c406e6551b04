"""Recommenders behind one interface, and a registry to build them by name."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from level3_recsys.models.als import ALSConfig, ALSRecommender
from level3_recsys.models.base import Recommender, top_k
from level3_recsys.models.ease import EASEConfig, EASERecommender
from level3_recsys.models.itemknn import ItemKNNConfig, ItemKNNRecommender
from level3_recsys.models.popularity import PopularityConfig, PopularityRecommender
from level3_recsys.models.two_stage import TwoStageConfig, TwoStageRecommender
from level3_recsys.models.two_tower import TwoTowerConfig, TwoTowerRecommender
from shared.errors import ConfigError

MODEL_CLASSES: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        PopularityRecommender,
        ItemKNNRecommender,
        ALSRecommender,
        EASERecommender,
        TwoTowerRecommender,
        TwoStageRecommender,
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_CLASSES)


def build_model(name: str, config: BaseModel | dict[str, Any] | None = None) -> Recommender:
    """A new, unfitted model by registry name.

    Args:
        name: One of ``popularity, itemknn, als, ease, two_tower, two_stage``.
        config: The model's config object, a dict of its fields, or ``None`` for defaults.

    Raises:
        ConfigError: Unknown name or invalid config.
    """
    cls = MODEL_CLASSES.get(name)
    if cls is None:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    if isinstance(config, BaseModel) and not isinstance(config, cls.config_cls):
        raise ConfigError(f"model {name!r} needs a {cls.config_cls.__name__}, got {type(config).__name__}")
    try:
        return cls(config)
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        raise ConfigError(f"invalid config for model {name!r}: {exc}") from None


__all__ = [
    "MODEL_CLASSES",
    "MODEL_NAMES",
    "ALSConfig",
    "EASEConfig",
    "ItemKNNConfig",
    "PopularityConfig",
    "Recommender",
    "TwoStageConfig",
    "TwoTowerConfig",
    "build_model",
    "top_k",
]
