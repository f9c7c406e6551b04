"""Prometheus configuration, alert rules and the Grafana dashboard against the real API.

* ``promtool check config`` / ``check rules`` / ``test rules`` (Debian's ``prometheus`` package);
  a mutated threshold makes the alert unit tests fail, so they test something.
* Grafana cannot be installed here: every dashboard PromQL expression is wrapped as a
  recording rule and checked by ``promtool check rules``.
* Every metric the rules and the dashboard read is exposed by the API's ``/metrics`` (app in
  process), and the dashboard shows every metric `monitoring` defines.
* One integration test runs a real Prometheus on loopback that scrapes the API (uvicorn) and
  answers a query with its series and the rules with their health.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime

import httpx
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from level3_recsys.serving import monitoring as mon
from level3_recsys.serving.api import create_app
from level3_recsys.serving.processes import start_api
from level3_recsys.serving.reference import ServingReference
from level3_recsys.serving.settings import ServingSettings
from level3_recsys.store import SQLiteStore
from level3_recsys.tests.ops_helpers import DASHBOARD, DOCKER, PROMETHEUS_DIR, tool
from shared.process import free_port, start_process, stop_process_tree, wait_http_ready

ALERTS = PROMETHEUS_DIR / "alerts.yml"
KEY = "ops-key"
METRIC_RE = re.compile(r"\bl3_[a-z0-9_]+")
REQUIRED_ALERTS = {
    "RecsysHighP99Latency",
    "RecsysHighErrorRate",
    "RecsysBreakerOpen",
    "RecsysCTRDrop",
    "RecsysFeatureDrift",
}


def run(cmd, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"]) for panel in dash["panels"] for target in panel.get("targets", [])
    ]


def alert_exprs() -> list[tuple[str, str]]:
    spec = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in spec["groups"] for r in g["rules"]]


# ---------------------------------------------------------------------- promtool
def test_prometheus_config_is_valid():
    result = run([tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid_and_cover_the_required_alerts():
    result = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert {name for name, _ in alert_exprs()} >= REQUIRED_ALERTS


def test_alert_rules_pass_their_unit_tests():
    result = run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_catch_a_wrong_threshold(tmp_path):
    # An error-rate alert at 50% instead of 1% must fail its unit test.
    shutil.copy(PROMETHEUS_DIR / "alerts_test.yml", tmp_path)
    text = ALERTS.read_text()
    old = "clamp_min(sum(rate(l3_api_requests_total[5m])), 1e-9) > 0.01"
    mutated = text.replace(old, old.replace("0.01", "0.5"))
    assert mutated != text
    (tmp_path / "alerts.yml").write_text(mutated)
    result = run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert result.returncode != 0
    assert "RecsysHighErrorRate" in result.stdout + result.stderr


def _as_recording_rules(exprs: list[tuple[str, str]]) -> str:
    rules = [{"record": f"dashboard:panel_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False)


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    good = tmp_path / "dashboard_rules.yml"
    good.write_text(_as_recording_rules(exprs))
    result = run([tool("promtool"), "check", "rules", str(good)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
    # The wrapping catches a broken expression (a Grafana variable is not PromQL).
    bad = tmp_path / "bad_rules.yml"
    bad.write_text(_as_recording_rules([("bad", "rate(l3_api_requests_total[$__rate_interval])")]))
    assert run([tool("promtool"), "check", "rules", str(bad)]).returncode != 0


# ---------------------------------------------------------------------- dashboard structure
def test_dashboard_shows_every_metric_the_api_defines():
    text = " ".join(expr for _, expr in dashboard_exprs())
    used = set(METRIC_RE.findall(text))
    missing = [
        name for name in mon.ALL_METRICS if not any(u == name or u.startswith(name + "_") for u in used)
    ]
    assert not missing, f"metrics with no dashboard panel: {missing}"


def test_dashboard_is_provisioned_and_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/recsys.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# ---------------------------------------------------------------------- against the real API
POPULAR = list(range(100, 130))


@pytest.fixture(scope="module")
def serving_files(tmp_path_factory):
    """A serving reference and a SQLite batch store with a fresh batch for users 0..49."""
    folder = tmp_path_factory.mktemp("serving")
    ref = ServingReference(
        model_name="ops/itemknn",
        model_version="3",
        created_at=datetime.now(UTC).isoformat(),
        popular_items=POPULAR,
        popular_scores=[float(1000 - i) for i in range(len(POPULAR))],
        item_bucket={str(i): str(min(n // 3, 9)) for n, i in enumerate(POPULAR)},
        features={
            "device": {"mobile": 0.6, "desktop": 0.3, "tv": 0.1},
            "hour": {str(h): 1 / 24 for h in range(24)},
            "item_popularity": {str(b): 0.1 for b in range(10)},
        },
    )
    ref.save(folder / "reference.json")
    rows = pd.DataFrame(
        {
            "user_id": [u for u in range(50) for _ in range(10)],
            "item_id": [200 + (u + r) % 40 for u in range(50) for r in range(10)],
            "rank": [r + 1 for _ in range(50) for r in range(10)],
            "score": [1.0 - r / 10 for _ in range(50) for r in range(10)],
        }
    )
    store = SQLiteStore(folder / "recs.db")
    store.write_batch([rows], model_name="ops/itemknn", model_version="3", k=10)
    store.close()
    return {"reference": str(folder / "reference.json"), "store": f"sqlite:///{folder / 'recs.db'}"}


def _model_handler(version: str, fail_users: set[str]):
    async def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        if payload["user_id"] in fail_users:
            return httpx.Response(503, json={"error": "down"})
        items = [{"item_id": 300 + i, "score": 1 - i / 100, "rank": i + 1} for i in range(payload["k"])]
        return httpx.Response(
            200,
            json={
                "user_id": payload["user_id"],
                "items": items,
                "model_name": "ops/als",
                "model_version": version,
                "known_user": payload["user_id"].isdigit(),
                "took_ms": 0.3,
            },
        )

    return handler


def exposed_names(text: str) -> set[str]:
    """Sample names a scrape of this exposition can contain."""
    names = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        name, kind = kind_line
        if kind == "histogram":
            names |= {name + s for s in ("_bucket", "_sum", "_count", "_created")}
        elif kind == "counter":
            names |= {name, name.removesuffix("_total") + "_created"}
        else:
            names.add(name)
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, flags=re.M))
    return names


@pytest.fixture(scope="module")
def api_metrics_text(serving_files):
    """The API's /metrics after batch, model, fallback, cold-start, feedback and shadow traffic."""
    settings = ServingSettings(
        api_key=KEY,
        model_service_url="http://model.test",
        challenger_service_url="http://challenger.test",
        store_url=serving_files["store"],
        reference_path=serving_files["reference"],
        model_timeout_s=0.5,
        # the two failing users open the breaker (2 failures in 14 calls), so it has transitions
        breaker_min_calls=2,
        breaker_failure_rate=0.1,
        drift_window=100,
    )
    app = create_app(
        settings,
        model_transport=httpx.MockTransport(_model_handler("4", {"bad-1", "bad-2"})),
        challenger_transport=httpx.MockTransport(_model_handler("5", set())),
    )
    h = {"X-API-Key": KEY}
    with TestClient(app) as client:
        for u in range(60):  # batch users, then unknown users (model), then failures (fallback)
            assert client.get(f"/v1/recommendations/{u}?device=mobile&hour=20", headers=h).status_code == 200
        for u in ("new-1", "new-2", "bad-1", "bad-2"):
            assert client.get(f"/v1/recommendations/{u}", headers=h).status_code == 200
        assert client.get("/v1/recommendations/1?k=0", headers=h).status_code == 422
        for event in ("impression", "impression", "click"):
            body = {"user_id": "1", "item_id": 201, "event": event, "model_version": "3"}
            assert client.post("/v1/feedback", json=body, headers=h).status_code == 202
        deadline = time.monotonic() + 5
        while "l3_shadow_latency_seconds_count" not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "the shadow never answered"
            asyncio.run(asyncio.sleep(0.05))
        return client.get("/metrics").text


def test_rules_and_dashboard_read_only_metrics_the_api_exposes(api_metrics_text):
    exposed = exposed_names(api_metrics_text)
    wanted = {
        name: source for source, expr in alert_exprs() + dashboard_exprs() for name in METRIC_RE.findall(expr)
    }
    missing = {name: source for name, source in wanted.items() if name not in exposed}
    assert not missing, f"queried but not exposed by the API: {missing}"
    assert "l3_made_up_metric" not in exposed


def test_api_exposes_every_metric_with_samples(api_metrics_text):
    # After that traffic every family has at least one sample (a panel would show data), but
    # the 5xx counter: the API answers valid traffic without errors (its own tests cover 5xx).
    samples = set(re.findall(r"^([a-z0-9_]+)[{ ]", api_metrics_text, flags=re.M))
    expected = [n for n in mon.ALL_METRICS if n != mon.ERRORS]
    empty = [n for n in expected if not any(s == n or s.startswith(n + "_") for s in samples)]
    assert not empty, f"metrics without samples: {empty}"


# ---------------------------------------------------------------------- real Prometheus
@pytest.mark.integration
def test_real_prometheus_scrapes_the_running_api(serving_files, tmp_path):
    prometheus = tool("prometheus")
    api_port, prom_port = free_port(), free_port()
    env = {
        "L3__SERVING__API_KEY": KEY,
        "L3__SERVING__STORE_URL": serving_files["store"],
        "L3__SERVING__REFERENCE_PATH": serving_files["reference"],
        "L3__SERVING__MODEL_SERVICE_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens
    }
    api = start_api(api_port, env, log_path=tmp_path / "api.log")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "level3-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = None
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_http_ready(f"{base}/healthz", proc=api, timeout_s=60)
        prom = start_process(
            [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            cwd=tmp_path, log_path=tmp_path / "prometheus.log",
        )  # fmt: skip
        prom_url = f"http://127.0.0.1:{prom_port}"
        wait_http_ready(f"{prom_url}/-/ready", proc=prom, timeout_s=60)
        for u in ("1", "2", "unknown-user"):  # batch, batch, fallback (model service down)
            r = httpx.get(f"{base}/v1/recommendations/{u}", headers={"X-API-Key": KEY}, timeout=5)
            assert r.status_code == 200
        query = "sum by (source) (l3_recommendations_total)"
        deadline = time.monotonic() + 60
        series: dict[str, float] = {}
        while time.monotonic() < deadline:
            body = httpx.get(f"{prom_url}/api/v1/query", params={"query": query}, timeout=5).json()
            assert body["status"] == "success"
            series = {s["metric"]["source"]: float(s["value"][1]) for s in body["data"]["result"]}
            if series.get("batch") == 2 and series.get("fallback") == 1:
                break
            time.sleep(0.5)
        assert series == {"batch": 2.0, "fallback": 1.0}, (tmp_path / "prometheus.log").read_text()[-2000:]
        up = httpx.get(f"{prom_url}/api/v1/query", params={"query": 'up{job="level3-api"}'}, timeout=5).json()
        assert up["data"]["result"][0]["value"][1] == "1"
        # The alert rules load and evaluate against the live series.
        deadline = time.monotonic() + 30
        while True:
            groups = httpx.get(f"{prom_url}/api/v1/rules", timeout=5).json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if rules and all(r.get("health") == "ok" for r in rules):
                break
            assert time.monotonic() < deadline, rules
            time.sleep(0.5)
        assert {r["name"] for r in rules} >= REQUIRED_ALERTS
    finally:
        if prom is not None:
            stop_process_tree(prom)
        stop_process_tree(api)
