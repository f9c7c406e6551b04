"""The model service's HTTP contract as a plain FastAPI app (a light twin of the BentoML service).

Same routes and JSON as `model_service.RecommenderService` (``POST /recommend``,
``GET /readyz``, ``GET /healthz``, ``GET /livez``), served by one uvicorn process, so the
integration tests can start, kill and freeze (SIGSTOP) a real model process in a second, and
the load test can run without BentoML's supervisor. Run it with::

    L3__MODEL_SERVICE__TRACKING_URI=sqlite:///.../mlflow.db uvicorn --factory \
        level3_recsys.serving.model_app:create_model_app --host 127.0.0.1 --port 3001
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from level3_recsys.serving.scoring import ModelAnswer, ModelRunner, RecommendRequest, load_runner
from level3_recsys.serving.settings import ModelServiceSettings


def build_model_app(runner: ModelRunner) -> FastAPI:
    """A FastAPI app answering top-K requests with `runner`."""
    app = FastAPI(title="level3 recommender model service", version=runner.model_version)

    @app.post("/recommend", response_model=ModelAnswer, response_class=JSONResponse)
    async def recommend(request: RecommendRequest) -> Response:
        # scoring is numpy work: off the event loop so health probes stay responsive
        answer = await run_in_threadpool(runner.recommend, request)
        # serialised directly: re-validating the answer the runner just built is pure overhead
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.get("/readyz")
    @app.get("/healthz")
    @app.get("/livez")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model_version": runner.model_version}

    return app


def create_model_app() -> FastAPI:
    """Factory for ``uvicorn --factory``: loads the model named by ``L3__MODEL_SERVICE__*`` variables."""
    return build_model_app(load_runner(ModelServiceSettings()))
