"""API fuzzing: schemathesis against the started API's own OpenAPI schema.

The API runs as it is deployed (uvicorn, its settings from ``L3__SERVING__*`` variables) with a
batch store, a serving reference and a model service (the real `model_app` over a stub runner,
in a thread), so answers come from the batch, its cold-start list, the model and the fallback.
Schemathesis reads ``/openapi.json`` from that server and sends generated requests for every
operation: valid ones with the API key, invalid ones with the key (bad parameters and bodies),
and valid ones with the keys it generates itself (wrong keys). Every answer must be documented
(status code, content type, headers, body schema) and none may be a 5xx; the documented
security must be enforced and unsupported methods refused.

Bounded and derandomised: about 300 requests, a few seconds of API time, the same requests on
every run (a failure reproduces).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from level3_recsys.serving.model_app import build_model_app
from level3_recsys.serving.processes import start_api
from level3_recsys.serving.reference import ServingReference
from level3_recsys.serving.scoring import ModelAnswer, RecommendRequest, ScoredItem
from level3_recsys.store import ColdStart, SQLiteStore
from level3_recsys.tests.serving_helpers import KEY
from shared.process import free_port, read_log_tail, stop_process_tree, wait_http_ready

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
    missing_required_header,
    unsupported_method,
]
MAX_EXAMPLES = 40  # per operation and pass
SECURED = ("GET /v1/recommendations/{user_id}", "POST /v1/feedback", "GET /v1/shadow")


class StubRunner:
    """A model runner without a model: known users ``0``..``99``, items 500, 501, ..."""

    model_version = "7"

    def recommend(self, request: RecommendRequest) -> ModelAnswer:
        items = [ScoredItem(item_id=500 + i, score=1.0 - i / 200, rank=i + 1) for i in range(request.k)]
        known = request.user_id.isdigit() and int(request.user_id) < 100
        return ModelAnswer(
            user_id=request.user_id,
            items=items,
            model_name="reg/stub",
            model_version=self.model_version,
            known_user=known,
            took_ms=0.1,
        )


@pytest.fixture(scope="module")
def model_url():
    """The model service's HTTP contract (`model_app`) over the stub runner, in a thread."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_model_app(StubRunner()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the stub model service did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def api_url(tmp_path_factory, model_url):
    """The API started as deployed: uvicorn, settings from ``L3__SERVING__*`` variables."""
    folder = tmp_path_factory.mktemp("fuzz")
    store = SQLiteStore(folder / "recs.db")
    rows = pd.DataFrame(
        {"user_id": [1] * 20 + [2] * 20, "item_id": list(range(900, 920)) * 2, "rank": list(range(1, 21)) * 2}
    ).assign(score=lambda d: 1.0 - d["rank"] / 100)
    cold = ColdStart(item_ids=list(range(40, 60)), scores=[1.0] * 20, known_users=list(range(100)))
    store.write_batch([rows], model_name="reg/stub", model_version="7", k=20, cold_start=cold)
    store.close()
    ServingReference(
        model_name="reg/stub",
        model_version="7",
        created_at=datetime.now(UTC).isoformat(),
        popular_items=list(range(100, 130)),
        popular_scores=[float(30 - i) for i in range(30)],
        item_bucket={str(i): str(i % 2) for i in range(100, 130)},
        features={"device": {"mobile": 0.7, "tv": 0.3}, "item_popularity": {"0": 0.5, "1": 0.5}},
    ).save(folder / "reference.json")
    env = {
        "L3__SERVING__API_KEY": KEY,
        "L3__SERVING__STORE_URL": f"sqlite:///{folder / 'recs.db'}",
        "L3__SERVING__REFERENCE_PATH": str(folder / "reference.json"),
        "L3__SERVING__MODEL_SERVICE_URL": model_url,
        "L3__SERVING__MODEL_TIMEOUT_S": "2.0",  # a busy 2-core machine must not turn answers into timeouts
    }
    port = free_port()
    proc = start_api(port, env, log_path=folder / "api.log")
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", proc=proc, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_tree(proc)
        log = read_log_tail(folder / "api.log")
        assert "Traceback" not in log, log  # no unhandled error, even one answered as documented


def fuzz(api_url: str, mode: GenerationMode, key: str | None) -> tuple[list[str], Counter]:
    """Run schemathesis over every operation; the failures found and the (operation, status) seen."""
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    failures: list[str] = []
    seen: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and operation.label not in SECURED:
            continue  # nothing to make invalid: no parameter, no body
        try:
            _fuzz_operation(operation, mode, {"X-API-Key": key} if key else None, seen)
        except Exception as exc:  # every operation is fuzzed; the failures are reported together
            failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures, seen


def _fuzz_operation(
    operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict | None, seen: Counter
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        seen[(operation.label, response.status_code)] += 1

    run()


def test_valid_requests_get_documented_answers(api_url):
    failures, seen = fuzz(api_url, GenerationMode.POSITIVE, KEY)
    assert not failures, "\n\n".join(failures)
    assert seen[("GET /v1/recommendations/{user_id}", 200)] > 0
    assert seen[("POST /v1/feedback", 202)] > 0
    assert seen[("GET /v1/shadow", 200)] > 0
    assert {op for op, _ in seen} >= {"GET /healthz", "GET /readyz", "GET /metrics"}
    assert not [key for key in seen if key[1] >= 500]


def test_invalid_requests_are_refused_as_documented(api_url):
    failures, seen = fuzz(api_url, GenerationMode.NEGATIVE, KEY)
    assert not failures, "\n\n".join(failures)
    assert seen[("GET /v1/recommendations/{user_id}", 422)] > 0
    assert seen[("POST /v1/feedback", 422)] > 0
    assert not [key for key in seen if key[1] >= 500]


def test_wrong_keys_are_refused_as_documented(api_url):
    failures, seen = fuzz(api_url, GenerationMode.POSITIVE, None)  # schemathesis makes up the keys
    assert not failures, "\n\n".join(failures)
    for operation in SECURED:
        assert {s for op, s in seen if op == operation} == {401}, operation
