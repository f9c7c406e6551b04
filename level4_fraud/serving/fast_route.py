"""The scoring route's fast path: ``POST /v1/score`` answered without FastAPI's request handling.

A decision costs about a millisecond, so FastAPI's own work per request counts: routing, the
security dependency, reading and parsing the body then validating it, and encoding the response
model through ``jsonable_encoder``. `ScoreFastPath` answers the common request itself with the
same pieces the route uses: the key check, `TransactionIn` (pydantic parses the JSON and
validates in one pass), `ScoringService.decide` through the `Decider`, and `DecisionOut`'s own
JSON encoder. Anything else (another route, a missing or wrong
key, a body that is not JSON or does not validate) goes on to the FastAPI app, which gives the
usual 401/403/422 answers and keeps the OpenAPI schema, so both paths answer alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
import anyio.to_thread
from pydantic import ValidationError

from level4_fraud.serving.schemas import DecisionOut, TransactionIn
from level4_fraud.serving.service import AuditUnavailableError, ScoringService
from shared.asgi import has_key, is_json, read_body, replaying, send_json

logger = logging.getLogger(__name__)

SCORE_ROUTE = "/v1/score"


def unavailable(exc: Exception, tx: TransactionIn) -> bytes:
    """The 503 body of a decision that could not be made or recorded (the client retries)."""
    if isinstance(exc, AuditUnavailableError):
        message = f"{exc}; the decision was not recorded, retry"
    else:  # never a 500: the client may retry, the log says why
        logger.error("scoring failed for transaction %s", tx.TRANSACTION_ID, exc_info=exc)
        message = f"scoring failed ({type(exc).__name__}); retry"
    return json.dumps({"message": message}).encode()


class Decider:
    """How the API runs `ScoringService.decide` without blocking its event loop on the audit log.

    A decision holds the GIL for most of its millisecond of CPU, so extra threads do not decide
    any sooner; what may not block the loop is the wait for the audit log's commit. With the
    SQLite log (`AuditLog.commits_in_background`) and ``on_loop``, the decision is computed on
    the loop and only the commit is awaited (`ScoringService.decide_async`): one thread does the
    CPU work, with no GIL hand-overs between threads. Otherwise (PostgreSQL, or ``on_loop``
    False) `decide` runs in at most `threads` worker threads: the thread pool's default 40,
    under overload, took turns on the GIL and one process spent 6 ms of CPU per decision
    instead of 2.5.

    Args:
        service: What decides and audits.
        threads: Worker threads deciding at once, when decisions run in threads.
        on_loop: Decide on the event loop when the audit log allows it.
    """

    def __init__(self, service: ScoringService, threads: int, *, on_loop: bool = True) -> None:
        self.service = service
        self.threads = threads
        self.on_loop = on_loop and service.audit.commits_in_background
        self._limiter: anyio.CapacityLimiter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, tx: TransactionIn) -> DecisionOut:
        """The decision on `tx` (see `ScoringService.decide`)."""
        if self.on_loop:
            return await self.service.decide_async(tx)
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._loop is not loop:  # a limiter belongs to one loop
            self._limiter, self._loop = anyio.CapacityLimiter(self.threads), loop
        return await anyio.to_thread.run_sync(self.service.decide, tx, limiter=self._limiter)


class ScoreFastPath:
    """Pure ASGI middleware answering valid, authenticated ``POST /v1/score`` requests.

    Args:
        app: The next ASGI app (FastAPI's).
        decide: The route's own `Decider`.
        expected_key: The API key, as bytes.
        key_header: The key's header name, lower case, as bytes.
    """

    def __init__(self, app: Any, decide: Decider, expected_key: bytes, key_header: bytes) -> None:
        self.app = app
        self.decide = decide
        self.expected_key = expected_key
        self.key_header = key_header

    def _mine(self, scope: dict[str, Any]) -> bool:
        return (
            scope["type"] == "http"
            and scope["path"] == SCORE_ROUTE
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and is_json(scope)
            and has_key(scope, self.key_header, self.expected_key)
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self._mine(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client left: nothing to answer
            return
        try:
            tx = TransactionIn.model_validate_json(body)
        except ValidationError:  # FastAPI gives the 422 and its message
            await self.app(scope, replaying(body, receive), send)
            return
        try:
            decision = await self.decide(tx)
        except Exception as exc:
            await send_json(send, 503, unavailable(exc, tx))
            return
        await send_json(send, 200, decision.model_dump_json().encode())
