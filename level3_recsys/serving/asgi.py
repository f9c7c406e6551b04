"""Pure ASGI middleware of the recommendation API: request metrics and the recommendation fast path."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from level3_recsys.serving.monitoring import Metrics
from level3_recsys.serving.schemas import (
    DEFAULT_DEVICE,
    DEFAULT_K,
    DEVICE_MAX_LEN,
    DEVICE_PATTERN,
    HOUR_MAX,
    K_MAX,
    USER_ID_PATTERN,
)
from level3_recsys.serving.settings import API_KEY_HEADER
from shared.asgi import call_observing_status, has_key, send_json

RECOMMEND_ROUTE = "/v1/recommendations/{user_id}"
RECOMMEND_PREFIX = "/v1/recommendations/"

Answer = Callable[[str, int, str, "int | None"], Awaitable[bytes]]


class MetricsMiddleware:
    """Latency, count and status of every HTTP request.

    The route label is the matched route's template (``/v1/recommendations/{user_id}``), or
    ``unmatched``, so labels stay bounded whatever the clients send.
    """

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def record(status: int, seconds: float) -> None:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            m = self.metrics
            m.request_latency.labels(label).observe(seconds)
            m.requests.labels(label, scope.get("method", ""), str(status)).inc()
            if status >= 500:
                m.errors.labels(label).inc()
            elif status >= 400:
                m.client_errors.labels(label, str(status)).inc()

        await call_observing_status(self.app, scope, receive, send, record)


_K_TEXT = re.compile(r"^[0-9]{1,3}$")
_HOUR_TEXT = re.compile(r"^[0-9]{1,2}$")
_USER_ID = re.compile(USER_ID_PATTERN)
_DEVICE = re.compile(DEVICE_PATTERN)
_KEY_HEADER = API_KEY_HEADER.lower().encode()
_PREFIX_LEN = len(RECOMMEND_PREFIX)


def parse_recommendation(
    scope: dict[str, Any], expected_key: bytes
) -> tuple[str, int, str, int | None] | None:
    """``(user_id, k, device, hour)`` of a plain, valid, authenticated recommendation request.

    None for anything else: another route or method, a missing or wrong key, a parameter out
    of bounds, percent-encoded or unknown parameters. Those go on to the FastAPI route, which
    decodes them and gives the usual 401/422 answers.
    """
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(RECOMMEND_PREFIX) or scope.get("root_path"):
        return None
    user_id = path[_PREFIX_LEN:]
    if not _USER_ID.match(user_id):  # no "/" either: the pattern excludes it
        return None
    if not has_key(scope, _KEY_HEADER, expected_key):
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


class RecommendationFastPath:
    """Answers well-formed, authenticated recommendation requests without FastAPI's routing.

    FastAPI's per-request parameter solving (path, three queries, the security dependency)
    costs more than the answer itself. This middleware handles the common case, ``GET
    /v1/recommendations/{user_id}`` with a valid key and plain valid parameters, with a few
    regular expressions and the same `Recommender.answer` the FastAPI route calls. Everything
    else goes on to the FastAPI route, which also keeps the OpenAPI documentation.

    Args:
        app: The next ASGI app (FastAPI's router).
        answer: ``Recommender.answer``.
        expected_key: The API key, as bytes.
        routes: The app's route list, searched once for the route the metrics label by.
    """

    def __init__(self, app: Any, answer: Answer, expected_key: bytes, routes: Sequence[Any]) -> None:
        self.app = app
        self.answer = answer
        self.expected_key = expected_key
        self.routes = routes
        self._route: Any = None

    def _recommend_route(self) -> Any:
        # looked up on the first request: routes are registered after the middleware is added
        if self._route is None:
            self._route = next(r for r in self.routes if getattr(r, "path", None) == RECOMMEND_ROUTE)
        return self._route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        parsed = parse_recommendation(scope, self.expected_key) if scope["type"] == "http" else None
        if parsed is None:
            await self.app(scope, receive, send)
            return
        # the metrics middleware labels by route template; found once, then an attribute read
        scope["route"] = self._route if self._route is not None else self._recommend_route()
        await send_json(send, 200, await self.answer(*parsed))
