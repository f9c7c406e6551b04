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

import numpy as np
from pydantic import BaseModel, Field

from level3_recsys.serving.settings import MODEL_ENV_PREFIX, ModelServiceSettings
from shared.errors import ConfigError
from shared.runtime import sqlite_artifact_root

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
        ids = self.recommender.user_ids_.tolist()
        self._users = {str(u): u for u in ids}
        self._rows = {str(u): row for row, u in enumerate(ids)}

    def known(self, user_id: str) -> bool:
        """Whether the user was in the model's training data."""
        return user_id in self._users

    def top_items(self, user_id: str, k: int) -> tuple[list[Any], list[float]]:
        """Top-`k` item ids and scores for one user, seen items excluded, best first.

        The same ranking as ``recommender.recommend([user], k, exclude_seen=True)`` (same
        scores, same `top_k` tie rule) without its per-call DataFrame and index look-ups, which
        cost several times the scoring itself for a single user.
        """
        # imported here: the API imports this module for its types, and its image has no scipy
        from level3_recsys.models.base import NEG_INF, top_k

        rec = self.recommender
        row = self._rows.get(user_id)
        if row is None:  # unknown user: the model's popularity ranking, nothing to exclude
            scores = rec.user_scores(np.asarray([self._users.get(user_id, user_id)]))
        else:
            scores = np.array(rec._score(np.asarray([row])), dtype=np.float32, ndmin=2)
            seen = rec.seen_
            scores[0, seen.indices[seen.indptr[row] : seen.indptr[row + 1]]] = NEG_INF
        top, vals = top_k(scores, k)
        top, vals = top[0], vals[0]
        finite = np.isfinite(vals)
        if not finite.all():
            top, vals = top[finite], vals[finite]
        return rec.item_ids_[top].tolist(), vals.astype(np.float32).tolist()

    def cold_start_items(self, k: int) -> tuple[list[Any], list[float]]:
        """What `top_items` gives every user the model has never seen (the nightly batch stores it)."""
        sentinel = "cold-start"
        while sentinel in self._users:  # any id the model does not know ranks the same
            sentinel += "_"
        return self.top_items(sentinel, k)

    def recommend(self, request: RecommendRequest) -> ModelAnswer:
        """Top-K for one user (unknown users get the model's popularity ranking)."""
        start = time.perf_counter()
        known = request.user_id in self._users
        item_ids, scores = self.top_items(request.user_id, request.k)
        items = [
            ScoredItem.model_construct(item_id=i, score=s, rank=r)
            for r, (i, s) in enumerate(zip(item_ids, scores, strict=True), 1)
        ]
        return ModelAnswer.model_construct(
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
        raise ConfigError(
            f"the model service needs {MODEL_ENV_PREFIX}TRACKING_URI (the MLflow tracking/registry URI)"
        )
    name, alias = parse_model_uri(settings.model_uri)
    tracking = Tracking(
        tracking_uri=settings.tracking_uri,
        artifact_location=settings.artifact_location or _default_artifacts(settings.tracking_uri),
        registered_model=name,
    )
    loaded = load_recommender(tracking, alias)
    runner = ModelRunner(loaded.recommender, f"{loaded.name}/{loaded.model_name}", loaded.version)
    # Score once before reporting ready: the first call imports torch (top_k) and touches the
    # model's matrices, which would otherwise make the first live request time out.
    runner.top_items(next(iter(runner._rows), "warm-up"), 1)
    return runner


def _default_artifacts(tracking_uri: str) -> str:
    # Only used if the experiment does not exist yet; next to a SQLite file is a sane place.
    root = sqlite_artifact_root(tracking_uri)
    return root.resolve().as_uri() if root is not None else "mlartifacts"
