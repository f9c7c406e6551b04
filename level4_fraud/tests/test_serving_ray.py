"""``serve --engine ray``: the same scorer and app on Ray Serve (a private local Ray) answers
decisions, replays them by id, checks the key, and labels its metrics ``engine="ray"``; with two
replicas every ``/metrics`` answer counts the decisions of both."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from level4_fraud.tests.serving_helpers import payload, serving_config, serving_run
from shared.process import free_port, read_log_tail, start_process, stop_process_tree, wait_http_ready

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _serve_ray(run, tmp_path: Path, **settings: str) -> tuple[subprocess.Popen[bytes], str]:
    """``serve --engine ray`` on the small run (``settings``: extra ``L4__`` variables), ready;
    returns the process and its base URL."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "L4__SERVING__HISTORY": str(run.history),
        "L4__SERVING__AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "L4__SERVING__AUDIT_HASH_KEY": "k" * 32,
        **settings,
    }
    cmd = [sys.executable, "-m", "level4_fraud", "serve", "--engine", "ray", "--run", str(run.run_dir)]
    proc = start_process([*cmd, "--port", str(port), "--api-key", "ray-key"], env=env, cwd=ROOT, log_path=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ready(f"{base}/readyz", proc=proc, timeout_s=300)
    except RuntimeError as exc:
        stop_process_tree(proc, timeout_s=60)
        raise AssertionError(f"{exc}\n{read_log_tail(log)}") from None
    return proc, base


def test_ray_serve_engine_decides_replays_and_checks_the_key(tmp_path):
    run = serving_run()
    proc, base = _serve_ray(run, tmp_path)
    try:
        body = payload(run.replay().iloc[0])
        with httpx.Client(base_url=base, timeout=30) as client:
            first = client.post("/v1/score", json=body, headers={"X-API-Key": "ray-key"})
            assert first.status_code == 200, first.text
            again = client.post("/v1/score", json=body, headers={"X-API-Key": "ray-key"}).json()
            assert again["replayed"] is True and again["decision"] == first.json()["decision"]
            assert client.post("/v1/score", json=body).status_code == 401
            assert (
                client.post("/v1/score", json={"x": 1}, headers={"X-API-Key": "ray-key"}).status_code == 422
            )
            assert 'fraud_requests_total{engine="ray",status="2xx"}' in client.get("/metrics").text
    finally:
        stop_process_tree(proc, timeout_s=60)
    assert proc.returncode is not None


def test_the_rayservice_builder_binds_the_deployment_the_manifest_configures(tmp_path, monkeypatch):
    # KubeRay runs `import_path` with the manifest's args and matches its deployment settings by
    # name: the builder must bind a deployment of exactly that name, from L4__ variables.
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from level4_fraud.serving.ray_app import DEPLOYMENT, build_app

    doc = yaml.safe_load((ROOT / "infra" / "k8s" / "ray" / "rayservice.yaml").read_text())
    config = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    (app_cfg,) = config.applications
    assert app_cfg.import_path == "level4_fraud.serving.ray_app:build_app"
    assert [d.name for d in app_cfg.deployments] == [DEPLOYMENT]

    run = serving_run()
    monkeypatch.setenv("L4__SERVING__HISTORY", str(run.history))
    monkeypatch.setenv("L4__SERVING__API_KEY", "manifest-key")
    monkeypatch.setenv("L4__SERVING__AUDIT_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    app = build_app({**app_cfg.args, "run": str(run.run_dir)})
    deployment = app._bound_deployment
    assert deployment.name == DEPLOYMENT
    run_arg, serving, _fs, api_key, _version = deployment.init_args
    assert Path(run_arg) == run.run_dir.resolve()
    assert api_key == "manifest-key" and serving["history"] == str(run.history)


def test_the_replicas_admission_limit_comes_from_the_settings_and_is_above_the_scaling_target(tmp_path):
    """``serving.ray.max_ongoing_requests`` is what each replica admits (Ray Serve's router backs
    off once every replica is full, so it sits far above the autoscaler's target); a limit below
    the target would leave the autoscaler waiting for a load replicas never reach: refused."""
    from level4_fraud.serving.config import RayServeSettings
    from level4_fraud.serving.ray_app import application

    run = serving_run()
    settings = RayServeSettings(max_ongoing_requests=96, target_ongoing_requests=6)
    app = application(run.run_dir, serving_config(run), api_key="k", settings=settings)
    config = app._bound_deployment._deployment_config
    assert config.max_ongoing_requests == 96
    assert config.autoscaling_config.target_ongoing_requests == 6
    assert RayServeSettings().max_ongoing_requests >= 16 * RayServeSettings().target_ongoing_requests
    with pytest.raises(ValueError, match="must be at least target_ongoing_requests"):
        RayServeSettings(max_ongoing_requests=2, target_ongoing_requests=4)


def test_two_replicas_answer_metrics_for_both(tmp_path):
    """Each Ray Serve replica is its own process; a scrape reaches one of them. With the
    replicas' shared multiprocess folder every scrape counts the decisions of both (with each
    replica's own metrics, the scrapes read about half each: checked by hand)."""
    run = serving_run()
    bodies = [payload(row) for _, row in run.replay().head(60).iterrows()]
    replicas = {"L4__SERVING__RAY__MIN_REPLICAS": "2", "L4__SERVING__RAY__MAX_REPLICAS": "2"}
    proc, base = _serve_ray(run, tmp_path, **replicas)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:

            def post(body: dict) -> int:
                return client.post("/v1/score", json=body, headers={"X-API-Key": "ray-key"}).status_code

            with ThreadPoolExecutor(8) as pool:  # requests in flight at once: both replicas take some
                assert set(pool.map(post, bodies)) == {200}
            counts = [_decided(client.get("/metrics").text) for _ in range(10)]
    finally:
        stop_process_tree(proc, timeout_s=60)
    assert counts == [len(bodies)] * 10, counts


def _decided(text: str) -> float:
    """``fraud_requests_total{engine="ray",status="2xx"}`` in a scrape (0 when absent)."""
    found = re.search(r'^fraud_requests_total\{engine="ray",status="2xx"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0
