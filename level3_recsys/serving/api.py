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
a 4xx with a message (422 for out-of-range parameters), never a 500. Each app owns its metrics
registry, HTTP clients, breaker and shadow queue; the lifespan starts the shadow workers and,
at shutdown, drains the queue within a bound and closes the clients and the store.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from pydantic_core import to_json

from level3_recsys.serving.breaker import BreakerOpenError, CircuitBreaker
from level3_recsys.serving.model_client import ModelCallError, ModelClient
from level3_recsys.serving.monitoring import CONTENT_TYPE, Metrics
from level3_recsys.serving.reference import ServingReference
from level3_recsys.serving.scoring import ScoredItem
from level3_recsys.serving.settings import API_KEY_HEADER, ServingSettings
from level3_recsys.serving.shadow import ItemCTREstimator, ShadowJob, ShadowRunner

logger = logging.getLogger(__name__)

USER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,64}$"
DEVICE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
# Bounds of the recommendation query, shared by the FastAPI route and its ASGI fast path.
K_MAX = 100
DEFAULT_K = 10
DEVICE_MAX_LEN = 32
DEFAULT_DEVICE = "unknown"
HOUR_MAX = 23
FALLBACK_MODEL = "popularity-fallback"


# ---------------------------------------------------------------------- schemas
class RecommendationResponse(BaseModel):
    """A recommendation list and where it came from."""

    user_id: str
    items: list[ScoredItem]
    k: int = Field(description="list length asked for (items may be fewer for a tiny catalogue)")
    model_name: str
    model_version: str
    source: Literal["batch", "model", "fallback"]
    fallback: bool = Field(description="true when the popularity fallback answered")
    fallback_reason: str | None = Field(
        None, description="breaker_open, timeout, connect, http_<status>, ..."
    )
    cold_start: bool = Field(description="true when the model does not know the user (popularity ranking)")
    batch_generated_at: str | None = Field(None, description="generation time of the batch served")
    request_id: str


class FeedbackEvent(BaseModel):
    """One user event on a recommended item."""

    user_id: Annotated[str, Field(pattern=USER_ID_PATTERN)]
    item_id: int | Annotated[str, Field(min_length=1, max_length=64)]
    event: Literal["impression", "click", "watch"]
    model_version: Annotated[str, Field(max_length=64)] | None = None
    position: Annotated[int, Field(ge=1, le=100)] | None = None
    watch_seconds: Annotated[float, Field(ge=0, le=86_400)] | None = None
    request_id: Annotated[str, Field(max_length=64)] | None = None


class FeedbackAccepted(BaseModel):
    """Acknowledgement of a feedback event."""

    accepted: bool
    model_version: str = Field(description="the version label the event was counted under")


# ---------------------------------------------------------------------- state
@dataclass
class ServingState:
    """Everything one app instance owns (built by `create_app`, closed by its lifespan)."""

    settings: ServingSettings
    metrics: Metrics
    breaker: CircuitBreaker
    model: ModelClient
    reference: ServingReference | None
    store: Any | None
    ctr: ItemCTREstimator
    challenger: ModelClient | None = None
    shadow: ShadowRunner | None = None
    _batch_cache: tuple[float, Any] = field(default=(-1e18, None))

    def current_batch(self) -> Any | None:
        """The store's live batch info, cached for ``store_cache_s``."""
        if self.store is None:
            return None
        now = time.monotonic()
        stamp, info = self._batch_cache
        if now - stamp > self.settings.store_cache_s:
            info = self.store.current()
            self._batch_cache = (now, info)
        return info

    def batch_age(self) -> float | None:
        info = self.current_batch()
        return None if info is None else info.age_seconds()


def _load_reference(path: str | None) -> ServingReference | None:
    if not path:
        return None
    if not Path(path).is_file():
        # start anyway (readyz says 503 until it exists): a container must not crash-loop on it
        logger.warning("serving reference %s not found: no popularity fallback, no drift gauges", path)
        return None
    return ServingReference.load(path)


def _open_store(url: str | None) -> Any | None:
    if not url:
        return None
    from level3_recsys.store import open_store

    return open_store(url)


# ---------------------------------------------------------------------- middleware
class MetricsMiddleware:
    """Pure ASGI middleware: latency, count and status of every HTTP request.

    The route label is the matched route's template (``/v1/recommendations/{user_id}``), or
    ``unmatched``, so labels stay bounded whatever the clients send.
    """

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            status = 500
            raise
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            m = self.metrics
            m.request_latency.labels(label).observe(time.perf_counter() - start)
            m.requests.labels(label, scope.get("method", ""), str(status)).inc()
            if status >= 500:
                m.errors.labels(label).inc()
            elif status >= 400:
                m.client_errors.labels(label, str(status)).inc()


_K_TEXT = re.compile(r"^[0-9]{1,3}$")
_HOUR_TEXT = re.compile(r"^[0-9]{1,2}$")
_USER_ID = re.compile(USER_ID_PATTERN)
_DEVICE = re.compile(DEVICE_PATTERN)
_KEY_HEADER = API_KEY_HEADER.lower().encode()
_JSON_HEADERS = [(b"content-type", b"application/json")]


class RecommendationFastPath:
    """Pure ASGI middleware answering well-formed, authenticated recommendation requests.

    FastAPI's per-request parameter solving (path, three queries, the security dependency)
    cost more than the answer itself. This middleware handles the common case, ``GET
    /v1/recommendations/{user_id}`` with a valid key and plain valid parameters, with a few
    regular expressions and the same `answer` function the FastAPI route calls. Everything
    else (a missing or wrong key, a bad or unusual parameter) goes on to the FastAPI route,
    which gives the usual 401/422 answers; the route also keeps the OpenAPI documentation.
    """

    PREFIX = "/v1/recommendations/"

    def __init__(self, app: Any, answer: Any, expected_key: bytes, route_getter: Any) -> None:
        self.app = app
        self.answer = answer
        self.expected_key = expected_key
        self.route_getter = route_getter

    def _parse(self, scope: dict) -> tuple[str, int, str, int | None] | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(self.PREFIX) or scope.get("root_path"):
            return None
        user_id = path[len(self.PREFIX) :]
        if not _USER_ID.match(user_id):  # no "/" either: the pattern excludes it
            return None
        key = None
        for name, value in scope["headers"]:
            if name == _KEY_HEADER:
                key = value
                break
        if not key or not secrets.compare_digest(key, self.expected_key):
            return None
        k, device, hour = DEFAULT_K, DEFAULT_DEVICE, None
        query: bytes = scope.get("query_string", b"")
        if query:
            try:
                text = query.decode("ascii")
            except UnicodeDecodeError:
                return None
            if "%" in text or "+" in text:  # encoded values: leave them to FastAPI's decoding
                return None
            for part in text.split("&"):
                name, sep, value = part.partition("=")
                if name == "k":
                    if not _K_TEXT.match(value) or not 1 <= int(value) <= K_MAX:
                        return None
                    k = int(value)
                elif name == "device":
                    if len(value) > DEVICE_MAX_LEN or not _DEVICE.match(value):
                        return None
                    device = value
                elif name == "hour":
                    if not _HOUR_TEXT.match(value) or int(value) > HOUR_MAX:
                        return None
                    hour = int(value)
                elif not name and not sep:
                    continue
                else:  # other parameters: FastAPI decides what they mean
                    return None
        return user_id, k, device, hour

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        parsed = self._parse(scope) if scope["type"] == "http" else None
        if parsed is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route_getter()  # the metrics middleware labels by route template
        body = await self.answer(*parsed)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


# ---------------------------------------------------------------------- factory
def create_app(
    settings: ServingSettings | None = None,
    *,
    model_transport: httpx.AsyncBaseTransport | None = None,
    challenger_transport: httpx.AsyncBaseTransport | None = None,
    store: Any | None = None,
) -> FastAPI:
    """Build the recommendation API.

    Args:
        settings: API settings (default: read from ``L3_SERVING_*`` environment variables).
        model_transport: httpx transport for the model service (tests; default: network).
        challenger_transport: httpx transport for the challenger (tests).
        store: A store object to use instead of opening ``settings.store_url``.

    Returns:
        The FastAPI app; run it with uvicorn (the lifespan starts and stops its workers).
    """
    settings = settings or ServingSettings()
    reference = _load_reference(settings.reference_path)
    store = store if store is not None else _open_store(settings.store_url)
    holder: dict[str, ServingState] = {}

    def batch_age() -> float | None:
        return holder["state"].batch_age()

    metrics = Metrics(
        drift_reference=reference.features if reference else None,
        drift_window=settings.drift_window,
        ctr_window=settings.ctr_window,
        max_model_versions=settings.max_model_versions,
        batch_age=batch_age,
        freshness_s=settings.freshness_s,
    )
    breaker = CircuitBreaker(
        "model",
        failure_rate=settings.breaker_failure_rate,
        window_s=settings.breaker_window_s,
        min_calls=settings.breaker_min_calls,
        open_s=settings.breaker_open_s,
        half_open_probes=settings.breaker_half_open_probes,
        close_after=settings.breaker_close_after,
        timeout_s=settings.model_timeout_s,
        on_change=lambda old, new: metrics.set_breaker_state("model", new),
    )
    metrics.breaker_state.labels("model").set(0)
    state = ServingState(
        settings=settings,
        metrics=metrics,
        breaker=breaker,
        model=ModelClient(settings.model_service_url, settings.model_timeout_s, transport=model_transport),
        reference=reference,
        store=store,
        ctr=ItemCTREstimator(),
    )
    holder["state"] = state
    if settings.challenger_service_url:
        state.challenger = ModelClient(
            settings.challenger_service_url, settings.shadow_timeout_s, transport=challenger_transport
        )
        challenger = state.challenger

        async def call_challenger(job: ShadowJob) -> tuple[list[Any], str]:
            answer = await challenger.recommend(job.user_id, job.k, job.device, job.hour)
            return [i.item_id for i in answer.items], answer.model_version

        state.shadow = ShadowRunner(
            call_challenger,
            metrics=metrics,
            ctr=state.ctr,
            queue_size=settings.shadow_queue_size,
            workers=settings.shadow_workers,
            timeout_s=settings.shadow_timeout_s,
            window=settings.shadow_window,
            log_path=settings.shadow_log_path,
            log_max_bytes=settings.shadow_log_max_bytes,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.shadow is not None:
            state.shadow.start()
        try:
            yield
        finally:
            if state.shadow is not None:
                left = await state.shadow.aclose(settings.drain_timeout_s)
                if left:
                    logger.warning(
                        "shutdown: %d shadow copies dropped after %.1fs", left, settings.drain_timeout_s
                    )
            await state.model.aclose()
            if state.challenger is not None:
                await state.challenger.aclose()
            if state.store is not None:
                state.store.close()

    app = FastAPI(
        title="Level 3 recommendation API",
        version="1.0",
        description="Top-K recommendations from the nightly batch, the model service or a popularity "
        "fallback; feedback events; Prometheus metrics. Send the API key in the X-API-Key header.",
        lifespan=lifespan,
    )
    app.state.serving = state
    api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="API key")
    expected_key = settings.api_key.get_secret_value().encode()

    # Default-value style: with postponed annotations FastAPI cannot see a local in Annotated[...].
    async def require_key(key: str | None = Security(api_key_header)) -> None:
        if key is None:
            raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header")
        if not secrets.compare_digest(key.encode(), expected_key):
            raise HTTPException(401, "invalid API key")

    @app.exception_handler(RequestValidationError)
    async def validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in err.items() if k in ("type", "loc", "msg")} for err in exc.errors()]
        return JSONResponse(status_code=422, content={"message": _validation_message(exc), "detail": errors})

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return JSONResponse(status_code=500, content={"message": "internal error"})

    # ------------------------------------------------------------------ recommendations
    # Answers are plain dicts in `RecommendationResponse` field order, serialised once by
    # pydantic-core's `to_json` (the serialiser response models use; no extra dependency). The
    # route returns them as a ready `Response`, so FastAPI does not re-validate a model it was
    # just handed; the OpenAPI schema still documents `RecommendationResponse`.
    def payload(
        user_id: str,
        items: list[dict[str, Any]],
        k: int,
        model_name: str,
        model_version: str,
        source: str,
        *,
        fallback_reason: str | None = None,
        cold_start: bool = False,
        batch_generated_at: str | None = None,
    ) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "items": items,
            "k": k,
            "model_name": model_name,
            "model_version": model_version,
            "source": source,
            "fallback": source == "fallback",
            "fallback_reason": fallback_reason,
            "cold_start": cold_start,
            "batch_generated_at": batch_generated_at,
            "request_id": uuid.uuid4().hex,
        }

    def ranked(item_ids: list[Any], scores: list[Any]) -> list[dict[str, Any]]:
        return [
            {"item_id": i, "score": float(s), "rank": r}
            for r, (i, s) in enumerate(zip(item_ids, scores, strict=True), 1)
        ]

    def fallback_answer(user_id: str, k: int, reason: str) -> dict[str, Any]:
        ref = state.reference
        items = ref.popular_items[:k] if ref else []
        scores = ref.popular_scores[:k] if ref else []
        metrics.fallbacks.labels(reason).inc()
        return payload(
            user_id,
            ranked(items, scores),
            k,
            FALLBACK_MODEL,
            f"{FALLBACK_MODEL}@{ref.model_version}" if ref else FALLBACK_MODEL,
            "fallback",
            fallback_reason=reason,
        )

    def batch_answer(user_id: str, k: int) -> dict[str, Any] | None:
        if state.store is None:
            return None
        try:
            info = state.current_batch()
            if info is None or info.age_seconds() > settings.freshness_s:
                return None
            recs = state.store.get(user_id)
            # a user the batch's model never saw gets the model's cold-start list from the batch
            cold = recs is None and (recs := state.store.get_cold_start(user_id)) is not None
        except Exception:  # a store outage means "no batch", not an error
            logger.warning("batch store read failed; using the model service", exc_info=True)
            return None
        if recs is None or len(recs.item_ids) < k or recs.batch.age_seconds() > settings.freshness_s:
            return None
        if cold:
            metrics.cold_starts.inc()
        return payload(
            user_id,
            ranked(recs.item_ids[:k], recs.scores[:k]),
            k,
            recs.batch.model_name,
            recs.batch.model_version,
            "batch",
            cold_start=cold,
            batch_generated_at=recs.batch.generated_at,
        )

    async def model_answer(user_id: str, k: int, device: str, hour: int) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            answer = await breaker.call(lambda: state.model.recommend(user_id, k, device, hour))
        except BreakerOpenError:
            return fallback_answer(user_id, k, "breaker_open")
        except TimeoutError:
            metrics.model_call_latency.labels("timeout").observe(time.perf_counter() - start)
            metrics.model_call_failures.labels("timeout").inc()
            return fallback_answer(user_id, k, "timeout")
        except ModelCallError as exc:
            metrics.model_call_latency.labels("error").observe(time.perf_counter() - start)
            metrics.model_call_failures.labels(exc.reason).inc()
            return fallback_answer(user_id, k, exc.reason)
        metrics.model_call_latency.labels("ok").observe(time.perf_counter() - start)
        if not answer.known_user:
            metrics.cold_starts.inc()
        return payload(
            user_id,
            [{"item_id": i.item_id, "score": i.score, "rank": i.rank} for i in answer.items[:k]],
            k,
            answer.model_name,
            answer.model_version,
            "model",
            cold_start=not answer.known_user,
        )

    async def answer(user_id: str, k: int, device: str, hour: int | None) -> bytes:
        """The JSON answer to one recommendation request (shared by the route and the fast path)."""
        start = time.perf_counter()
        hour = datetime.now(UTC).hour if hour is None else hour
        response = batch_answer(user_id, k) or await model_answer(user_id, k, device, hour)
        latency = time.perf_counter() - start
        source, version, items = response["source"], response["model_version"], response["items"]
        metrics.recommendation_latency.labels(source).observe(latency)
        metrics.recommendations.labels(source, metrics.ctr.version_label(version)).inc()
        if device != "unknown":  # an absent context is not a shift of the device mix
            metrics.drift.observe("device", [device])
        metrics.drift.observe("hour", [str(hour)])
        item_ids = [i["item_id"] for i in items]
        if state.reference is not None:
            metrics.drift.observe("item_popularity", [state.reference.bucket_of(i) for i in item_ids])
        if state.shadow is not None and not response["fallback"]:
            state.shadow.submit(
                ShadowJob(
                    user_id=user_id,
                    k=k,
                    device=device,
                    hour=hour,
                    champion_items=item_ids,
                    champion_version=version,
                    champion_latency_s=latency,
                )
            )
        return to_json(response)

    @app.get(
        "/v1/recommendations/{user_id}",
        response_model=RecommendationResponse,
        response_class=JSONResponse,
        tags=["recommendations"],
        dependencies=[Security(require_key)],
        responses={401: {"description": "missing or wrong API key"}, 422: {"description": "invalid input"}},
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
        return Response(await answer(user_id, k, device, hour), media_type="application/json")

    @functools.cache
    def recommend_route() -> Any:
        return next(r for r in app.routes if getattr(r, "path", None) == "/v1/recommendations/{user_id}")

    # added first so it runs inside the metrics middleware (which is added last: outermost)
    app.add_middleware(
        RecommendationFastPath, answer=answer, expected_key=expected_key, route_getter=recommend_route
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # ------------------------------------------------------------------ feedback and shadow
    @app.post(
        "/v1/feedback",
        response_model=FeedbackAccepted,
        status_code=202,
        tags=["feedback"],
        dependencies=[Security(require_key)],
    )
    async def feedback(event: FeedbackEvent) -> FeedbackAccepted:
        """Record an impression, click or watch event (feeds the CTR metrics)."""
        label = metrics.observe_feedback(event.event, event.model_version)
        state.ctr.observe(event.item_id, event.event)
        return FeedbackAccepted(accepted=True, model_version=label)

    @app.get("/v1/shadow", tags=["shadow"], dependencies=[Security(require_key)])
    async def shadow_summary() -> dict[str, Any]:
        """The challenger-vs-champion comparison over the recent window."""
        if state.shadow is None:
            return {"enabled": False}
        return {"enabled": True, **state.shadow.summary()}

    # ------------------------------------------------------------------ operations
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Readiness: the API can answer (a fallback list at least); details of each source."""
        try:
            info = state.current_batch()
        except Exception:  # report the store as unavailable
            info = None
        fallback_ready = bool(state.reference and state.reference.popular_items)
        body = {
            "ready": fallback_ready,
            "breaker": breaker.state,
            "fallback_items": len(state.reference.popular_items) if state.reference else 0,
            "batch": None
            if info is None
            else {
                "model_version": info.model_version,
                "generated_at": info.generated_at,
                "fresh": info.age_seconds() <= settings.freshness_s,
            },
            "shadow": state.shadow is not None,
        }
        return JSONResponse(status_code=200 if fallback_ready else 503, content=body)

    @app.get("/metrics", tags=["operations"], include_in_schema=True)
    async def metrics_endpoint() -> Response:
        """Prometheus metrics (text format 0.0.4)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return app
