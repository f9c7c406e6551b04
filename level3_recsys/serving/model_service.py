"""The registry's champion as a BentoML service: typed top-K for a user with context.

One ``@bentoml.service`` class loads ``models:/<name>@<alias>`` from the MLflow registry in
``__init__`` (settings from ``L3__MODEL_SERVICE__*`` variables) and exposes ``POST
/recommend``; every piece of model logic lives in `scoring` (shared with the plain FastAPI
twin `model_app`).
BentoML adds ``/readyz``, ``/livez`` and ``/healthz``.

Serve it from the repository root::

    L3__MODEL_SERVICE__TRACKING_URI=sqlite:///$PWD/level3_recsys/artifacts/mlflow/mlflow.db \
        bentoml serve level3_recsys.serving.model_service:RecommenderService --port 3000

and package it with ``bentoml build -f level3_recsys/serving/bentofile.yaml .``.
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field

from level3_recsys.serving.scoring import ModelAnswer, RecommendRequest, load_runner
from level3_recsys.serving.settings import ModelServiceSettings

SERVICE_NAME = "level3_recommender"


@bentoml.service(
    name=SERVICE_NAME,
    traffic={"timeout": 10, "max_concurrency": 64},
    workers=1,
)
class RecommenderService:
    """Top-K recommendations from the registered model named by ``L3__MODEL_SERVICE__MODEL_URI``."""

    def __init__(self) -> None:
        self.runner = load_runner(ModelServiceSettings())

    @bentoml.api
    def recommend(
        self,
        user_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")],
        k: Annotated[int, Field(ge=1, le=100)] = 10,
        device: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] = "unknown",
        hour: Annotated[int, Field(ge=0, le=23)] = 12,
    ) -> ModelAnswer:
        """Top-K items for `user_id` (unknown users: the model's popularity ranking)."""
        request = RecommendRequest(user_id=user_id, k=k, device=device, hour=hour)
        return self.runner.recommend(request)
