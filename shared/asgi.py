"""Pure-ASGI helpers the levels' services share (no web framework imported).

Fast paths (a middleware that answers the common, valid request itself and hands anything else
to the framework) need the key check, the body and a JSON answer: `has_key`, `read_body`,
`replaying`, `send_json`.

A metrics middleware needs the status a response started with and how long the call took,
including when the application raised (counted as a 500). Starlette's ``BaseHTTPMiddleware``
would give that too but costs a task and a stream per request; these few lines cost nothing.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
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


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case, as ASGI servers give names), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def has_key(scope: Scope, name: bytes, expected: bytes) -> bool:
    """Whether header `name` holds the API key `expected` (compared in constant time)."""
    given = header(scope, name)
    if not given:
        return False
    return secrets.compare_digest(given, expected)


def is_json(scope: Scope) -> bool:
    """Whether the request says its body is JSON (``application/json``, any parameters)."""
    kind = header(scope, b"content-type")
    return kind is not None and kind.split(b";", 1)[0].strip().lower() == b"application/json"


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body (None: the client disconnected before sending it)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives `body` again first (for an app called after `read_body`),
    then whatever the server sends (the disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


JSON_HEADERS: Sequence[tuple[bytes, bytes]] = ((b"content-type", b"application/json"),)


async def send_json(send: Send, status: int, body: bytes) -> None:
    """Answer `status` with the JSON text `body`."""
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
