"""The scoring API (`serving.app`, `serving.service`) in process: decisions, idempotency and the
audit log, bad payloads, API keys, metrics, and a 503 (never a 500) when nothing can be audited."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from level4_fraud.tests.serving_helpers import payload, serving_config, serving_run

pytestmark = pytest.mark.slow  # the run folder takes about a minute to build (once per session)

KEY = {"X-API-Key": "test-key"}


@pytest.fixture(scope="module")
def run():
    return serving_run()


@pytest.fixture()
def service(run, tmp_path):
    from level4_fraud.serving.service import ScoringService

    cfg = serving_config(run, audit_url=f"sqlite:///{tmp_path / 'audit.db'}")
    svc = ScoringService.from_run(run.run_dir, cfg)
    yield svc
    svc.close()


@pytest.fixture()
def client(run, service):
    from level4_fraud.serving.app import create_app

    with TestClient(create_app(service, serving_config(run))) as c:
        yield c


@pytest.fixture(scope="module")
def bodies(run):
    return [payload(row) for _, row in run.replay().head(40).iterrows()]


def test_score_answers_a_decision_with_reasons_and_logs_it(client, service, bodies):
    r = client.post("/v1/score", json=bodies[0], headers=KEY)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["transaction_id"] == bodies[0]["TRANSACTION_ID"]
    assert d["decision"] in ("approve", "review", "decline") and 0 <= d["score"] <= 1
    assert d["model_version"] == service.scorer.model_version and d["latency_ms"] > 0
    assert d["replayed"] is False and isinstance(d["flags"], list)
    assert d["reasons"] and all({"feature", "value", "contribution", "text"} <= set(x) for x in d["reasons"])
    stored = service.audit.get(bodies[0]["TRANSACTION_ID"])
    assert (
        stored is not None and stored.decision == d["decision"] and stored.score == pytest.approx(d["score"])
    )
    assert stored.card_hash != str(bodies[0]["CUSTOMER_ID"]) and len(stored.card_hash) == 64
    assert stored.card_hash == service.audit.keyed_hash(bodies[0]["CUSTOMER_ID"])


def test_a_retry_gets_the_first_decision_unchanged_and_one_audit_row(client, service, bodies):
    first = client.post("/v1/score", json=bodies[1], headers=KEY).json()
    again = client.post("/v1/score", json=bodies[1], headers=KEY).json()
    changed = client.post("/v1/score", json={**bodies[1], "TX_AMOUNT": 9_999.0}, headers=KEY).json()
    assert again["replayed"] is True and changed["replayed"] is True
    for answer in (again, changed):
        assert {k: v for k, v in answer.items() if k != "replayed"} == {
            k: v for k, v in first.items() if k != "replayed"
        }
    assert service.audit.count() == 1
    assert service.audit.transaction_ids() == [bodies[1]["TRANSACTION_ID"]]


def test_a_replayed_transaction_does_not_count_twice_in_the_card_state(client, service, bodies):
    body = bodies[2]
    client.post("/v1/score", json=body, headers=KEY)
    state = service.scorer.ledger._cards[body["CUSTOMER_ID"]]
    n = len(state.times)
    client.post("/v1/score", json=body, headers=KEY)
    assert len(service.scorer.ledger._cards[body["CUSTOMER_ID"]].times) == n


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"TX_AMOUNT": -1.0}, "TX_AMOUNT"),
        ({"TX_AMOUNT": "a lot"}, "TX_AMOUNT"),
        ({"TX_DATETIME": "yesterday"}, "TX_DATETIME"),
        ({"CUSTOMER_ID": -5}, "CUSTOMER_ID"),
        ({"CARD_NUMBER": "4111"}, "CARD_NUMBER"),
        ({"TERMINAL_ID": None}, "TERMINAL_ID"),
    ],
)
def test_bad_payloads_get_422_naming_the_field(client, service, bodies, change, field):
    r = client.post("/v1/score", json={**bodies[3], **change}, headers=KEY)
    assert r.status_code == 422
    assert field in r.json()["message"]
    assert service.audit.count() == 0


def test_a_missing_field_a_nan_amount_and_a_non_json_body_get_4xx_with_a_message(client, service, bodies):
    body = dict(bodies[3])
    del body["TX_AMOUNT"]
    r = client.post("/v1/score", json=body, headers=KEY)
    assert r.status_code == 422 and "TX_AMOUNT" in r.json()["message"]
    raw = (
        '{"TRANSACTION_ID": 1, "TX_DATETIME": "2018-05-10T10:00:00", "CUSTOMER_ID": 1, '
        '"TERMINAL_ID": 1, "TX_AMOUNT": NaN}'
    )
    r = client.post("/v1/score", content=raw, headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["message"]
    json_header = {**KEY, "content-type": "application/json"}
    r = client.post("/v1/score", content=b"not json", headers=json_header)
    assert r.status_code == 422 and r.json()["message"]
    r = client.post("/v1/score", content=b"\xff not json", headers=json_header)  # not even text
    assert r.status_code in (400, 422) and r.json()["message"]
    assert service.audit.count() == 0


def test_api_key_is_required_on_scoring_and_admin_routes(client, service, bodies):
    for method, url, body in (("post", "/v1/score", bodies[4]), ("get", "/v1/decisions/1", None)):
        missing = client.request(method, url, json=body)
        wrong = client.request(method, url, json=body, headers={"X-API-Key": "nope"})
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["message"]
        assert wrong.status_code == 403 and wrong.json()["message"]
    assert service.audit.count() == 0
    for url in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert client.get(url).status_code == 200, url


def test_admin_route_returns_the_audited_decision(client, bodies):
    tid = bodies[5]["TRANSACTION_ID"]
    assert client.get(f"/v1/decisions/{tid}", headers=KEY).status_code == 404
    first = client.post("/v1/score", json=bodies[5], headers=KEY).json()
    got = client.get(f"/v1/decisions/{tid}", headers=KEY).json()
    assert got["decision"] == first["decision"] and got["score"] == first["score"] and got["replayed"] is True


def test_metrics_use_the_shared_names(client, bodies):
    for body in bodies[6:12]:
        assert client.post("/v1/score", json=body, headers=KEY).status_code == 200
    client.post("/v1/score", json={"bad": 1}, headers=KEY)
    text = client.get("/metrics").text
    assert 'fraud_request_latency_seconds_count{engine="uvicorn"} 7.0' in text
    assert 'fraud_requests_total{engine="uvicorn",status="2xx"} 6.0' in text
    assert 'fraud_requests_total{engine="uvicorn",status="4xx"} 1.0' in text
    decided = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fraud_decisions_total{")
    )
    assert decided == 6
    for name in (
        "fraud_score_bucket",
        "fraud_fallbacks_total",
        "fraud_audit_records_total 6.0",
        "fraud_model_info{",
    ):
        assert name in text


def test_openapi_documents_the_score_route(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/score"]["post"]
    assert {"200", "401", "403", "422", "503"} <= set(op["responses"])
    assert "TransactionIn" in spec["components"]["schemas"]


def test_an_unwritable_audit_log_is_503_not_500(run, tmp_path, bodies):
    from level4_fraud.serving.app import create_app
    from level4_fraud.serving.service import ScoringService

    cfg = serving_config(run, audit_url=f"sqlite:///{tmp_path / 'audit.db'}")
    svc = ScoringService.from_run(run.run_dir, cfg)
    app = create_app(svc, cfg)
    svc.audit.close()  # the log is gone: nothing may be acknowledged
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/score", json=bodies[0], headers=KEY)
        assert r.status_code == 503 and "retry" in r.json()["message"]
        assert c.get("/readyz").status_code == 503


def test_an_unwritable_audit_log_is_503_on_the_fastapi_route_too(run, tmp_path, bodies):
    from level4_fraud.serving.app import create_app
    from level4_fraud.serving.service import ScoringService

    cfg = serving_config(run, audit_url=f"sqlite:///{tmp_path / 'audit.db'}")
    svc = ScoringService.from_run(run.run_dir, cfg)
    app = create_app(svc, cfg, fast_path=False)
    svc.audit.close()
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/score", json=bodies[0], headers=KEY)
        assert r.status_code == 503 and "not recorded, retry" in r.json()["message"]


# ------------------------------------------------------------------------------------ fast path
def _services(run, tmp_path, n):
    from level4_fraud.serving.service import ScoringService

    return [
        ScoringService.from_run(
            run.run_dir, serving_config(run, audit_url=f"sqlite:///{tmp_path / f'audit{i}.db'}")
        )
        for i in range(n)
    ]


def test_the_fast_path_answers_as_the_fastapi_route_does(run, tmp_path, bodies):
    from level4_fraud.serving.app import create_app

    fast_svc, route_svc = _services(run, tmp_path, 2)
    try:
        with (
            TestClient(create_app(fast_svc, serving_config(run))) as fast,
            TestClient(create_app(route_svc, serving_config(run), fast_path=False)) as route,
        ):
            for body in bodies[:25]:
                a = fast.post("/v1/score", json=body, headers=KEY)
                b = route.post("/v1/score", json=body, headers=KEY)
                assert a.status_code == b.status_code == 200
                assert a.headers["content-type"] == b.headers["content-type"]
                ja, jb = a.json(), b.json()
                assert ja.pop("latency_ms") > 0 and jb.pop("latency_ms") > 0
                assert ja == jb
            assert fast_svc.audit.count() == route_svc.audit.count() == 25
    finally:
        fast_svc.close()
        route_svc.close()


def test_the_fast_path_decides_valid_requests_and_leaves_the_rest_to_fastapi(run, tmp_path, bodies):
    """Without the FastAPI score route, valid requests are still answered (by the fast path)
    and everything else falls through to FastAPI (here: no route, so 404/405)."""
    from level4_fraud.serving.app import create_app

    (svc,) = _services(run, tmp_path, 1)
    app = create_app(svc, serving_config(run))
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/v1/score"]
    try:
        with TestClient(app) as c:
            ok = c.post("/v1/score", json=bodies[0], headers=KEY)
            assert ok.status_code == 200 and ok.json()["transaction_id"] == bodies[0]["TRANSACTION_ID"]
            assert c.post("/v1/score", json={**bodies[1], "TX_AMOUNT": -1}, headers=KEY).status_code in (
                404,
                405,
            )
            assert c.post("/v1/score", json=bodies[1], headers={"X-API-Key": "nope"}).status_code in (
                404,
                405,
            )
            text = {**KEY, "content-type": "text/plain"}
            assert c.post("/v1/score", content=ok.request.content, headers=text).status_code in (404, 405)
        assert svc.audit.count() == 1
    finally:
        svc.close()


def test_no_more_decisions_run_at_once_than_decide_threads(run, tmp_path, bodies):
    import asyncio
    import threading
    import time

    import httpx

    from level4_fraud.serving.app import create_app

    (svc,) = _services(run, tmp_path, 1)
    decide, lock = svc.decide, threading.Lock()
    running, peak = 0, 0

    def counting(tx):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)  # long enough for the other requests to arrive meanwhile
        try:
            return decide(tx)
        finally:
            with lock:
                running -= 1

    svc.decide = counting

    async def burst(app, part):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/v1/score", json=b, headers=KEY) for b in part))

    try:
        for threads, part, route in ((2, bodies[:12], True), (1, bodies[12:20], False)):
            peak = 0
            cfg = serving_config(run, decide_threads=threads, decide_on_loop=False)
            app = create_app(svc, cfg, fast_path=route)
            answers = asyncio.run(burst(app, part))
            assert [a.status_code for a in answers] == [200] * len(part)
            assert peak == threads, (threads, peak)
    finally:
        svc.close()


def test_with_the_sqlite_log_decisions_run_on_the_event_loop_and_each_is_audited_once(run, tmp_path, bodies):
    import asyncio

    import httpx

    from level4_fraud.serving.app import create_app

    (svc,) = _services(run, tmp_path, 1)

    def blocking(tx):
        raise AssertionError("the thread path was used")

    svc.decide = blocking  # decide_async must not fall back to it

    async def burst(app, part):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/v1/score", json=b, headers=KEY) for b in part))

    try:
        for route in (True, False):
            answers = asyncio.run(burst(create_app(svc, serving_config(run), fast_path=route), bodies[:16]))
            assert [a.status_code for a in answers] == [200] * 16
            assert [a.json()["replayed"] for a in answers] == [not route] * 16  # the second pass replays
        assert svc.audit.count() == 16
    finally:
        svc.close()
