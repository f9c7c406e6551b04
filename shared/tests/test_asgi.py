"""call_observing_status reports the response's status and duration, and a crash as a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.asgi import call_observing_status


async def _noop_receive() -> dict[str, Any]:
    return {"type": "http.request"}


def _run(app: Any) -> tuple[list[tuple[int, float]], list[dict[str, Any]]]:
    seen: list[tuple[int, float]] = []
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def go() -> None:
        await call_observing_status(
            app, {"type": "http"}, _noop_receive, send, lambda s, t: seen.append((s, t))
        )

    asyncio.run(go())
    return seen, sent


def test_reports_the_status_the_response_started_with_and_forwards_messages() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 422, "headers": []})
        await send({"type": "http.response.body", "body": b"bad"})

    seen, sent = _run(app)
    assert [s for s, _ in seen] == [422]
    assert seen[0][1] >= 0.01
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


def test_a_crash_counts_as_500_and_still_propagates() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom")

    seen: list[tuple[int, float]] = []

    async def send(message: Any) -> None:
        return None

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(
            call_observing_status(
                app, {"type": "http"}, _noop_receive, send, lambda s, t: seen.append((s, t))
            )
        )
    assert [s for s, _ in seen] == [500]


def test_has_key_and_is_json_read_the_headers() -> None:
    from shared.asgi import has_key, is_json

    scope = {"headers": [(b"content-type", b"Application/JSON; charset=utf-8"), (b"x-api-key", b"s3cret")]}
    assert has_key(scope, b"x-api-key", b"s3cret") and is_json(scope)
    assert not has_key(scope, b"x-api-key", b"other")
    assert not has_key({"headers": []}, b"x-api-key", b"s3cret")
    assert not has_key({"headers": [(b"x-api-key", b"")]}, b"x-api-key", b"")
    assert not is_json({"headers": [(b"content-type", b"text/plain")]}) and not is_json({"headers": []})


def test_read_body_joins_chunks_and_replaying_gives_them_again() -> None:
    from shared.asgi import read_body, replaying

    messages = [
        {"type": "http.request", "body": b'{"a": ', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def go() -> tuple[Any, ...]:
        body = await read_body(receive)
        assert body is not None
        again = replaying(body, receive)
        return body, await again(), await again()

    body, first, after = asyncio.run(go())
    assert body == b'{"a": 1}'
    assert first == {"type": "http.request", "body": b'{"a": 1}', "more_body": False}
    assert after == {"type": "http.disconnect"}


def test_read_body_is_none_when_the_client_leaves_first() -> None:
    from shared.asgi import read_body

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert asyncio.run(read_body(receive)) is None
