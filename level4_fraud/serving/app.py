"""The scoring API on FastAPI: `create_app(service, cfg)`; run it with uvicorn (`level4_fraud.serve`).

Routes:

* ``POST /v1/score`` — one transaction -> decision, score, model version, latency, reason codes,
  flags. Idempotent by ``TRANSACTION_ID``; acknowledged (200) only once the audit log holds it.
* ``GET /v1/decisions/{transaction_id}`` — the audited decision of a transaction (admin).
* ``GET /healthz`` (alive), ``GET /readyz`` (the audit log answers; what decides), ``GET
  /metrics`` (Prometheus), ``GET /openapi.json`` (the schema).

``X-API-Key`` is required on scoring and admin routes: missing -> 401, wrong -> 403. Bad payloads
-> 422 with a message. Never a 500: an audit log that cannot be written -> 503 (the decision
was not acknowledged, retry), anything unexpected -> 503 with a message; model and online-store
failures are degraded decisions (200, flagged), not errors.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from level4_fraud.serving.config import ServingConfig, resolve_api_key
from level4_fraud.serving.fast_route import SCORE_ROUTE, Decider, ScoreFastPath, unavailable
from level4_fraud.serving.metrics import CONTENT_TYPE, ServiceMetrics
from level4_fraud.serving.schemas import DecisionOut, ErrorOut, TransactionIn
from level4_fraud.serving.service import ScoringService, decision_of
from shared.asgi import call_observing_status

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "body is not readable JSON text"},
    401: {"model": ErrorOut, "description": "missing API key"},
    403: {"model": ErrorOut, "description": "wrong API key"},
    422: {"model": ErrorOut, "description": "invalid payload (the message names the fields)"},
    503: {"model": ErrorOut, "description": "not acknowledged (audit log unavailable): retry"},
}


class ScoreMetricsMiddleware:
    """Latency and answer class of every ``POST /v1/score`` (pure ASGI: cheap)."""

    def __init__(self, app: Any, service: ScoringService, engine: str) -> None:
        self.app = app
        self.service = service
        self.engine = engine

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != SCORE_ROUTE:
            await self.app(scope, receive, send)
            return

        def record(status: int, seconds: float) -> None:
            self.service.metrics.observe_request(self.engine, status, seconds)

        await call_observing_status(self.app, scope, receive, send, record)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _key_dependency(expected: bytes) -> Any:
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="API key")

    async def require_key(key: str | None = Security(header)) -> None:
        if not key:
            raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header")
        if not secrets.compare_digest(key.encode(), expected):
            raise HTTPException(403, "wrong API key")

    return Security(require_key)


def create_app(
    service: ScoringService,
    cfg: ServingConfig,
    *,
    api_key: str | None = None,
    engine: str = "uvicorn",
    fast_path: bool = True,
) -> FastAPI:
    """The FastAPI app of a scoring service.

    Args:
        service: What decides and audits.
        cfg: Service settings (``api_key`` unless `api_key` is given).
        api_key: The key clients send (overrides the config; one of them must be set).
        engine: The ``engine`` label of the request metrics.
        fast_path: Answer valid scoring requests with `ScoreFastPath` (False: every request
            goes through FastAPI's route; the answers are the same).

    Raises:
        ValueError: No API key given or configured.
    """
    key = api_key or (cfg.api_key.get_secret_value() if cfg.api_key is not None else None)
    if not key:
        raise ValueError("the scoring API needs an API key (config serving.api_key or the api_key argument)")
    app = FastAPI(
        title="Level 4 fraud scoring API",
        version="1.0",
        description="Real-time card-fraud decisions with reason codes and an audit log. "
        f"Send the API key in the {API_KEY_HEADER} header.",
    )
    app.state.service = service
    _add_error_handlers(app)
    decide = Decider(service, cfg.decide_threads, on_loop=cfg.decide_on_loop)
    _add_routes(app, service, decide, _key_dependency(key.encode()))
    if fast_path:  # inside the metrics middleware (added last, so outermost): both are measured
        app.add_middleware(
            ScoreFastPath,
            decide=decide,
            expected_key=key.encode(),
            key_header=API_KEY_HEADER.lower().encode(),
        )
    app.add_middleware(ScoreMetricsMiddleware, service=service, engine=engine)
    return app


def run_app(
    run_dir: Path,
    cfg: ServingConfig,
    *,
    api_key: str,
    feature_store: Any = None,
    model_version: str | None = None,
    metrics: ServiceMetrics | None = None,
    engine: str = "uvicorn",
) -> FastAPI:
    """The app of a run folder's `ScoringService` (history loaded, models warm): what every way
    of serving runs — one uvicorn process, each ``--workers`` worker, each Ray Serve replica.

    Args:
        run_dir: The run folder.
        cfg: Service settings.
        api_key: The key clients send.
        feature_store: The `FeatureStoreConfig` (None: the run's SQLite store).
        model_version: Reported with each decision.
        metrics: The service's metrics (default: this process's own registry).
        engine: The ``engine`` label of the request metrics.
    """
    service = ScoringService.from_run(
        run_dir, cfg, feature_store=feature_store, model_version=model_version, metrics=metrics
    )
    return create_app(service, cfg, api_key=api_key, engine=engine)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"message": _validation_message(exc), "detail": errors})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"message": str(exc.detail)}, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return JSONResponse(
            status_code=503, content={"message": f"service unavailable: {type(exc).__name__}"}
        )


def _add_routes(app: FastAPI, service: ScoringService, decide: Decider, key: Any) -> None:
    @app.post(
        SCORE_ROUTE, response_model=DecisionOut, tags=["scoring"], dependencies=[key], responses=_ERRORS
    )
    async def score(tx: TransactionIn) -> Any:
        """Decide one transaction (idempotent by TRANSACTION_ID; audited before it is answered)."""
        try:
            return await decide(tx)
        except Exception as exc:  # never a 500: 503, the client retries (`unavailable` says why)
            return Response(unavailable(exc, tx), status_code=503, media_type="application/json")

    @app.get(
        "/v1/decisions/{transaction_id}",
        response_model=DecisionOut,
        tags=["admin"],
        dependencies=[key],
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "no decision for this id"}},
    )
    async def stored_decision(transaction_id: int = PathParam(..., ge=0)) -> Any:
        """The audited decision of a transaction."""
        try:
            record = await run_in_threadpool(service.audit.get, transaction_id)
        except Exception as exc:
            return JSONResponse(
                status_code=503, content={"message": f"audit log unavailable ({type(exc).__name__})"}
            )
        if record is None:
            return JSONResponse(
                status_code=404, content={"message": f"no decision for transaction {transaction_id}"}
            )
        return decision_of(record, replayed=True)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["operations"], responses={503: {"description": "the audit log does not answer"}}
    )
    async def readyz() -> JSONResponse:
        """Readiness: decisions can be acknowledged; what decides (model, thresholds, store)."""
        ready, body = await run_in_threadpool(service.readiness)
        return JSONResponse(status_code=200 if ready else 503, content=body)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)


__all__ = ["API_KEY_HEADER", "create_app", "resolve_api_key"]
