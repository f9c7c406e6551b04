"""A real Prometheus (Debian's binary) on loopback scrapes the running API and sees its metrics."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import httpx
import pytest
import uvicorn

from level3_recsys.serving import monitoring as mon
from level3_recsys.serving.api import create_app
from level3_recsys.tests.serving_helpers import H, reference_path_fixture, settings  # noqa: F401
from shared.process import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus binary not installed"),
]


def query(base: str, promql: str) -> list[dict]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_prometheus_scrapes_api_metrics(tmp_path, reference_path):
    api_port, prom_port = free_port(), free_port()
    # the model service is absent (nothing listens on port 9): every answer is the fallback
    app = create_app(settings(reference_path, model_service_url="http://127.0.0.1:9", breaker_min_calls=2))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: l3-api\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{api_port}']\n"
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}") as api:
            for _ in range(5):
                assert api.get("/v1/recommendations/1?k=3", headers=H).json()["fallback"] is True
        found: dict[str, list] = {}
        wanted = {
            "up": 'up{job="l3-api"} == 1',
            "fallbacks": f"sum({mon.FALLBACKS}) >= 5",
            "breaker": f'{mon.BREAKER_STATE}{{breaker="model"}} == 2',
            "latency": f"histogram_quantile(0.99, sum by (le) (rate({mon.REQUEST_LATENCY}_bucket[1m]))) >= 0",
        }
        while time.monotonic() < deadline and len(found) < len(wanted):
            for name, promql in wanted.items():
                if name not in found:
                    try:
                        result = query(base, promql)
                    except httpx.HTTPError:
                        break  # Prometheus still starting
                    if result:
                        found[name] = result
            time.sleep(0.5)
        assert set(found) == set(wanted), f"missing after 30 s: {set(wanted) - set(found)}"
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)
