"""The recommendation API users call: `create_app(settings)` builds one FastAPI instance.

Routes:

* ``GET /v1/recommendations/{user_id}?k=10&device=mobile&hour=20`` — top-K. Order of sources:
  the nightly batch when it is fresh and long enough; else the model service behind the
  circuit breaker; else the popularity fallback. Every answer names its model version, its
  source and whether a fallback was used; a user unknown to the model gets the cold-start
  (popularity) ranking, flagged ``cold_start``, never an error: from the batch when it
  carries the model's cold-start list, else from the model service.
* ``POST /v1/feedback`` — impression / click / watch events (CTR per model version).
* ``GET /v1/shadow`` — the shadow comparison of challenger and champion.
* ``GET /healthz`` (alive), ``GET /readyz`` (can answer), ``GET /metrics`` (Prometheus).
* ``GET /openapi.json`` and ``/docs`` — the published schema.

Everything but health, metrics and the schema needs the ``X-API-Key`` header. Bad input gives
a 4xx with a message (422 for out-of-range parameters, 401 for a missing or wrong key, 400 for
a body that is not text), never a 500; every answer is documented in the schema.

The layers: `recommender.Recommender` holds the answer logic (batch -> model -> fallback) and
every part one instance owns (metrics registry, HTTP clients, breaker, shadow queue);
`asgi.RecommendationFastPath` answers the common recommendation request without FastAPI's
parameter solving; the FastAPI routes below document and validate everything else. The
lifespan starts the shadow workers and, at shutdown, drains the queue within a bound and
closes the clients and the store.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from level3_recsys.serving.asgi import RECOMMEND_ROUTE, MetricsMiddleware, RecommendationFastPath
from level3_recsys.serving.monitoring import CONTENT_TYPE
from level3_recsys.serving.recommender import FALLBACK_MODEL, Recommender
from level3_recsys.serving.schemas import (
    DEFAULT_DEVICE,
    DEFAULT_K,
    DEVICE_MAX_LEN,
    DEVICE_PATTERN,
    HOUR_MAX,
    INVALID,
    K_MAX,
    UNAUTHORIZED,
    UNREADABLE_BODY,
    USER_ID_PATTERN,
    FeedbackAccepted,
    FeedbackEvent,
    RecommendationResponse,
    ShadowSummary,
)
from level3_recsys.serving.settings import API_KEY_HEADER, ServingSettings

__all__ = ["FALLBACK_MODEL", "create_app"]

logger = logging.getLogger(__name__)


class BatchStatus(BaseModel):
    """The live batch, as `/readyz` reports it."""

    model_version: str
    generated_at: str
    fresh: bool


class Readiness(BaseModel):
    """Whether the API can answer, and the state of each source."""

    ready: bool
    breaker: str
    fallback_items: int
    batch: BatchStatus | None
    shadow: bool


class PrometheusResponse(Response):
    """The Prometheus text exposition format (version 0.0.4)."""

    media_type = CONTENT_TYPE


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(
    settings: ServingSettings | None = None,
    *,
    model_transport: httpx.AsyncBaseTransport | None = None,
    challenger_transport: httpx.AsyncBaseTransport | None = None,
    store: Any | None = None,
) -> FastAPI:
    """Build the recommendation API.

    Args:
        settings: API settings (default: read from ``L3__SERVING__*`` environment variables).
        model_transport: httpx transport for the model service (tests; default: network).
        challenger_transport: httpx transport for the challenger (tests).
        store: A store object to use instead of opening ``settings.store_url``.

    Returns:
        The FastAPI app; run it with uvicorn (the lifespan starts and stops its workers).
        ``app.state.serving`` is its `Recommender`.
    """
    settings = settings or ServingSettings()
    recommender = Recommender(
        settings, store=store, model_transport=model_transport, challenger_transport=challenger_transport
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recommender.start()
        try:
            yield
        finally:
            await recommender.aclose()

    app = FastAPI(
        title="Level 3 recommendation API",
        version="1.0",
        description="Top-K recommendations from the nightly batch, the model service or a popularity "
        "fallback; feedback events; Prometheus metrics. Send the API key in the X-API-Key header.",
        lifespan=lifespan,
    )
    app.state.serving = recommender
    expected_key = settings.api_key.get_secret_value().encode()
    _add_error_handlers(app)
    _add_routes(app, recommender, _key_dependency(expected_key))
    # added first so it runs inside the metrics middleware (which is added last: outermost)
    app.add_middleware(
        RecommendationFastPath, answer=recommender.answer, expected_key=expected_key, routes=app.router.routes
    )
    app.add_middleware(MetricsMiddleware, metrics=recommender.metrics)
    return app


def _key_dependency(expected_key: bytes) -> Any:
    """The security dependency checking the ``X-API-Key`` header (documented in the schema)."""
    api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="API key")

    # Default-value style: with postponed annotations FastAPI cannot see a local in Annotated[...].
    async def require_key(key: str | None = Security(api_key_header)) -> None:
        if key is None:
            raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header")
        if not secrets.compare_digest(key.encode(), expected_key):
            raise HTTPException(401, "invalid API key")

    return Security(require_key)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in err.items() if k in ("type", "loc", "msg")} for err in exc.errors()]
        return JSONResponse(status_code=422, content={"message": _validation_message(exc), "detail": errors})

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return JSONResponse(status_code=500, content={"message": "internal error"})


def _add_routes(app: FastAPI, recommender: Recommender, key: Any) -> None:
    @app.get(
        RECOMMEND_ROUTE,
        response_model=RecommendationResponse,
        response_class=JSONResponse,
        tags=["recommendations"],
        dependencies=[key],
        responses={401: UNAUTHORIZED, 422: INVALID},
    )
    async def recommend(
        user_id: Annotated[
            str, PathParam(pattern=USER_ID_PATTERN, description="user id (unknown: cold start)")
        ],
        k: Annotated[int, Query(ge=1, le=K_MAX, description=f"list length, 1..{K_MAX}")] = DEFAULT_K,
        device: Annotated[
            str,
            Query(
                max_length=DEVICE_MAX_LEN,
                pattern=DEVICE_PATTERN,
                description="client device: mobile, desktop, tv...",
            ),
        ] = DEFAULT_DEVICE,
        hour: Annotated[
            int | None, Query(ge=0, le=HOUR_MAX, description="hour of day, UTC (default: now)")
        ] = None,
    ) -> Response:
        """Top-K items for a user: the batch when fresh, else the model, else popularity."""
        # a ready Response: FastAPI does not re-validate the answer; the schema still documents it
        return Response(await recommender.answer(user_id, k, device, hour), media_type="application/json")

    @app.post(
        "/v1/feedback",
        response_model=FeedbackAccepted,
        status_code=202,
        tags=["feedback"],
        dependencies=[key],
        responses={400: UNREADABLE_BODY, 401: UNAUTHORIZED, 422: INVALID},
    )
    async def feedback(event: FeedbackEvent) -> FeedbackAccepted:
        """Record an impression, click or watch event (feeds the CTR metrics)."""
        label = recommender.metrics.observe_feedback(event.event, event.model_version)
        recommender.ctr.observe(event.item_id, event.event)
        return FeedbackAccepted(accepted=True, model_version=label)

    @app.get(
        "/v1/shadow",
        response_model=ShadowSummary,
        response_model_exclude_none=True,
        tags=["shadow"],
        dependencies=[key],
        responses={401: UNAUTHORIZED},
    )
    async def shadow_summary() -> dict[str, Any]:
        """The challenger-vs-champion comparison over the recent window."""
        if recommender.shadow is None:
            return {"enabled": False}
        return {"enabled": True, **recommender.shadow.summary()}

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["operations"],
        responses={503: {"model": Readiness, "description": "not ready: no fallback list yet"}},
    )
    async def readyz() -> JSONResponse:
        """Readiness: the API can answer (a fallback list at least); details of each source."""
        ready, body = recommender.readiness()
        return JSONResponse(status_code=200 if ready else 503, content=body)

    @app.get(
        "/metrics",
        response_class=PrometheusResponse,
        tags=["operations"],
        responses={200: {"description": "Prometheus text exposition format 0.0.4"}},
    )
    async def metrics_endpoint() -> PrometheusResponse:
        """Prometheus metrics (text format 0.0.4)."""
        return PrometheusResponse(recommender.metrics.exposition())
