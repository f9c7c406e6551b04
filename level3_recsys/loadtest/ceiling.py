"""The load test's ceiling: a plain FastAPI endpoint returning precomputed lists.

Same route and a response of the same shape as the recommendation API, but nothing else: no
API key, no validation beyond the path, no metrics, no store reads per request (every list is
loaded into memory at startup and serialised once). Whatever the real API does on top of this
costs throughput; the load test reports ours / this. Run it with::

    L3__LOAD__CEILING_STORE_URL=sqlite:///.../recs.db uvicorn --factory \
        level3_recsys.loadtest.ceiling:create_ceiling_app --port 8090
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Response

from level3_recsys.serving.settings import LOAD_ENV_PREFIX
from level3_recsys.store import open_store

STORE_ENV = f"{LOAD_ENV_PREFIX}CEILING_STORE_URL"


def precompute(store_url: str) -> tuple[dict[str, bytes], bytes]:
    """Every user's answer as ready JSON bytes, and the answer for unknown users.

    Args:
        store_url: The batch store whose live batch is served.
    """
    store = open_store(store_url)
    try:
        batch = store.current()
        frame = store.read_all()
    finally:
        store.close()
    if batch is None or frame.empty:
        raise ValueError(f"the store at {store_url} holds no batch")
    answers: dict[str, bytes] = {}
    for user, rows in frame.sort_values(["user_id", "rank"]).groupby("user_id", sort=False):
        items = [
            {"item_id": i, "score": float(s), "rank": int(r)}
            for i, s, r in zip(
                rows["item_id"].tolist(), rows["score"].tolist(), rows["rank"].tolist(), strict=True
            )
        ]
        body = {
            "user_id": str(user),
            "items": items,
            "model_name": batch.model_name,
            "model_version": batch.model_version,
            "source": "precomputed",
            "fallback": False,
        }
        answers[str(user)] = json.dumps(body).encode()
    default = next(iter(answers.values()))
    return answers, default


def create_ceiling_app(store_url: str | None = None) -> FastAPI:
    """The ceiling app (store from `store_url` or the ``L3__LOAD__CEILING_STORE_URL`` variable)."""
    answers, default = precompute(store_url or os.environ[STORE_ENV])
    app = FastAPI(title="ceiling: precomputed recommendations")

    @app.get("/v1/recommendations/{user_id}")
    async def recommend(user_id: str) -> Response:
        return Response(answers.get(user_id, default), media_type="application/json")

    @app.post("/v1/feedback", status_code=202)
    async def feedback() -> dict[str, bool]:
        return {"accepted": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
