"""The scoring route's fast path: ``POST /v1/score`` answered without FastAPI's request handling.

For a decision that costs about a millisecond, FastAPI's own work per request (routing, the
security dependency, reading and parsing the body, validating it, then encoding the response
model through ``jsonable_encoder``) cost nearly as much again. `ScoreFastPath` answers the
common request itself with the same pieces the route uses: the key check, `TransactionIn`
(pydantic parses the JSON and validates in one pass), `ScoringService.decide` in the thread
pool (`Decider`), and `DecisionOut`'s own JSON encoder. Anything else (another route, a missing or wrong
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
    """`ScoringService.decide` off the event loop, in at most `threads` worker threads at once.

    A decision holds the GIL for most of its millisecond, so more threads than the event loop
    can feed do not decide faster: under overload, the thread pool's default 40 threads took
    turns on the GIL, each switch costing CPU, and one process went from about 2.5 ms to 6 ms
    of CPU per decision and fell further behind. Two threads keep one deciding while the other
    waits on the audit log's group commit.

    Args:
        service: What decides and audits.
        threads: Worker threads deciding at once.
    """

    def __init__(self, service: ScoringService, threads: int) -> None:
        self.service = service
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, tx: TransactionIn) -> DecisionOut:
        """The decision on `tx` (see `ScoringService.decide`)."""
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
