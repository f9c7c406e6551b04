"""Recommendation API: validation, auth, sources (batch / model / fallback), breaker, metrics, shutdown.

The model service is replaced by an httpx `MockTransport` (an in-process fake of its HTTP
contract); the batch store is the real `SQLiteStore`. The real model process is exercised in
`test_serving_integration.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from level3_recsys.serving import monitoring as mon
from level3_recsys.serving.api import create_app
from level3_recsys.serving.recommender import FALLBACK_MODEL, Recommender
from level3_recsys.store import ColdStart, SQLiteStore, open_store
from level3_recsys.tests.serving_helpers import POPULAR, FakeModel, H, reference_path_fixture, settings  # noqa: F401


def client_for(fake: FakeModel, reference_path: str | None, **kw) -> TestClient:
    store = kw.pop("store", None)
    challenger = kw.pop("challenger", None)
    app = create_app(
        settings(reference_path, **kw),
        model_transport=httpx.MockTransport(fake),
        challenger_transport=httpx.MockTransport(challenger) if challenger else None,
        store=store,
    )
    return TestClient(app)


def metric_values(client: TestClient) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# ---------------------------------------------------------------------- validation and auth
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/recommendations/1?k=0", "k"),
        ("/v1/recommendations/1?k=101", "k"),
        ("/v1/recommendations/1?k=ten", "k"),
        ("/v1/recommendations/1?hour=24", "hour"),
        ("/v1/recommendations/1?device=" + "x" * 40, "device"),
        ("/v1/recommendations/1?device=a%20b", "device"),
        ("/v1/recommendations/" + "u" * 65, "user_id"),
        ("/v1/recommendations/a%20b", "user_id"),
        ("/v1/recommendations/%00", "user_id"),
    ],
)
def test_bad_query_gives_422_with_message(reference_path, path, field):
    fake = FakeModel()
    with client_for(fake, reference_path) as c:
        r = c.get(path, headers=H)
    assert r.status_code == 422
    assert field in r.json()["message"]
    assert fake.calls == 0  # rejected before any model call


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "1", "item_id": 5, "event": "purchase"},
        {"user_id": "1", "event": "click"},
        {"user_id": "1", "item_id": 5, "event": "click", "position": 0},
        {"user_id": "1", "item_id": 5, "event": "watch", "watch_seconds": -3},
        {"user_id": "1 2", "item_id": 5, "event": "click"},
        [1, 2, 3],
    ],
)
def test_bad_feedback_gives_422(reference_path, body):
    with client_for(FakeModel(), reference_path) as c:
        r = c.post("/v1/feedback", json=body, headers=H)
    assert r.status_code == 422
    assert r.json()["message"]


def test_malformed_json_body_is_422_not_500(reference_path):
    with client_for(FakeModel(), reference_path) as c:
        r = c.post("/v1/feedback", content=b"{nope", headers={**H, "content-type": "application/json"})
    assert r.status_code == 422


def test_auth_required_except_health_metrics_and_schema(reference_path):
    with client_for(FakeModel(), reference_path) as c:
        missing = c.get("/v1/recommendations/1")
        wrong = c.get("/v1/recommendations/1", headers={"X-API-Key": "nope"})
        feedback = c.post("/v1/feedback", json={"user_id": "1", "item_id": 5, "event": "click"})
        shadow = c.get("/v1/shadow")
        assert missing.status_code == wrong.status_code == feedback.status_code == shadow.status_code == 401
        assert "X-API-Key" in missing.json()["detail"]
        assert wrong.json()["detail"] == "invalid API key"
        for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert c.get(open_path).status_code == 200, open_path


def test_openapi_documents_routes_limits_and_key(reference_path):
    with client_for(FakeModel(), reference_path) as c:
        schema = c.get("/openapi.json").json()
    assert {"/v1/recommendations/{user_id}", "/v1/feedback", "/healthz", "/readyz", "/metrics"} <= set(
        schema["paths"]
    )
    params = {p["name"]: p for p in schema["paths"]["/v1/recommendations/{user_id}"]["get"]["parameters"]}
    assert params["k"]["schema"]["minimum"] == 1 and params["k"]["schema"]["maximum"] == 100
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    get = schema["paths"]["/v1/recommendations/{user_id}"]["get"]
    assert get["security"] == [{"APIKeyHeader": []}]
    ok = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/RecommendationResponse"}
    assert "model_version" in schema["components"]["schemas"]["RecommendationResponse"]["properties"]


def test_openapi_documents_every_refusal_and_the_metrics_format(reference_path):
    with client_for(FakeModel(), reference_path) as c:
        schema = c.get("/openapi.json").json()
        metrics_type = c.get("/metrics").headers["content-type"]
        unreadable = c.post(
            "/v1/feedback", content=b'{"user_id": "\xff"}', headers={**H, "content-type": "application/json"}
        )
    paths = schema["paths"]
    error = {"$ref": "#/components/schemas/ErrorMessage"}
    for path, method, codes in (
        ("/v1/recommendations/{user_id}", "get", ("401", "422")),
        ("/v1/feedback", "post", ("400", "401", "422")),
        ("/v1/shadow", "get", ("401",)),
    ):
        responses = paths[path][method]["responses"]
        assert set(codes) <= set(responses), path
        if "401" in codes:
            assert responses["401"]["content"]["application/json"]["schema"] == error
    assert paths["/v1/feedback"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationProblem"
    }
    # a body that is not UTF-8 is refused with the documented 400 and its documented shape
    assert unreadable.status_code == 400 and set(unreadable.json()) == {"detail"}
    assert "503" in paths["/readyz"]["get"]["responses"]
    # /metrics declares the content type it really sends (Prometheus text format 0.0.4)
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == [metrics_type]


# ---------------------------------------------------------------------- answer sources
def test_model_answer_names_version_and_flags_cold_start(reference_path):
    fake = FakeModel()
    with client_for(fake, reference_path) as c:
        known = c.get("/v1/recommendations/1?k=3&device=mobile&hour=20", headers=H).json()
        cold = c.get("/v1/recommendations/never-seen?k=2", headers=H)
    assert known["source"] == "model" and known["fallback"] is False and known["cold_start"] is False
    assert known["model_version"] == "7" and known["model_name"] == "reg/itemknn"
    assert [i["item_id"] for i in known["items"]] == [500, 501, 502]
    assert cold.status_code == 200  # an unknown user is the cold-start path, not an error
    assert cold.json()["cold_start"] is True and len(cold.json()["items"]) == 2


@pytest.mark.parametrize(
    ("mode", "reason"), [("down", "connect"), ("500", "http_500"), ("garbage", "invalid")]
)
def test_model_failure_serves_popularity_fallback(reference_path, mode, reason):
    fake = FakeModel()
    fake.mode = mode
    with client_for(fake, reference_path) as c:
        r = c.get("/v1/recommendations/1?k=4", headers=H)
        values = metric_values(c)
    body = r.json()
    assert r.status_code == 200
    assert body["source"] == "fallback" and body["fallback"] is True and body["fallback_reason"] == reason
    assert [i["item_id"] for i in body["items"]] == POPULAR[:4]
    assert body["model_version"] == f"{FALLBACK_MODEL}@7"
    assert values[(mon.FALLBACKS, (("reason", reason),))] == 1
    assert values[(mon.MODEL_CALL_FAILURES, (("reason", reason),))] == 1


def test_slow_model_times_out_within_budget(reference_path):
    fake = FakeModel()
    fake.mode = "slow"
    with client_for(fake, reference_path, model_timeout_s=0.1) as c:
        start = time.perf_counter()
        body = c.get("/v1/recommendations/1", headers=H).json()
        elapsed = time.perf_counter() - start
    assert body["fallback_reason"] == "timeout"
    assert elapsed < 2.0  # bounded by the 0.1 s deadline, not the model's 5 s


def test_breaker_opens_then_model_is_not_called(reference_path):
    fake = FakeModel()
    fake.mode = "down"
    with client_for(fake, reference_path) as c:
        reasons = [c.get("/v1/recommendations/1", headers=H).json()["fallback_reason"] for _ in range(6)]
        values = metric_values(c)
        ready = c.get("/readyz").json()
    assert reasons[:3] == ["connect"] * 3
    assert reasons[3:] == ["breaker_open"] * 3
    assert fake.calls == 3  # open: no more calls to the dead service
    assert values[(mon.BREAKER_STATE, (("breaker", "model"),))] == 2
    assert ready["breaker"] == "open" and ready["ready"] is True


def test_without_reference_fallback_is_empty_and_not_ready():
    fake = FakeModel()
    fake.mode = "down"
    with client_for(fake, None) as c:
        r = c.get("/v1/recommendations/1", headers=H)
        ready = c.get("/readyz")
    assert r.status_code == 200 and r.json()["fallback"] is True and r.json()["items"] == []
    assert ready.status_code == 503


def test_missing_reference_file_starts_unready(tmp_path):
    with client_for(FakeModel(), str(tmp_path / "not-yet.json")) as c:
        assert c.get("/readyz").status_code == 503
        assert c.get("/v1/recommendations/1", headers=H).json()["source"] == "model"


def _batch_store(tmp_path, generated_at: datetime | None = None, k: int = 5) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "recs.db")
    rows = pd.DataFrame(
        {
            "user_id": [1] * k + [2] * k,
            "item_id": list(range(900, 900 + k)) * 2,
            "rank": list(range(1, k + 1)) * 2,
            "score": [1.0 - r / 10 for r in range(k)] * 2,
        }
    )
    store.write_batch([rows], model_name="reg/two_stage", model_version="6", k=k, generated_at=generated_at)
    return store


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.services)])
def batch_url(request, tmp_path):
    """URL of a store holding a fresh batch (lists of 5 for users 1 and 2), SQLite or Redis."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'recs.db'}"
    else:
        redis = pytest.importorskip("redis")
        url = f"redis://127.0.0.1:6379/0?prefix=l3serving:{uuid.uuid4().hex[:10]}"
    store = open_store(url)
    if request.param == "redis":
        try:
            store.client.ping()
        except redis.exceptions.ConnectionError:
            pytest.skip("no Redis on 127.0.0.1:6379")
    k = 5
    rows = pd.DataFrame(
        {
            "user_id": [1] * k + [2] * k,
            "item_id": list(range(900, 900 + k)) * 2,
            "rank": list(range(1, k + 1)) * 2,
            "score": [1.0 - r / 10 for r in range(k)] * 2,
        }
    )
    store.write_batch([rows], model_name="reg/two_stage", model_version="6", k=k)
    yield url
    if request.param == "redis":
        keys = list(store.client.scan_iter(match=f"{store.prefix}:*"))
        if keys:
            store.client.delete(*keys)
    store.close()


def test_fresh_batch_is_served_without_model_call(batch_url, reference_path):
    fake = FakeModel()
    with client_for(fake, reference_path, store_url=batch_url) as c:
        batch = c.get("/v1/recommendations/1?k=3", headers=H).json()
        longer = c.get("/v1/recommendations/1?k=8", headers=H).json()  # batch holds 5: ask the model
        absent = c.get("/v1/recommendations/3?k=3", headers=H).json()  # not in the batch
        values = metric_values(c)
    assert batch["source"] == "batch" and batch["model_version"] == "6"
    assert [i["item_id"] for i in batch["items"]] == [900, 901, 902]
    assert batch["batch_generated_at"] is not None
    assert longer["source"] == "model" and absent["source"] == "model"
    assert fake.calls == 2
    assert values[(mon.BATCH_FRESH, ())] == 1.0
    assert values[(mon.BATCH_AGE, ())] < 3600


def test_new_user_gets_the_batchs_cold_start_list_without_a_model_call(tmp_path, reference_path):
    store = SQLiteStore(tmp_path / "recs.db")
    rows = pd.DataFrame({"user_id": [1] * 5, "item_id": range(900, 905), "rank": range(1, 6), "score": 1.0})
    # the batch's model knows users 1..3; only user 1 was active and has a list
    cold = ColdStart(item_ids=[42, 41, 40, 39, 38], scores=[5.0, 4.0, 3.0, 2.0, 1.0], known_users=[1, 2, 3])
    store.write_batch([rows], model_name="reg/two_stage", model_version="6", k=5, cold_start=cold)
    fake = FakeModel()
    with client_for(fake, reference_path, store=store) as c:
        new = c.get("/v1/recommendations/brand-new?k=3", headers=H).json()
        slow_route = c.get("/v1/recommendations/brand-new?k=%33", headers=H).json()  # FastAPI route
        known_inactive = c.get("/v1/recommendations/2?k=3", headers=H).json()
        too_long = c.get("/v1/recommendations/brand-new?k=8", headers=H).json()  # batch list holds 5
        values = metric_values(c)
    assert new["source"] == "batch" and new["cold_start"] is True and not new["fallback"]
    assert [i["item_id"] for i in new["items"]] == [42, 41, 40] and new["model_version"] == "6"
    assert slow_route["items"] == new["items"] and slow_route["cold_start"] is True
    assert known_inactive["source"] == "model" and known_inactive["cold_start"] is False
    assert too_long["source"] == "model" and too_long["cold_start"] is True
    assert fake.calls == 2  # only the known user without a list and the over-long request
    assert values[(mon.COLD_STARTS, ())] == 3


@pytest.mark.parametrize(
    ("fast", "slow"),
    [
        # percent-encoded or repeated parameters are left to FastAPI; plain ones take the fast path
        (
            "/v1/recommendations/1?k=3&device=mobile&hour=5",
            "/v1/recommendations/1?k=%33&device=mobile&hour=5",
        ),
        ("/v1/recommendations/3?k=4", "/v1/recommendations/3?k=1&k=%34"),
        ("/v1/recommendations/1", "/v1/recommendations/%31"),
    ],
)
def test_fast_path_answers_exactly_like_the_fastapi_route(batch_url, reference_path, fast, slow):
    with client_for(FakeModel(), reference_path, store_url=batch_url) as c:
        a, b = c.get(fast, headers=H), c.get(slow, headers=H)
        values = metric_values(c)
    assert a.status_code == b.status_code == 200
    assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    one, two = a.json(), b.json()
    assert one.pop("request_id") != two.pop("request_id")
    assert one == two and one["source"] in ("batch", "model")
    # both are counted under the route template, not a per-user path
    route = (("method", "GET"), ("route", "/v1/recommendations/{user_id}"), ("status", "200"))
    assert values[("l3_api_requests_total", route)] == 2


def test_fast_path_leaves_bad_input_and_keys_to_the_route(batch_url, reference_path):
    with client_for(FakeModel(), reference_path, store_url=batch_url) as c:
        assert c.get("/v1/recommendations/1?k=3", headers={"X-API-Key": "nope"}).status_code == 401
        assert c.get("/v1/recommendations/1?k=3", headers={"X-API-Key": ""}).status_code == 401
        assert c.get("/v1/recommendations/1?k=101", headers=H).status_code == 422
        assert c.get("/v1/recommendations/1?hour=24", headers=H).status_code == 422
        assert c.get("/v1/recommendations/1?device=", headers=H).status_code == 422
        assert c.post("/v1/recommendations/1", headers=H).status_code == 405
        assert c.get("/v1/recommendations/1/x", headers=H).status_code == 404


def test_stale_batch_is_not_served(tmp_path, reference_path):
    old = datetime.now(UTC) - timedelta(days=3)
    fake = FakeModel()
    with client_for(fake, reference_path, store=_batch_store(tmp_path, old), freshness_s=3600) as c:
        body = c.get("/v1/recommendations/1?k=3", headers=H).json()
        values = metric_values(c)
    assert body["source"] == "model"
    assert values[(mon.BATCH_FRESH, ())] == 0.0
    assert values[(mon.BATCH_AGE, ())] > 2 * 86_400


class BrokenStore:
    """A store whose backend is down (e.g. Redis unreachable)."""

    closed = False

    def current(self):
        raise ConnectionError("store down")

    def get(self, user_id):
        raise ConnectionError("store down")

    def close(self):
        self.closed = True


def test_store_outage_falls_through_to_model(reference_path):
    store = BrokenStore()
    with client_for(FakeModel(), reference_path, store=store) as c:
        r = c.get("/v1/recommendations/1?k=3", headers=H)
        assert c.get("/metrics").status_code == 200
        assert c.get("/readyz").status_code == 200
    assert r.status_code == 200 and r.json()["source"] == "model"
    assert store.closed  # the lifespan closes the store at shutdown


# ---------------------------------------------------------------------- feedback and metrics
def test_feedback_feeds_ctr_per_version_and_metrics_page(reference_path):
    with client_for(FakeModel(), reference_path) as c:
        for _ in range(4):
            c.post(
                "/v1/feedback",
                json={"user_id": "1", "item_id": 5, "event": "impression", "model_version": "7"},
                headers=H,
            )
        r = c.post(
            "/v1/feedback",
            json={"user_id": "1", "item_id": 5, "event": "click", "model_version": "7"},
            headers=H,
        )
        c.post(
            "/v1/feedback",
            json={"user_id": "1", "item_id": "x9", "event": "watch", "watch_seconds": 30},
            headers=H,
        )
        for _ in range(60):
            c.get("/v1/recommendations/1?device=tv&hour=3", headers=H)
        page = c.get("/metrics")
        values = metric_values(c)
    assert r.status_code == 202 and r.json() == {"accepted": True, "model_version": "7"}
    assert page.headers["content-type"].startswith("text/plain")
    assert values[(mon.CTR, (("model_version", "7"),))] == pytest.approx(0.25)
    assert values[(mon.CTR, (("model_version", "all"),))] == pytest.approx(0.25)
    assert values[(mon.FEEDBACK_EVENTS, (("event", "watch"), ("model_version", "unknown")))] == 1
    assert values[(mon.RECOMMENDATIONS, (("model_version", "7"), ("source", "model")))] == 60
    # every request came from a tv, which is 10% of the training reference: large PSI
    assert values[(mon.PSI, (("feature", "device"),))] > 1.0
    route = "/v1/recommendations/{user_id}"
    assert values[(f"{mon.REQUEST_LATENCY}_count", (("route", route),))] == 60
    assert values[(mon.REQUESTS, (("method", "GET"), ("route", route), ("status", "200")))] == 60


def test_unmatched_paths_share_one_label(reference_path):
    with client_for(FakeModel(), reference_path) as c:
        for i in range(5):
            assert c.get(f"/random/{i}").status_code == 404
        values = metric_values(c)
    assert values[(mon.REQUESTS, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 5


def test_two_apps_do_not_share_metrics(reference_path):
    with client_for(FakeModel(), reference_path) as a, client_for(FakeModel(), reference_path) as b:
        a.get("/v1/recommendations/1", headers=H)
        assert (mon.RECOMMENDATIONS, (("model_version", "7"), ("source", "model"))) in metric_values(a)
        assert (mon.RECOMMENDATIONS, (("model_version", "7"), ("source", "model"))) not in metric_values(b)


def test_recommender_answers_batch_then_model_then_fallback_without_fastapi(tmp_path, reference_path):
    fake = FakeModel()
    recommender = Recommender(
        settings(reference_path), store=_batch_store(tmp_path), model_transport=httpx.MockTransport(fake)
    )

    async def answers() -> list[dict]:
        out = [json.loads(await recommender.answer("1", 3, "mobile", 20))]  # in the batch
        out.append(json.loads(await recommender.answer("3", 3, "unknown", None)))  # not in it
        fake.mode = "down"
        out.append(json.loads(await recommender.answer("3", 3, "unknown", 5)))
        await recommender.aclose()
        return out

    batch, model, fallback = asyncio.run(answers())
    assert (batch["source"], batch["model_version"]) == ("batch", "6")
    assert [i["item_id"] for i in batch["items"]] == [900, 901, 902]
    assert (model["source"], model["model_version"]) == ("model", "7")
    assert (fallback["source"], fallback["fallback_reason"]) == ("fallback", "connect")
    assert [i["item_id"] for i in fallback["items"]] == POPULAR[:3]
    assert fake.calls == 2  # the batch answer did not call the model
    assert recommender.readiness()[0] is True
