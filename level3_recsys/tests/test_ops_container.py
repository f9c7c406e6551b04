"""Build the images with podman and run them: real containers answer on loopback ports.

Marked ``container`` (``make test-container``; excluded from ``make test``; CI runs the API
test after it). Needs root, podman, runc and debootstrap (Debian packages); skipped with the
reason when they are absent.
The base image comes from ``docker/build_base.sh`` (debootstrap + ``podman import``, cached by
tag), the API image from ``docker/build_image.sh api`` (``podman build --format docker``).
A small trained workspace (registry, fresh batch, serving reference) is mounted at the same
path; in the API test no model service runs, so unknown users exercise the popularity
fallback. The model image (torch, BentoML, MLflow) is also ``slow``: about 10 minutes cold.
Timings on a 2-core machine: API test ~1 min with cached layers, ~4-5 min cold (base image
~1 min, API image ~2 min); model test ~1 min cached, ~10 min cold.
The compose test (also ``slow``) brings ``docker/compose.yaml`` up with ``podman-compose``
(Grafana left out: it needs its official image), every image built on the local base, and
asks the API for a batch list and a model-service list, MLflow for the champion and Prometheus
for its targets; it tears the stack down, volumes and network included.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from level3_recsys.loadtest.workspace import prepare_workspace
from level3_recsys.tests.ops_helpers import APT_HINT, DOCKER, tool
from shared.compose_stack import ComposeStack, until
from shared.podman_images import build_base_image, build_image, podman_env
from shared.podman_images import run_checked as sh
from shared.process import free_port

pytestmark = [pytest.mark.container, pytest.mark.integration]

API_TAG = "localhost/level3-recsys-api:test"
MODEL_TAG = "localhost/level3-recsys-model:test"
KEY = "container-key"
SMALL = {
    "simulator": {"n_users": 300, "n_items": 300, "days": 14, "new_items_per_day": 5},
    "split": {"test_days": 3.0},
}


@pytest.fixture(scope="module")
def base_image():
    return build_base_image(APT_HINT)


@pytest.fixture(scope="module")
def api_image(base_image):
    build_image("api", API_TAG, timeout=900)
    return base_image


@pytest.fixture(scope="module")
def model_image(base_image):
    build_image("model", MODEL_TAG)
    return base_image


def wait_ready(url: str, podman: str, cid: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, subprocess.run(
            [podman, "logs", cid], capture_output=True, text=True, env=podman_env()
        ).stderr[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = prepare_workspace(tmp_path_factory.mktemp("ws"), overrides=SMALL)
    # The container runs as uid 10001; SQLite in WAL mode needs to write next to the store.
    for folder, _, files in os.walk(ws.root):
        os.chmod(folder, 0o777)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o666)
    return ws


def test_api_image_runs_and_answers(api_image, workspace, free_port):
    podman = api_image
    env = workspace.api_env(api_key=KEY, model_url="http://127.0.0.1:9")  # no model service
    cmd = [
        podman,
        "run",
        "-d",
        "--rm",
        "-p",
        f"127.0.0.1:{free_port}:8000",
        "-v",
        f"{workspace.root}:{workspace.root}",
    ]
    for name, value in env.items():
        cmd += ["-e", f"{name}={value}"]
    cid = sh([*cmd, API_TAG]).stdout.strip().splitlines()[-1]
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_ready(f"{base}/readyz", podman, cid, 60)
        h = {"X-API-Key": KEY}
        user = workspace.user_ids[0]
        body = httpx.get(f"{base}/v1/recommendations/{user}?k=5", headers=h, timeout=5).json()
        assert body["source"] == "batch" and not body["fallback"]
        assert body["model_version"] == workspace.model_version
        assert len(body["items"]) == 5
        assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
        # a never-seen user: the model's cold-start list, stored by the nightly batch
        cold = httpx.get(f"{base}/v1/recommendations/nobody-here?k=5", headers=h, timeout=5).json()
        assert cold["source"] == "batch" and cold["cold_start"] and not cold["fallback"]
        assert cold["model_version"] == workspace.model_version and len(cold["items"]) == 5
        # more items than the batch stored (its k is 10): the model service, which is not
        # running here, so the popularity fallback of the serving reference
        longer = httpx.get(f"{base}/v1/recommendations/nobody-here?k=100", headers=h, timeout=5).json()
        assert longer["source"] == "fallback" and longer["fallback"]
        assert longer["fallback_reason"] == "connect"
        reference = json.loads(Path(workspace.reference_path).read_text())
        assert [i["item_id"] for i in longer["items"]] == reference["popular_items"][:100]
        assert httpx.get(f"{base}/v1/recommendations/{user}", timeout=5).status_code == 401
        assert httpx.get(f"{base}/v1/recommendations/{user}?k=500", headers=h, timeout=5).status_code == 422
        # /metrics from inside the container (its own loopback) counts what we asked.
        script = (
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
        )
        metrics = sh([podman, "exec", cid, "python3", "-c", script]).stdout
        assert (
            f'l3_recommendations_total{{model_version="{workspace.model_version}",source="batch"}} 2.0'
            in metrics
        )
        assert 'l3_fallbacks_total{reason="connect"} 1.0' in metrics
        assert "l3_cold_starts_total 1.0" in metrics
        # The image's HEALTHCHECK passes, and the process does not run as root.
        sh([podman, "healthcheck", "run", cid])
        inspect = json.loads(sh([podman, "inspect", cid]).stdout)[0]
        assert inspect["Config"]["User"] == "10001"
    finally:
        subprocess.run(
            [podman, "rm", "-f", "-t", "5", cid], capture_output=True, env=podman_env(), timeout=60
        )


@pytest.mark.slow
def test_model_image_serves_the_champion(model_image, workspace, free_port):
    # The BentoML service loads models:/<name>@champion from the mounted MLflow registry
    # (mounted at the same path: the registry stores absolute artifact locations).
    podman = model_image
    cmd = [
        podman,
        "run",
        "-d",
        "--rm",
        "-p",
        f"127.0.0.1:{free_port}:3000",
        "-v",
        f"{workspace.root}:{workspace.root}",
    ]
    for name, value in workspace.model_env().items():
        cmd += ["-e", f"{name}={value}"]
    cid = sh([*cmd, MODEL_TAG]).stdout.strip().splitlines()[-1]
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_ready(f"{base}/readyz", podman, cid, 180)
        user = workspace.user_ids[0]
        answer = httpx.post(
            f"{base}/recommend", json={"user_id": user, "k": 5, "device": "tv", "hour": 21}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["known_user"] and body["model_version"] == workspace.model_version
        assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
        bad = httpx.post(f"{base}/recommend", json={"user_id": user, "k": 0}, timeout=30)
        assert 400 <= bad.status_code < 500
        sh([podman, "healthcheck", "run", cid])
        assert json.loads(sh([podman, "inspect", cid]).stdout)[0]["Config"]["User"] == "10001"
    finally:
        subprocess.run(
            [podman, "rm", "-f", "-t", "5", cid], capture_output=True, env=podman_env(), timeout=60
        )


# ---------------------------------------------------------------------- the stack with podman-compose
COMPOSE = DOCKER / "compose.yaml"
STACK = ["api", "model", "redis", "postgres", "mlflow", "prometheus"]  # Grafana: official image only
BUILT = ["api", "model", "redis", "postgres", "prometheus"]  # mlflow runs the model image
STACK_PROJECT = "l3stacktest"


@pytest.fixture(scope="module")
def stack_images(base_image):
    """podman, after building every image of the stack under its compose tag (on the local base;
    Redis, PostgreSQL and Prometheus from Debian packages). Cached layers: seconds."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in BUILT:
        build_image(name, services[name]["image"])
    return base_image


@pytest.mark.slow
@pytest.mark.compose
def test_compose_stack_recommends_through_the_api_and_is_scraped(stack_images, workspace):
    """The stack with podman-compose: the API (published port, API key) answers from the batch
    and, for a longer list, from the model service it reaches by its compose name; MLflow serves
    the registry; Prometheus scrapes the API and the model service."""
    art = Path(workspace.root) / "artifacts"
    # The layout compose.yaml assumes under L3_ARTIFACTS.
    assert workspace.tracking_uri == f"sqlite:///{art}/mlflow/mlflow.db"
    assert workspace.store_url == f"sqlite:///{art}/store/recs.db"
    assert workspace.reference_path == f"{art}/serving/reference.json"
    ports = {name: free_port() for name in ("API", "MLFLOW", "PROMETHEUS", "REDIS", "POSTGRES", "GRAFANA")}
    env = {
        **podman_env(),
        "L3_ARTIFACTS": str(art),
        "L3__SERVING__API_KEY": KEY,
        **{f"L3_{name}_PORT": str(port) for name, port in ports.items()},
    }
    env.pop("L3__SERVING__STORE_URL", None)
    stack = ComposeStack(
        COMPOSE, STACK_PROJECT, env, podman=stack_images, podman_compose=tool("podman-compose")
    )
    stack.down()  # what an interrupted earlier run left
    try:
        stack.up(STACK)
        stack.wait_healthy(STACK, timeout_s=420)
        base = f"http://127.0.0.1:{ports['API']}"
        h = {"X-API-Key": KEY}
        user = workspace.user_ids[0]
        batch = httpx.get(f"{base}/v1/recommendations/{user}?k=5", headers=h, timeout=10).json()
        assert batch["source"] == "batch" and batch["model_version"] == workspace.model_version
        assert [i["rank"] for i in batch["items"]] == [1, 2, 3, 4, 5]
        # More items than the batch stored (k 10): the API asks the model service at model:3000.
        online = httpx.get(f"{base}/v1/recommendations/{user}?k=20", headers=h, timeout=30).json()
        assert online["source"] == "model" and not online["fallback"], online
        assert online["model_version"] == workspace.model_version and len(online["items"]) == 20
        assert httpx.get(f"{base}/v1/recommendations/{user}", timeout=10).status_code == 401
        # MLflow in the stack serves the mounted registry: the champion is the batch's version.
        mlflow = f"http://127.0.0.1:{ports['MLFLOW']}/api/2.0/mlflow/registered-models/alias"

        def champion() -> str | None:
            try:
                answer = httpx.get(
                    mlflow, params={"name": workspace.registered_model, "alias": "champion"}, timeout=30
                )
            except httpx.HTTPError:
                return None
            return answer.json()["model_version"]["version"] if answer.status_code == 200 else None

        assert until(champion, 90, "MLflow's champion") == workspace.model_version, stack.diagnostics()
        # Prometheus scrapes api:8000 and model:3000 by their service names and sees the answers.
        prom = f"http://127.0.0.1:{ports['PROMETHEUS']}/api/v1"

        def targets_up() -> dict[str, str] | None:
            active = httpx.get(f"{prom}/targets", timeout=10).json()["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            return health if health.get("level3-api") == health.get("level3-model") == "up" else None

        until(targets_up, 60, "Prometheus targets level3-api and level3-model up")

        def answered() -> float:
            query = {"query": "sum(l3_recommendations_total)"}
            result = httpx.get(f"{prom}/query", params=query, timeout=10).json()["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        assert until(answered, 60, "l3_recommendations_total in Prometheus") >= 2.0
        print(f"stack timings (s): {stack.timings}")
    finally:
        stack.down()
    assert stack.leftovers() == []
