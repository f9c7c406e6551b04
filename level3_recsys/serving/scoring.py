"""The model-service logic, kept out of the BentoML class: load a registered model, answer top-K.

The request/response types here are the HTTP contract of the model service. The BentoML
service (`model_service`) and the plain FastAPI twin (`model_app`) both expose it as
``POST /recommend`` with a JSON body ``{"user_id": ..., "k": ..., "device": ..., "hour": ...}``.

Context (device, hour) is part of the contract so that a context-aware ranker can use it and
so the model's logs carry it; the level's current recommenders rank without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from level3_recsys.serving.settings import ModelServiceSettings
from shared.errors import ConfigError

UserId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
K = Annotated[int, Field(ge=1, le=100, description="list length, 1..100")]
Device = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
Hour = Annotated[int, Field(ge=0, le=23, description="hour of day (UTC) of the request")]


class RecommendRequest(BaseModel):
    """One top-K request with its context."""

    user_id: UserId
    k: K = 10
    device: Device = "unknown"
    hour: Hour = 12


class ScoredItem(BaseModel):
    """One recommended item."""

    item_id: int | str
    score: float
    rank: int


class ModelAnswer(BaseModel):
    """The model service's answer.

    Attributes:
        user_id: As requested.
        items: Top-K, best first (seen items excluded for known users).
        model_name: Registered model name and model type (``registry/type``).
        model_version: Registry version.
        known_user: False when the user was not in training (cold start: popularity ranking).
        took_ms: Scoring time inside the service.
    """

    user_id: str
    items: list[ScoredItem]
    model_name: str
    model_version: str
    known_user: bool
    took_ms: float


@dataclass
class ModelRunner:
    """A fitted recommender with its registry provenance, answering one user at a time.

    Args:
        recommender: A fitted 3a recommender (``recommend``, ``user_ids_``).
        model_name: Name reported in answers.
        model_version: Version reported in answers.
    """

    recommender: Any
    model_name: str
    model_version: str

    def __post_init__(self) -> None:
        # URL path ids are text; the recommender's ids may be ints.
        self._users = {str(u): u for u in self.recommender.user_ids_.tolist()}

    def known(self, user_id: str) -> bool:
        """Whether the user was in the model's training data."""
        return user_id in self._users

    def recommend(self, request: RecommendRequest) -> ModelAnswer:
        """Top-K for one user (unknown users get the model's popularity ranking)."""
        start = time.perf_counter()
        known = request.user_id in self._users
        user = self._users.get(request.user_id, request.user_id)
        recs = self.recommender.recommend([user], k=request.k, exclude_seen=True)
        items = [
            ScoredItem(item_id=i, score=float(s), rank=int(r))
            for i, s, r in zip(
                recs["item_id"].tolist(), recs["score"].tolist(), recs["rank"].tolist(), strict=True
            )
        ]
        return ModelAnswer(
            user_id=request.user_id,
            items=items,
            model_name=self.model_name,
            model_version=self.model_version,
            known_user=known,
            took_ms=(time.perf_counter() - start) * 1000,
        )


def parse_model_uri(uri: str) -> tuple[str, str]:
    """Split ``models:/<name>@<alias>`` into (name, alias).

    Raises:
        ConfigError: Any other form.
    """
    prefix = "models:/"
    if not uri.startswith(prefix) or "@" not in uri:
        raise ConfigError(f"model URI {uri!r} must look like models:/<registered name>@<alias>")
    name, alias = uri[len(prefix) :].rsplit("@", 1)
    if not name or not alias:
        raise ConfigError(f"model URI {uri!r} must look like models:/<registered name>@<alias>")
    return name, alias


def load_runner(settings: ModelServiceSettings) -> ModelRunner:
    """Load the model a `ModelServiceSettings` names from the MLflow registry.

    Raises:
        ConfigError: No tracking URI configured or a malformed model URI.
        InputFileError: The registry has no such model or alias.
    """
    from level3_recsys.tracking import Tracking, load_recommender

    if not settings.tracking_uri:
        raise ConfigError("the model service needs L3_MODEL_TRACKING_URI (the MLflow tracking/registry URI)")
    name, alias = parse_model_uri(settings.model_uri)
    tracking = Tracking(
        tracking_uri=settings.tracking_uri,
        artifact_location=settings.artifact_location or _default_artifacts(settings.tracking_uri),
        registered_model=name,
    )
    loaded = load_recommender(tracking, alias)
    return ModelRunner(loaded.recommender, f"{loaded.name}/{loaded.model_name}", loaded.version)


def _default_artifacts(tracking_uri: str) -> str:
    # Only used if the experiment does not exist yet; next to a SQLite file is a sane place.
    if tracking_uri.startswith("sqlite:///"):
        from pathlib import Path

        return (Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return "mlartifacts"
