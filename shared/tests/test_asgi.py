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
