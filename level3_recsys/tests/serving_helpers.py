"""Shared doubles for the serving tests: an in-process fake of the model service's HTTP contract."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from level3_recsys.serving.reference import ServingReference
from level3_recsys.serving.settings import ServingSettings

KEY = "test-key"
H = {"X-API-Key": KEY}
POPULAR = [101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112]


class FakeModel:
    """The model service's HTTP contract, in process; `mode` switches its behaviour."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.known = {"1", "2", "3"}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "500":
            return httpx.Response(500, json={"error": "boom"})
        if self.mode == "garbage":
            return httpx.Response(200, json={"unexpected": True})
        if self.mode == "slow":
            await asyncio.sleep(5)
        payload = json.loads(request.content)
        user, k = payload["user_id"], payload["k"]
        items = [{"item_id": 500 + i, "score": 1.0 - i / 100, "rank": i + 1} for i in range(k)]
        return httpx.Response(
            200,
            json={
                "user_id": user,
                "items": items,
                "model_name": "reg/itemknn",
                "model_version": "7",
                "known_user": user in self.known,
                "took_ms": 0.5,
            },
        )


@pytest.fixture(name="reference_path")
def reference_path_fixture(tmp_path):
    """A serving reference JSON with a known popularity list."""
    ref = ServingReference(
        model_name="reg/itemknn",
        model_version="7",
        created_at=datetime.now(UTC).isoformat(),
        popular_items=POPULAR,
        popular_scores=[float(100 - i) for i in range(len(POPULAR))],
        item_bucket={str(i): "0" for i in POPULAR},
        features={
            "device": {"mobile": 0.6, "desktop": 0.3, "tv": 0.1},
            "item_popularity": {"0": 0.5, "1": 0.5},
        },
    )
    return str(ref.save(tmp_path / "reference.json"))


def settings(reference_path: str | None = None, **kw) -> ServingSettings:
    base = {
        "api_key": KEY,
        "model_service_url": "http://model.test",
        "reference_path": reference_path,
        "model_timeout_s": 0.2,
        "breaker_min_calls": 3,
        "breaker_open_s": 60.0,
    }
    base.update(kw)
    return ServingSettings(**base)
