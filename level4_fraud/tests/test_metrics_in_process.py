"""Prometheus metrics stay in process although Feast switches ``prometheus_client`` to
multiprocess mode on import (see ``level4_fraud/__init__.py``)."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


CODE = """
import os
import level4_fraud
import level4_fraud.serving.online  # imports feast, which sets PROMETHEUS_MULTIPROC_DIR when unset
from level4_fraud.serving.metrics import ServiceMetrics
a, b = ServiceMetrics(), ServiceMetrics()
a.observe_request("uvicorn", 200, 0.01)
b.observe_request("uvicorn", 200, 0.01)
seen = b.exposition().decode()
print(('status="2xx"} 1.0' not in seen), bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
"""


def test_two_services_in_one_process_do_not_share_counts_after_feast_is_imported():
    env = {k: v for k, v in os.environ.items() if "MULTIPROC" not in k}
    shared, feast_set_the_folder = _run(CODE, env).split()
    assert feast_set_the_folder == "True"  # the switch this guards against is still there
    assert shared == "False"


def test_a_feast_folder_inherited_from_a_parent_is_dropped_and_an_operators_is_kept(tmp_path):
    env = {k: v for k, v in os.environ.items() if "MULTIPROC" not in k}
    probe = "import os, level4_fraud; print(os.environ.get('PROMETHEUS_MULTIPROC_DIR', '-'))"
    inherited = tmp_path / "feast_metrics_abc123"
    inherited.mkdir()
    assert _run(probe, {**env, "PROMETHEUS_MULTIPROC_DIR": str(inherited)}) == "-"
    own = tmp_path / "prom"
    own.mkdir()
    assert _run(probe, {**env, "PROMETHEUS_MULTIPROC_DIR": str(own)}) == str(own)
