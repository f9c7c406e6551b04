"""Pure-ASGI helpers the levels' services share (no web framework imported).

A metrics middleware needs the status a response started with and how long the call took,
including when the application raised (counted as a 500). Starlette's ``BaseHTTPMiddleware``
would give that too but costs a task and a stream per request; these few lines cost nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def call_observing_status(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, on_done: Callable[[int, float], None]
) -> None:
    """Run ``app`` for one request, then call ``on_done(status, seconds)``.

    Args:
        app: The wrapped ASGI application.
        scope: The request's scope (after the call it holds what the app added, e.g. the route).
        receive: The server's receive channel.
        send: The server's send channel.
        on_done: Called once with the response's status (500 when the app raised before or
            while answering) and the call's duration in seconds; the app's exception, if any,
            propagates afterwards.
    """
    start = time.perf_counter()
    status = 500

    async def send_wrapper(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    try:
        await app(scope, receive, send_wrapper)
    except Exception:
        status = 500
        raise
    finally:
        on_done(status, time.perf_counter() - start)
