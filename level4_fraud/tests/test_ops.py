"""Operations of the scoring service: Prometheus rules, Alertmanager routing, the dashboard,
the images and the compose stack (``docker/level4/``).

* ``promtool check config`` / ``check rules`` / ``test rules``: every alert has a unit test in
  which it fires and one in which it does not, and a wrong threshold fails them.
* ``amtool check-config`` and ``amtool config routes test`` (routing by severity); a real
  Alertmanager on loopback inhibits a warning under a critical alert of the same component and
  delivers to the webhook sink.
* Grafana cannot be installed here: every panel expression is wrapped as a recording rule for
  ``promtool check rules``, and a real Prometheus scraping the service's metrics answers every
  panel with data.
* Every metric the rules and panels read is one `ServiceMetrics` exports, and every exported
  metric has a panel.
* Dockerfiles: hadolint, structure, one port everywhere, the Debian/official switch of the
  third-party images; the image's requirement list is enough to run ``serve``; compose is
  checked by the compose-spec schema and Debian's ``docker-compose config``; the PostgreSQL
  entrypoint of the Debian image initialises and serves a database (host's PostgreSQL 15).
* ``container`` tests build the scoring image with podman and score transactions through it
  (~6.5 min cold on the shared 2-core machine, seconds cached), and build and run the Debian-package
  Redis, PostgreSQL, Prometheus and Alertmanager images with the stack's files (~1 min cold).
  The compose stack comes up as a whole with ``podman-compose`` (``slow``): a transaction scored
  through it is in its PostgreSQL audit log and its Prometheus scrapes the service by name.

Binaries come from Debian packages (``make system-deps``: prometheus, prometheus-alertmanager,
docker-compose); a test whose binary is absent is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import yaml

from shared.compose_stack import ComposeStack, until
from shared.podman_images import build_base_image, build_image, find_tool, podman_env
from shared.podman_images import run_checked as sh
from shared.process import free_port, start_process, stop_process_tree, wait_http_ready

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
L4 = DOCKER / "level4"
PROM = L4 / "prometheus"
ALERTS = PROM / "alerts.yml"
ALERTS_TEST = PROM / "alerts_test.yml"
ALERTMANAGER = L4 / "alertmanager" / "alertmanager.yml"
SINK = L4 / "alertmanager" / "webhook_sink.py"
DASHBOARD = L4 / "grafana" / "dashboards" / "fraud.json"
COMPOSE = L4 / "compose.yaml"
FRAUD_DOCKERFILE = L4 / "fraud.Dockerfile"
SERVICE_DOCKERFILES = sorted((L4 / "services").glob("*.Dockerfile"))
IMAGE_IN = DOCKER / "requirements" / "level4.in"
APT_HINT = "make system-deps (apt-get install prometheus prometheus-alertmanager docker-compose)"
METRIC_RE = re.compile(r"\bfraud_[a-z0-9_]+")
REQUIRED_ALERTS = {
    "FraudLatencyP99High",  # p99 latency
    "FraudHighErrorRate",  # error rate
    "FraudAlertRateSpike",  # alert-rate anomaly
    "FraudAlertRateDrop",
    "FraudFeatureDrift",  # drift
    "FraudScoreDrift",
    "FraudStaleFeatures",  # stale features
    "FraudModelFallback",  # fallbacks
    "FraudOnlineStoreFallback",
}
STACK = {"fraud", "redis", "postgres", "prometheus", "alertmanager"}


def tool(name: str) -> str:
    """Path of a command-line tool (the venv's bin first), or skip the test when it is absent."""
    return find_tool(name, APT_HINT)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def alert_rules() -> list[dict]:
    spec = yaml.safe_load(ALERTS.read_text())
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def recorded_names() -> set[str]:
    spec = yaml.safe_load(ALERTS.read_text())
    return {r["record"] for g in spec["groups"] for r in g["rules"] if "record" in r}


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


# ---------------------------------------------------------------------- Prometheus rules
def test_prometheus_config_is_valid_and_scrapes_the_scoring_service():
    result = run([tool("promtool"), "check", "config", str(PROM / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # FraudScoringDown watches up{job="fraud"}: the job must be called so.
    assert 'up{job="fraud"}' in ALERTS.read_text()
    assert jobs["fraud"]["static_configs"][0]["targets"] == [f"fraud:{fraud_port()}"]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


def test_alert_rules_are_valid_and_cover_the_required_signals():
    result = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["labels"]["component"], rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert "for" in rule, f"{rule['alert']} would fire on a single evaluation"


def test_alert_rules_pass_their_unit_tests():
    result = run([tool("promtool"), "test", "rules", ALERTS_TEST.name], cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing():
    cases = [
        c for t in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for c in t.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it stays silent"


# Each mutation moves one threshold so far that its unit test must notice.
MUTATIONS = {
    "FraudLatencyP99High": ("\n          ) > 0.02\n", "\n          ) > 0.2\n"),
    "FraudFeatureDrift": (
        '(fraud_drift_psi{feature!="score"}) > 0.2',
        '(fraud_drift_psi{feature!="score"}) > 0.5',
    ),
    "FraudStaleFeatures": (
        "max(fraud_feature_freshness_seconds) > 3600",
        "max(fraud_feature_freshness_seconds) > 36000",
    ),
    "FraudModelFallback": (
        '{kind="model"}[5m]))\n            / sum(rate(fraud_decisions_total[5m])) > 0.01',
        '{kind="model"}[5m]))\n            / sum(rate(fraud_decisions_total[5m])) > 0.1',
    ),
    "FraudAlertRateSpike": ("> 2 * avg_over_time", "> 4 * avg_over_time"),
}


@pytest.mark.parametrize("alert", sorted(MUTATIONS))
def test_alert_unit_tests_catch_a_wrong_threshold(alert, tmp_path):
    old, new = MUTATIONS[alert]
    text = ALERTS.read_text()
    assert text.count(old) == 1, f"the mutation of {alert} no longer matches alerts.yml"
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    shutil.copy(ALERTS_TEST, tmp_path)
    result = run([tool("promtool"), "test", "rules", ALERTS_TEST.name], cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}," in result.stdout + result.stderr


# ---------------------------------------------------------------------- the exported metrics
def exported_names() -> set[str]:
    """Sample names a scrape of the service's metrics can contain (every family, with suffixes)."""
    from level4_fraud.serving.metrics import ServiceMetrics

    names = set()
    for family in ServiceMetrics().registry.collect():
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        elif family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        else:
            names.add(family.name)
    return names


def metric_families() -> set[str]:
    from level4_fraud.serving.metrics import ServiceMetrics

    return {f.name + ("_total" if f.type == "counter" else "") for f in ServiceMetrics().registry.collect()}


def test_rules_and_dashboard_read_only_metrics_the_service_exports():
    exported = exported_names()
    wanted = {}
    for source, expr in [(r["alert"], r["expr"]) for r in alert_rules()] + dashboard_exprs():
        for name in METRIC_RE.findall(expr):
            wanted[name] = source
    missing = {name: source for name, source in wanted.items() if name not in exported}
    assert not missing, f"queried but not exported by ServiceMetrics: {missing}"
    # recording rules the dashboard reads are defined in alerts.yml
    used_records = {n for _, e in dashboard_exprs() for n in re.findall(r"\b[a-z_]+:[a-z0-9_:]+", e)}
    assert used_records <= recorded_names()
    assert "fraud_made_up_total" not in exported


def test_dashboard_has_a_panel_for_every_exported_metric():
    used = set(METRIC_RE.findall(" ".join(expr for _, expr in dashboard_exprs())))
    missing = [
        name for name in metric_families() if not any(u == name or u.startswith(name + "_") for u in used)
    ]
    assert not missing, f"metrics with no dashboard panel: {missing}"


# ---------------------------------------------------------------------- Alertmanager
def test_alertmanager_config_is_valid_and_a_broken_one_is_not(tmp_path):
    amtool = tool("amtool")
    result = run([amtool, "check-config", str(ALERTMANAGER)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "3 receivers" in result.stdout and "1 inhibit rules" in result.stdout
    # A route to a receiver that does not exist must be refused.
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(ALERTMANAGER.read_text().replace("receiver: fraud-oncall", "receiver: nobody"))
    result = run([amtool, "check-config", str(broken)])
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr


def route(labels: dict[str, str]) -> list[str]:
    """Receivers `amtool config routes test` sends an alert with these labels to, in order."""
    args = [f"{k}={v}" for k, v in labels.items()]
    result = run([tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *args])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"severity": "critical", "component": "api"}, ["fraud-oncall"]),
        ({"severity": "warning", "component": "api"}, ["fraud-team"]),
        ({"severity": "warning", "component": "drift"}, ["fraud-retrain", "fraud-team"]),
        ({"severity": "critical", "component": "features"}, ["fraud-oncall"]),
        ({"severity": "info"}, ["fraud-team"]),  # anything else: the default receiver
    ],
)
def test_alerts_route_by_severity(labels, receivers):
    assert route(labels) == receivers


def test_every_alert_of_the_rules_reaches_a_webhook():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    hooks = {r["name"]: r.get("webhook_configs", []) for r in config["receivers"]}
    for rule in alert_rules():
        receivers = route({"alertname": rule["alert"], **rule["labels"]})
        assert all(hooks[r] for r in receivers), rule["alert"]
        expected = "fraud-oncall" if rule["labels"]["severity"] == "critical" else "fraud-team"
        assert receivers[-1] == expected, rule["alert"]


def _fast_alertmanager_config(sink_url: str) -> dict:
    """alertmanager.yml with the webhooks on the local sink and notifications after a second."""
    config = yaml.safe_load(ALERTMANAGER.read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = hook["url"].replace("http://alert-sink:5001", sink_url)
    for r in [config["route"], *config["route"]["routes"]]:
        r["group_wait"] = r["group_interval"] = "1s"
    return config


def _post_alerts(base: str, alerts: list[dict[str, str]]) -> None:
    body = [{"labels": labels, "annotations": {"summary": labels["alertname"]}} for labels in alerts]
    assert httpx.post(f"{base}/api/v2/alerts", json=body, timeout=5).status_code == 200


@pytest.mark.integration
def test_real_alertmanager_inhibits_warnings_and_notifies_the_webhooks(tmp_path):
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip(f"alertmanager is not installed ({APT_HINT})")
    sink_port, am_port = free_port(), free_port()
    (tmp_path / "am.yml").write_text(
        yaml.safe_dump(_fast_alertmanager_config(f"http://127.0.0.1:{sink_port}"))
    )
    procs = []
    try:
        procs.append(
            start_process(
                [sys.executable, str(SINK), "--host", "127.0.0.1", "--port", str(sink_port)],
                cwd=tmp_path,
                log_path=tmp_path / "sink.log",
            )
        )
        sink = f"http://127.0.0.1:{sink_port}"
        wait_http_ready(f"{sink}/healthz", proc=procs[-1], timeout_s=30)
        procs.append(
            start_process(
                [
                    binary,
                    f"--config.file={tmp_path / 'am.yml'}",
                    f"--storage.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                cwd=tmp_path,
                log_path=tmp_path / "am.log",
            )
        )
        base = f"http://127.0.0.1:{am_port}"
        wait_http_ready(f"{base}/-/ready", proc=procs[-1], timeout_s=30)
        critical = {
            "alertname": "FraudLatencyP99Critical",
            "severity": "critical",
            "component": "api",
            "engine": "uvicorn",
        }
        _post_alerts(base, [critical])
        time.sleep(1)  # the critical alert is known before the warnings arrive
        warn_uvicorn = {**critical, "alertname": "FraudLatencyP99High", "severity": "warning"}
        warn_stream = {**warn_uvicorn, "engine": "stream"}
        drift = {
            "alertname": "FraudFeatureDrift",
            "severity": "warning",
            "component": "drift",
            "feature": "TX_AMOUNT",
        }
        _post_alerts(base, [warn_uvicorn, warn_stream, drift])
        states = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for alert in httpx.get(f"{base}/api/v2/alerts", timeout=5).json():
                labels = alert["labels"]
                states[(labels["alertname"], labels.get("engine", ""))] = alert["status"]
            if len(states) == 4 and states[("FraudLatencyP99High", "uvicorn")]["state"] == "suppressed":
                break
            time.sleep(0.5)
        # same component and engine as the critical one: inhibited; another engine: not
        assert states[("FraudLatencyP99High", "uvicorn")]["inhibitedBy"], states
        assert states[("FraudLatencyP99High", "stream")]["state"] == "active", states
        assert states[("FraudFeatureDrift", "")]["state"] == "active", states
        received = _wait_for_notifications(sink, {"/oncall", "/team", "/retrain"})
        by_path = {
            path: {
                a["labels"].get("engine") or a["alertname"]
                for n in received
                if n["path"] == path
                for a in n["alerts"]
            }
            for path in ("/oncall", "/team", "/retrain")
        }
        assert by_path["/oncall"] == {"uvicorn"}  # the critical alert pages
        assert by_path["/team"] == {"stream", "FraudFeatureDrift"}  # the inhibited warning is not sent
        assert by_path["/retrain"] == {"FraudFeatureDrift"}
    finally:
        for proc in reversed(procs):
            stop_process_tree(proc)


def _wait_for_notifications(sink: str, paths: set[str], timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        received = httpx.get(f"{sink}/received", timeout=5).json()
        team = {
            a["labels"].get("engine") or a["alertname"]
            for n in received
            if n["path"] == "/team"
            for a in n["alerts"]
        }
        if {n["path"] for n in received} >= paths and len(team) >= 2:
            time.sleep(1.5)  # one more group interval: an inhibited alert would have arrived by now
            return httpx.get(f"{sink}/received", timeout=5).json()
        assert time.monotonic() < deadline, received
        time.sleep(0.3)


def test_webhook_sink_rejects_what_is_not_an_alertmanager_payload(tmp_path):
    port = free_port()
    proc = start_process(
        [sys.executable, str(SINK), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        log_path=tmp_path / "sink.log",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http_ready(f"{base}/healthz", proc=proc, timeout_s=30)
        assert httpx.post(f"{base}/team", content=b"not json", timeout=5).status_code == 400
        assert httpx.post(f"{base}/team", json=[1, 2], timeout=5).status_code == 400
        payload = {
            "receiver": "fraud-team",
            "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": "X"}}],
        }
        assert httpx.post(f"{base}/team", json=payload, timeout=5).json() == {"received": 1}
        received = httpx.get(f"{base}/received", timeout=5).json()
        assert [(n["path"], n["receiver"], [a["alertname"] for a in n["alerts"]]) for n in received] == [
            ("/team", "fraud-team", ["X"])
        ]
        assert httpx.get(f"{base}/nothing", timeout=5).status_code == 404
    finally:
        stop_process_tree(proc)


# ---------------------------------------------------------------------- Grafana dashboard
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
    bad.write_text(_as_recording_rules([("bad", "rate(fraud_requests_total[$__rate_interval])")]))
    assert run([tool("promtool"), "check", "rules", str(bad)]).returncode != 0


def test_dashboard_is_well_formed_and_uses_the_provisioned_datasource():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & cell, f"{panel['title']} overlaps another panel"
        cells |= cell
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])} == {uid}
    # compose mounts the dashboards where the shared provider looks, and makes it the home page
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/recsys.yml").read_text())
    grafana = compose_services()["grafana"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in grafana["volumes"]
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith("/" + DASHBOARD.name)


def service_exposition() -> bytes:
    """What the service's /metrics shows after mixed traffic (decisions, flags, 4xx/5xx answers)."""
    from level4_fraud.serving.metrics import ServiceMetrics
    from level4_fraud.serving.schemas import DecisionOut

    metrics = ServiceMetrics()
    metrics.set_model("7")
    flags = [
        [],
        [],
        ["unknown_card"],
        ["online_store_unavailable"],
        ["model_fallback_rules"],
        ["unknown_terminal"],
    ]
    for i in range(60):
        decision = ["approve", "approve", "review", "decline"][i % 4]
        out = DecisionOut(
            transaction_id=i,
            decision=decision,
            score=(i % 10) / 10,
            model_version="7",
            latency_ms=3.0,
            reasons=[],
            flags=flags[i % len(flags)],
        )
        metrics.observe_decision(out, freshness_s=120.0)
        metrics.observe_request(
            ["uvicorn", "stream"][i % 2], [200, 200, 200, 422, 503][i % 5], 0.002 * (1 + i % 7)
        )
    # The drift monitor's gauges (set by the monitoring job; here by hand).
    for feature, value in (("TX_AMOUNT", 0.05), ("hour", 0.01), ("score", 0.02)):
        metrics.drift_psi.labels(feature).set(value)
    metrics.drift_ks.labels("TX_AMOUNT").set(0.03)
    return metrics.exposition()


METRICS_SERVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    body = open(sys.argv[1], "rb").read()
    counter = [0]

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            # Counters grow between scrapes so rate() has something to show.
            counter[0] += 1
            text = body.decode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(grow(text, counter[0]).encode())

        def log_message(self, *a):
            pass

    def grow(text, k):
        out = []
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                out.append(line)
                continue
            name, value = line.rsplit(" ", 1)
            if "_total" in name or "_bucket" in name or "_count" in name or "_sum" in name:
                value = repr(float(value) * k)
            out.append(name + " " + value)
        return "\\n".join(out) + "\\n"

    HTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
    """
)
# Panels that cannot show data minutes after a start: the daily baseline (an hour back) and the
# firing alerts (none fire on healthy traffic).
NEEDS_HISTORY = ("offset 1h", "ALERTS{")


@pytest.mark.integration
def test_real_prometheus_answers_every_dashboard_panel(tmp_path):
    prometheus = tool("prometheus")
    (tmp_path / "metrics.txt").write_bytes(service_exposition())
    (tmp_path / "server.py").write_text(METRICS_SERVER)
    target_port, prom_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "fraud", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    procs = []
    try:
        procs.append(
            start_process(
                [
                    sys.executable,
                    str(tmp_path / "server.py"),
                    str(tmp_path / "metrics.txt"),
                    str(target_port),
                ],
                cwd=tmp_path,
                log_path=tmp_path / "server.log",
            )
        )
        wait_http_ready(f"http://127.0.0.1:{target_port}/metrics", proc=procs[-1], timeout_s=30)
        procs.append(
            start_process(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                cwd=tmp_path,
                log_path=tmp_path / "prometheus.log",
            )
        )
        base = f"http://127.0.0.1:{prom_port}"
        wait_http_ready(f"{base}/-/ready", proc=procs[-1], timeout_s=60)
        exprs = [(title, e) for title, e in dashboard_exprs() if not any(s in e for s in NEEDS_HISTORY)]
        empty = _panels_without_data(base, exprs, timeout_s=60)
        assert not empty, f"panels without data: {empty}"
        # the alert rules load and evaluate against the scraped series
        groups = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in groups for r in g["rules"]} >= REQUIRED_ALERTS
        assert all(r.get("health") in ("ok", "unknown") for g in groups for r in g["rules"])
    finally:
        for proc in reversed(procs):
            stop_process_tree(proc)


def _panels_without_data(base: str, exprs: list[tuple[str, str]], timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        empty = []
        for title, expr in exprs:
            body = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5).json()
            assert body["status"] == "success", (expr, body)
            if not body["data"]["result"]:
                empty.append(f"{title}: {expr}")
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(1)


# ---------------------------------------------------------------------- Dockerfiles
def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage (named by ``AS name``, or by position), the preamble under ``""``."""
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for word, rest in _instructions(path):
        if word == "FROM":
            parts = rest.split()
            current = parts[2].lower() if len(parts) == 3 and parts[1].upper() == "AS" else f"#{len(stages)}"
            stages[current] = [(word, rest)]
        else:
            stages[current].append((word, rest))
    return stages


def fraud_port() -> str:
    return next(rest for word, rest in _instructions(FRAUD_DOCKERFILE) if word == "EXPOSE")


@pytest.mark.parametrize("dockerfile", [FRAUD_DOCKERFILE, *SERVICE_DOCKERFILES], ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    result = run([tool("hadolint"), "--no-color", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_fraud_dockerfile_is_multistage_nonroot_and_serves_on_one_port():
    ins = _instructions(FRAUD_DOCKERFILE)
    words = [w for w, _ in ins]
    froms = [rest for w, rest in ins if w == "FROM"]
    assert len(froms) == 2 and all(f.startswith("${BASE_IMAGE}") for f in froms)
    assert any(w == "ARG" and r.startswith("BASE_IMAGE") for w, r in ins[: words.index("FROM")])
    runtime = ins[len(ins) - 1 - words[::-1].index("FROM") :]
    users = [r for w, r in runtime if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(w == "COPY" and "--from=build" in r for w, r in runtime)
    cmd = json.loads(next(r for w, r in runtime if w == "CMD"))
    assert cmd[1:4] == ["-m", "level4_fraud", "serve"] and cmd[cmd.index("--engine") + 1] == "uvicorn"
    # one port: the CLI option, the service's config, EXPOSE, the healthcheck, compose, Prometheus
    port = fraud_port()
    env = " ".join(r for w, r in runtime if w == "ENV")
    assert cmd[cmd.index("--port") + 1] == port and f"L4__SERVING__PORT={port}" in env
    assert "L4__SERVING__HOST=0.0.0.0" in env  # the service binds the loopback by default
    healthcheck = next(r for w, r in runtime if w == "HEALTHCHECK")
    assert f"//127.0.0.1:{port}/healthz" in healthcheck
    fraud = compose_services()["fraud"]
    assert [str(p).rsplit(":", 1)[-1] for p in fraud["ports"]] == [port]
    # no key on the command line (it would show in `ps`): the environment gives it
    assert "--api-key" not in cmd and "L4__SERVING__API_KEY" in fraud["environment"]


@pytest.mark.parametrize("dockerfile", SERVICE_DOCKERFILES, ids=lambda p: p.name)
def test_third_party_dockerfile_switches_between_debian_packages_and_the_official_image(dockerfile):
    stages = _stages(dockerfile)
    preamble = dict(r.split("=", 1) for w, r in stages[""] if w == "ARG")
    assert preamble["SERVICES_FROM"] == "debian"  # no registry needed by default
    assert preamble["BASE_IMAGE"] == "localhost/ml-levels-base:bookworm"
    official = preamble["OFFICIAL_IMAGE"]
    assert re.fullmatch(r"docker\.io/[\w/-]+:v?\d[\w.-]*", official), f"official image not pinned: {official}"
    assert stages["debian"][0] == ("FROM", "${BASE_IMAGE} AS debian")
    assert stages["official"] == [("FROM", "${OFFICIAL_IMAGE} AS official")]
    last = list(stages)[-1]
    assert stages[last] == [("FROM", "${SERVICES_FROM}")]
    debian = stages["debian"]
    install = " ".join(r for w, r in debian if w == "RUN")
    assert (
        "apt-get install -y --no-install-recommends" in install and "rm -rf /var/lib/apt/lists/*" in install
    )
    users = [r for w, r in debian if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(w == "EXPOSE" for w, _ in debian)


def _names(path: Path) -> list[str]:
    return [
        re.split(r"[<>=\[; ]", line.strip())[0].lower().replace("_", "-")
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_image_requirements_are_pinned_by_the_lock():
    lock = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (REPO / "requirements" / "all.lock").read_text().splitlines()
        if "==" in line
    }
    names = _names(IMAGE_IN)
    assert names
    missing = sorted(set(names) - lock)
    assert not missing, f"level4.in lists packages the lock does not pin: {missing}"


# A child interpreter in which every third-party package outside the closure of the image's
# requirement list (plus torch, installed first) cannot be imported: what the image holds.
IMPORT_GUARD = textwrap.dedent(
    """
    import importlib.abc, importlib.metadata as md, json, sys
    from packaging.requirements import Requirement

    roots = json.loads(sys.argv[1])
    closure, stack = set(), list(roots)
    while stack:
        name = stack.pop().lower().replace("_", "-")
        if name in closure:
            continue
        closure.add(name)
        for r in md.distribution(name).requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    owners = md.packages_distributions()
    allowed = {top for top, dists in owners.items()
               if any(d.lower().replace("_", "-") in closure for d in dists)}
    third_party = set(owners) - allowed - {"shared", "level4_fraud"}

    class Guard(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in third_party:
                raise ModuleNotFoundError(f"No module named {fullname!r} (not in the image)")
            return None

    sys.meta_path.insert(0, Guard())
    for module in json.loads(sys.argv[2]):
        __import__(module)
    exec(sys.argv[3])
    """
)
# What `serve` imports, at the top or when it loads a run: the app, the scorer and its ONNX and
# int8 students, the ensemble (LightGBM, scikit-learn), Feast, the audit log on PostgreSQL and
# the MLflow registry's champion.
SERVE_MODULES = [
    "level4_fraud.serve",
    "level4_fraud.serving.app",
    "level4_fraud.serving.scorer",
    "level4_fraud.quantize",
    "level4_fraud.predict",
    "level4_fraud.feature_store",
    "level4_fraud.feature_repo.feature_views",
    "feast",
    "onnxruntime",
    "lightgbm",
    "psycopg2",
    "uvicorn",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
]
SERVE_HELP = textwrap.dedent(
    """
    import runpy, sys
    sys.argv = ["level4_fraud", "serve", "--help"]
    try:
        runpy.run_module("level4_fraud", run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    """
)


def _guarded(roots: list[str], modules: list[str], code: str = "pass") -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", IMPORT_GUARD, json.dumps(roots), json.dumps(modules), code], cwd=REPO)


@pytest.mark.slow
def test_serve_runs_with_only_the_image_requirements():
    result = _guarded([*_names(IMAGE_IN), "torch"], SERVE_MODULES, SERVE_HELP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--port" in result.stdout and "--engine" in result.stdout


def test_import_guard_catches_a_missing_requirement():
    # Without typer in the list (nothing else in it pulls typer in), the CLI cannot be imported.
    roots = [n for n in _names(IMAGE_IN) if n != "typer"]
    result = _guarded(roots, ["level4_fraud.cli"])
    assert result.returncode != 0
    assert "No module named 'typer' (not in the image)" in result.stderr


# ---------------------------------------------------------------------- compose
def test_compose_matches_the_compose_spec():
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("L4_", "L4__", "SERVICES_FROM", "BASE_IMAGE"))
    }
    return run([tool("docker-compose"), "-f", str(COMPOSE), "config"], env={**clean, **env})


def test_docker_compose_config_resolves_the_stack(tmp_path):
    result = _compose_config({"L4_ARTIFACTS": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) >= STACK
    for name in STACK - {"fraud"}:
        assert services[name]["build"]["args"]["SERVICES_FROM"] == "debian", name
        assert services[name]["build"]["args"]["BASE_IMAGE"] == "localhost/ml-levels-base:bookworm"
    # the artifacts are mounted at the path the service is told (the registry's absolute paths)
    fraud = services["fraud"]
    assert fraud["environment"]["L4__ARTIFACTS_DIR"] == str(tmp_path)
    assert any(
        str(v).startswith(f"{tmp_path}:{tmp_path}")
        or (isinstance(v, dict) and v.get("target") == str(tmp_path))
        for v in fraud["volumes"]
    )
    # One build argument switches every third-party image to its official one.
    result = _compose_config({"L4_ARTIFACTS": str(tmp_path), "SERVICES_FROM": "official"})
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {services[n]["build"]["args"]["SERVICES_FROM"] for n in STACK - {"fraud"}} == {"official"}


def test_docker_compose_refuses_to_start_without_the_artifacts():
    result = _compose_config({})
    assert result.returncode != 0
    assert "L4_ARTIFACTS" in result.stdout + result.stderr


def test_compose_runs_the_stack_on_loopback_and_wires_it_together():
    services = compose_services()
    assert set(services) >= STACK | {"alert-sink"}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (L4 / source).exists(), f"{name} mounts missing {source}"
        if "build" in svc:
            build = svc["build"]
            assert (L4 / build["context"] / build["dockerfile"]).is_file(), name
            assert "BASE_IMAGE" in build["args"], name
        if name in STACK - {"fraud"}:
            assert "healthcheck" in svc, name
    assert services["grafana"]["profiles"] == ["grafana"]  # official image only: not in the default stack
    # The audit log goes to the compose PostgreSQL with its user and database.
    pg = services["postgres"]["environment"]
    audit = services["fraud"]["environment"]["L4__SERVING__AUDIT_URL"]
    assert re.fullmatch(
        rf"postgresql://{pg['POSTGRES_USER']}:\$\{{POSTGRES_PASSWORD:-\w+}}@postgres:5432/{pg['POSTGRES_DB']}",
        audit,
    )
    assert services["fraud"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Alertmanager's webhooks reach the sink on the port it listens on.
    sink = services["alert-sink"]
    sink_port = sink["command"][sink["command"].index("--port") + 1]
    urls = {
        h["url"] for r in yaml.safe_load(ALERTMANAGER.read_text())["receivers"] for h in r["webhook_configs"]
    }
    assert {re.match(r"http://([^/]+)/", u).group(1) for u in urls} == {f"alert-sink:{sink_port}"}
    # Prometheus and Alertmanager get their files mounted where their commands read them.
    prom = " ".join(services["prometheus"]["volumes"])
    assert (
        "prometheus.yml:/etc/prometheus/prometheus.yml" in prom
        and "alerts.yml:/etc/prometheus/alerts.yml" in prom
    )
    am = services["alertmanager"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    assert any(v.endswith(":/etc/alertmanager/alertmanager.yml:ro") for v in am["volumes"])


# ---------------------------------------------------------------------- build script
@pytest.mark.parametrize(
    ("service", "dockerfile", "context"),
    [
        ("fraud", "docker/level4/fraud.Dockerfile", "."),
        ("redis", "docker/level4/services/redis.Dockerfile", "docker/level4/services"),
        ("postgres", "docker/level4/services/postgres.Dockerfile", "docker/level4/services"),
        ("prometheus", "docker/level4/services/prometheus.Dockerfile", "docker/level4/services"),
        ("alertmanager", "docker/level4/services/alertmanager.Dockerfile", "docker/level4/services"),
        ("api", "docker/api.Dockerfile", "."),  # level 3 unchanged
    ],
)
def test_build_image_builds_each_service_from_its_dockerfile(service, dockerfile, context):
    env = {**os.environ, "DRY_RUN": "1", "SERVICES_FROM": "official"}
    result = run(["bash", str(DOCKER / "build_image.sh"), service], env=env)
    assert result.returncode == 0, result.stderr
    cmd = shlex.split(result.stdout)
    assert cmd[:4] == ["podman", "build", "--format", "docker"]  # docker format keeps HEALTHCHECK
    assert Path(cmd[cmd.index("-f") + 1]) == REPO / dockerfile
    assert Path(cmd[-1]) == (REPO / context).resolve()
    if context == ".":  # the repository root as context: only what the ignore file lets through
        assert Path(cmd[cmd.index("--ignorefile") + 1]) == REPO / (dockerfile + ".dockerignore")
    else:
        assert "SERVICES_FROM=official" in cmd


def test_build_image_rejects_an_unknown_service():
    result = run(["bash", str(DOCKER / "build_image.sh"), "grafana"])
    assert result.returncode == 2
    assert "unknown service 'grafana'" in result.stderr


def test_fraud_build_context_sends_the_code_and_not_the_artifacts():
    path = FRAUD_DOCKERFILE.parent / (FRAUD_DOCKERFILE.name + ".dockerignore")
    patterns = [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # everything out, then back in only what the image copies
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    copied = [r.split()[0] for w, r in _instructions(FRAUD_DOCKERFILE) if w == "COPY" and "--from" not in r]
    for source in copied:
        assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is not sent"
    assert {"**/artifacts/", "**/data/", "**/tests/"} <= set(patterns)


# ---------------------------------------------------------------------- PostgreSQL entrypoint
@pytest.mark.integration
@pytest.mark.slow
def test_postgres_entrypoint_initialises_a_password_protected_database(request):
    """The Debian image's entrypoint, run on this machine's PostgreSQL 15 (the image's version)."""
    bin_dir = Path("/usr/lib/postgresql/15/bin")
    runuser = shutil.which("runuser")
    if not (bin_dir / "initdb").is_file() or runuser is None or os.geteuid() != 0:
        pytest.skip("needs root and Debian's postgresql-15 (initdb refuses to run as root: runuser postgres)")
    import psycopg2

    # Under /tmp itself: pytest's own temporary folders are private to root.
    work = Path(tempfile.mkdtemp(prefix="l4-pg-"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    script = work / "entrypoint.sh"
    shutil.copy(L4 / "services" / "postgres-entrypoint.sh", script)
    shutil.chown(work, "postgres", "postgres")
    port = free_port()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PGDATA": str(work / "data"),
        "PGPORT": str(port),
        "POSTGRES_USER": "fraud",
        "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_DB": "fraud",
    }
    # "-c ..." after "postgres" reaches the server, as a compose `command:` would.
    cmd = [
        runuser,
        "-u",
        "postgres",
        "--",
        "env",
        *[f"{k}={v}" for k, v in env.items()],
        "sh",
        str(script),
        "postgres",
        "-c",
        f"unix_socket_directories={work}",
    ]
    for attempt in range(2):  # the first start initialises, the second reuses the data
        proc = start_process(cmd, cwd=work, log_path=work / f"pg{attempt}.log")
        try:
            _wait_for_postgres(port, proc, work / f"pg{attempt}.log")
            conn = psycopg2.connect(
                host="127.0.0.1", port=port, user="fraud", password="s3cret", dbname="fraud"
            )
            with conn, conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1); SELECT count(*) FROM t"
                )
                assert cur.fetchone()[0] == attempt + 1  # the row of the first start survived
            conn.close()
            with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
                psycopg2.connect(host="127.0.0.1", port=port, user="fraud", password="wrong", dbname="fraud")
        finally:
            stop_process_tree(proc)
    assert "initialised" in (work / "pg0.log").read_text()
    assert "initialised" not in (work / "pg1.log").read_text()


def _wait_for_postgres(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while run(["pg_isready", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.3)


def test_postgres_entrypoint_refuses_an_empty_password(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PGDATA": str(tmp_path / "data"), "POSTGRES_PASSWORD": ""}
    result = run(["sh", str(L4 / "services" / "postgres-entrypoint.sh"), "postgres"], env=env)
    assert result.returncode == 2
    assert "POSTGRES_PASSWORD is empty" in result.stderr
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------- containers
FRAUD_TAG = "localhost/level4-fraud:test"
KEY = "container-key"


@pytest.fixture(scope="module")
def base_image() -> str:
    """podman, after building the debootstrapped base image (cached by tag)."""
    return build_base_image(APT_HINT)


@pytest.fixture(scope="module")
def fraud_image(base_image) -> str:
    """podman, after building the base image (cached) and the scoring image."""
    build_image("fraud", FRAUD_TAG, timeout=2400)
    return base_image


def _has_champion(artifacts: Path) -> bool:
    from level4_fraud.config import FraudConfig
    from level4_fraud.serve import champion
    from shared.config import load_config
    from shared.errors import UserError

    try:
        return champion(load_config(FraudConfig, overrides={"artifacts_dir": str(artifacts)})) is not None
    except UserError:
        return False


@pytest.fixture(scope="module")
def served_artifacts(tmp_path_factory) -> Path:
    """A copy of an artifacts folder with a registered champion: the level's own (``make level4``),
    else one trained here (quick profile, about 3 minutes). Writable by the image's uid 10001."""
    dest = tmp_path_factory.mktemp("level4") / "artifacts"
    source = REPO / "level4_fraud" / "artifacts"
    if _has_champion(source):
        shutil.copytree(source, dest)
        # A fresh audit log: an earlier serve of that run may hold this test's transaction ids.
        for stale in dest.glob("*/serving/audit.*"):
            stale.unlink()
    else:
        env = {**os.environ, "L4__ARTIFACTS_DIR": str(dest)}
        cmd = [sys.executable, "-m", "level4_fraud", "run", "--profile", "quick"]
        subprocess.run(cmd, env=env, cwd=REPO, check=True, timeout=1800, capture_output=True)
    for folder, _, files in os.walk(dest):
        os.chmod(folder, 0o777)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o666)
    return dest


def _wait_ready(url: str, podman: str, cid: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        logs = subprocess.run([podman, "logs", cid], capture_output=True, text=True, env=podman_env())
        assert time.monotonic() < deadline, (logs.stdout + logs.stderr)[-3000:]
        time.sleep(1)


@pytest.mark.container
@pytest.mark.integration
@pytest.mark.slow
def test_fraud_image_scores_transactions_as_a_non_root_container(fraud_image, served_artifacts, free_port):
    podman, art = fraud_image, served_artifacts
    # The image's own command: the registry's champion under L4__ARTIFACTS_DIR, mounted at the
    # same path; the audit log in the run folder (SQLite).
    cmd = [podman, "run", "-d", "--rm", "-p", f"127.0.0.1:{free_port}:8400", "-v", f"{art}:{art}"]
    cmd += ["-e", f"L4__ARTIFACTS_DIR={art}", "-e", f"L4__SERVING__API_KEY={KEY}", FRAUD_TAG]
    cid = sh(cmd).stdout.strip().splitlines()[-1]
    base = f"http://127.0.0.1:{free_port}"
    try:
        _wait_ready(f"{base}/readyz", podman, cid, 300)
        h = {"X-API-Key": KEY}
        tx = {
            "TRANSACTION_ID": 9_000_001,
            "TX_DATETIME": "2018-06-01T10:15:00",
            "CUSTOMER_ID": 3,
            "TERMINAL_ID": 5,
            "TX_AMOUNT": 57.3,
        }
        first = httpx.post(f"{base}/v1/score", json=tx, headers=h, timeout=30)
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["decision"] in {"approve", "review", "decline"} and 0 <= body["score"] <= 1
        assert body["model_version"] and not body["replayed"]
        again = httpx.post(f"{base}/v1/score", json=tx, headers=h, timeout=30).json()
        assert again["replayed"] and (again["decision"], again["score"]) == (body["decision"], body["score"])
        stranger = {**tx, "TRANSACTION_ID": 9_000_002, "CUSTOMER_ID": 10**9}
        unknown = httpx.post(f"{base}/v1/score", json=stranger, headers=h, timeout=30).json()
        assert "unknown_card" in unknown["flags"]
        assert httpx.post(f"{base}/v1/score", json=tx, timeout=10).status_code == 401
        bad = {**tx, "TX_AMOUNT": -1}
        assert httpx.post(f"{base}/v1/score", json=bad, headers=h, timeout=10).status_code == 422
        # /metrics from inside the container: two new decisions (the retry is not one), two 4xx.
        script = (
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8400/metrics').read().decode())"
        )
        metrics = sh([podman, "exec", cid, "python3", "-c", script]).stdout
        decided = sum(float(v) for v in re.findall(r"^fraud_decisions_total\{[^}]*\} (\S+)$", metrics, re.M))
        assert decided == 2.0
        assert 'fraud_requests_total{engine="uvicorn",status="4xx"} 2.0' in metrics
        sh([podman, "healthcheck", "run", cid])
        assert json.loads(sh([podman, "inspect", cid]).stdout)[0]["Config"]["User"] == "10001"
    finally:
        subprocess.run(
            [podman, "rm", "-f", "-t", "5", cid], capture_output=True, env=podman_env(), timeout=60
        )


def _eventually(cmd: list[str], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        result = subprocess.run(cmd, capture_output=True, text=True, env=podman_env(), timeout=60)
        if result.returncode == 0:
            return result.stdout
        assert time.monotonic() < deadline, result.stdout + result.stderr
        time.sleep(1)


@pytest.mark.container
@pytest.mark.integration
def test_debian_service_images_run_the_stack_config_as_non_root(base_image):
    """Redis, PostgreSQL, Prometheus and Alertmanager built from Debian packages (no registry) run
    with the stack's files and commands: the official stages are never pulled."""
    podman = base_image
    for service in ("redis", "postgres", "prometheus", "alertmanager"):
        build_image(service, f"localhost/level4-{service}:test", timeout=1200)
    services = compose_services()
    mounts = {  # the compose volumes of this repository's files, as podman -v options
        name: [
            f"--volume={L4 / v.split(':')[0]}:{v.split(':', 1)[1]}"
            for v in services[name]["volumes"]
            if v[0] == "."
        ]
        for name in ("prometheus", "alertmanager")
    }
    env = [f"--env={k}={v}" for k, v in services["postgres"]["environment"].items() if "$" not in str(v)]
    started = [
        sh([podman, "run", "-d", "--rm", "localhost/level4-redis:test", *services["redis"]["command"]]),
        sh(
            [
                podman,
                "run",
                "-d",
                "--rm",
                *env,
                "--env=POSTGRES_PASSWORD=pw",
                "localhost/level4-postgres:test",
            ]
        ),
        sh(
            [
                podman,
                "run",
                "-d",
                "--rm",
                *mounts["prometheus"],
                "localhost/level4-prometheus:test",
                *services["prometheus"]["command"],
            ]
        ),
        sh(
            [
                podman,
                "run",
                "-d",
                "--rm",
                *mounts["alertmanager"],
                "localhost/level4-alertmanager:test",
                *services["alertmanager"]["command"],
            ]
        ),
    ]
    redis, pg, prom, am = (r.stdout.strip().splitlines()[-1] for r in started)
    try:
        assert _eventually([podman, "exec", redis, "redis-cli", "ping"]).strip() == "PONG"
        _eventually([podman, "exec", pg, "pg_isready", "-h", "127.0.0.1", "-U", "fraud", "-d", "fraud"])
        query = [
            podman,
            "exec",
            "-e",
            "PGPASSWORD=pw",
            pg,
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "fraud",
            "-d",
            "fraud",
        ]
        assert _eventually([*query, "-tAc", "select current_database()"]).strip() == "fraud"
        wrong = subprocess.run(
            [podman, "exec", "-e", "PGPASSWORD=no", *query[4:], "-c", "select 1"],
            capture_output=True,
            text=True,
            env=podman_env(),
            timeout=60,
        )
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
        wget = ["wget", "-q", "-O-"]
        _eventually([podman, "exec", prom, *wget, "http://127.0.0.1:9090/-/ready"])
        rules = json.loads(_eventually([podman, "exec", prom, *wget, "http://127.0.0.1:9090/api/v1/rules"]))
        loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert loaded >= {r["alert"] for r in alert_rules()}
        _eventually([podman, "exec", am, *wget, "http://127.0.0.1:9093/-/ready"])
        status = json.loads(_eventually([podman, "exec", am, *wget, "http://127.0.0.1:9093/api/v2/status"]))
        assert "fraud-oncall" in status["config"]["original"]
        for cid in (redis, pg, prom, am):
            user = json.loads(sh([podman, "inspect", cid]).stdout)[0]["Config"]["User"]
            assert user and user not in ("root", "0")
    finally:
        subprocess.run(
            [podman, "rm", "-f", "-t", "3", redis, pg, prom, am],
            capture_output=True,
            env=podman_env(),
            timeout=60,
        )


# ---------------------------------------------------------------------- the stack with podman-compose
STACK_PROJECT = "l4stacktest"


@pytest.fixture(scope="module")
def stack_images(base_image) -> str:
    """podman, after building every image of the compose stack under its compose tag (on the
    local base; the third-party services from Debian packages). Cached layers: seconds."""
    services = compose_services()
    for service in sorted(STACK):
        build_image(service, services[service]["image"], timeout=2400)
    return base_image


def _prometheus(base: str, path: str, params: dict[str, str] | None = None) -> dict:
    answer = httpx.get(f"{base}{path}", params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


@pytest.mark.container
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.compose
def test_compose_stack_scores_audits_in_postgres_and_is_scraped(stack_images, served_artifacts):
    """The whole stack with podman-compose: a transaction scored through the published port is in
    the stack's PostgreSQL audit log, and the stack's Prometheus scrapes the service (by its
    compose name) and sees the request, and finds Alertmanager."""
    art = served_artifacts
    ports = {
        name: free_port() for name in ("FRAUD", "REDIS", "POSTGRES", "PROMETHEUS", "ALERTMANAGER", "GRAFANA")
    }
    env = {
        **podman_env(),
        "L4_ARTIFACTS": str(art),
        "L4__SERVING__API_KEY": KEY,
        "POSTGRES_PASSWORD": "stack-secret",
        **{f"L4_{name}_PORT": str(port) for name, port in ports.items()},
    }
    stack = ComposeStack(
        COMPOSE, STACK_PROJECT, env, podman=stack_images, podman_compose=tool("podman-compose")
    )
    stack.down()  # what an interrupted earlier run left
    services = sorted(STACK | {"alert-sink"})
    try:
        stack.up(services)
        stack.wait_healthy(services, timeout_s=420)
        base = f"http://127.0.0.1:{ports['FRAUD']}"
        tx = {
            "TRANSACTION_ID": 9_100_001,
            "TX_DATETIME": "2018-06-01T10:15:00",
            "CUSTOMER_ID": 3,
            "TERMINAL_ID": 5,
            "TX_AMOUNT": 57.3,
        }
        answer = httpx.post(f"{base}/v1/score", json=tx, headers={"X-API-Key": KEY}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["decision"] in {"approve", "review", "decline"} and 0 <= body["score"] <= 1
        assert httpx.post(f"{base}/v1/score", json=tx, timeout=10).status_code == 401
        # The decision is in the stack's PostgreSQL (L4__SERVING__AUDIT_URL: postgres:5432 by name),
        # with the card as a keyed hash.
        sql = (
            "select decision, score, model_version, card_hash from audit_log "
            f"where transaction_id = {tx['TRANSACTION_ID']}"
        )
        row = stack.exec("postgres", "psql", "-U", "fraud", "-d", "fraud", "-tA", "-F", "|", "-c", sql)
        decision, score, version, card_hash = row.strip().split("|")
        assert (decision, version) == (body["decision"], body["model_version"])
        assert float(score) == pytest.approx(body["score"], abs=1e-9)
        assert re.fullmatch(r"[0-9a-f]{64}", card_hash)
        # Prometheus (published port) scrapes fraud:8400 and Alertmanager by their service names.
        prom = f"http://127.0.0.1:{ports['PROMETHEUS']}"

        def targets_up() -> dict[str, str] | None:
            active = _prometheus(prom, "/api/v1/targets")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            return health if health.get("fraud") == "up" and health.get("alertmanager") == "up" else None

        health = until(targets_up, 60, "Prometheus targets fraud and alertmanager up")
        assert health["fraud"] == "up"

        def scored() -> float:
            query = 'sum(fraud_requests_total{status="2xx"})'
            result = _prometheus(prom, "/api/v1/query", {"query": query})["result"]
            return float(result[0]["value"][1]) if result else 0.0

        assert until(scored, 60, "fraud_requests_total in Prometheus") >= 1.0
        ams = _prometheus(prom, "/api/v1/alertmanagers")["activeAlertmanagers"]
        assert [a["url"] for a in ams] == ["http://alertmanager:9093/api/v2/alerts"]
        print(f"stack timings (s): {stack.timings}")
    finally:
        stack.down()
    assert stack.leftovers() == []
