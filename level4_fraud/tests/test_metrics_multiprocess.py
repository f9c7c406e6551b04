"""`ServiceMetrics` across processes (``serve --workers N``): processes writing into one
multiprocess folder, each scrape the sum of all of them, gauges combined as each declares, an
exited process's gauges dropped and its counts kept. prometheus_client picks multiprocess mode
once, on import, so the writers are real subprocesses started with ``PROMETHEUS_MULTIPROC_DIR``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from level4_fraud.serving.metrics import (
    ServiceMetrics,
    live_gauge_pids,
    reap_dead_processes,
    worker_metrics_dir,
)

# One "worker": N decisions, a freshness, a drift value, then its exposition on stdout.
WORKER = """
import os, sys
from pathlib import Path
from level4_fraud.serving.metrics import ServiceMetrics, multiprocess_mode
from level4_fraud.serving.schemas import DecisionOut

n, freshness, psi = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
assert multiprocess_mode()
m = ServiceMetrics(multiprocess_dir=Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
m.set_model("v1")
for i in range(n):
    d = DecisionOut(transaction_id=i, decision="decline" if i == 0 else "approve", score=0.5,
                    model_version="v1", latency_ms=1.0, flags=["unknown_card"])
    m.observe_decision(d, freshness_s=freshness)
    m.observe_request("uvicorn", 200, 0.004)
m.drift_psi.labels("TX_AMOUNT").set(psi)
sys.stdout.write(m.exposition().decode())
"""


def _worker(folder: Path, n: int, freshness: float, psi: float) -> tuple[int, str]:
    """Run one writer process to its end: its pid and the exposition it answered."""
    env = {k: v for k, v in os.environ.items() if "MULTIPROC" not in k}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(n), str(freshness), str(psi)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    return proc.pid, out


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _read(folder: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The folder's sum as any reader sees it (no writer needed: the files are the state)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return _samples(generate_latest(registry).decode())


def _decisions(samples: dict) -> float:
    return sum(v for (name, _), v in samples.items() if name == "fraud_decisions_total")


def test_two_processes_in_one_folder_answer_with_their_sum(tmp_path):
    pid_a, _ = _worker(tmp_path, 3, freshness=10.0, psi=0.5)
    pid_b, seen_by_b = _worker(tmp_path, 2, freshness=20.0, psi=0.1)
    b = _samples(seen_by_b)
    assert _decisions(b) == 5  # b's 2 and a's 3, not b's alone
    assert b[("fraud_decisions_total", (("decision", "decline"),))] == 2
    assert b[("fraud_requests_total", (("engine", "uvicorn"), ("status", "2xx")))] == 5
    assert b[("fraud_request_latency_seconds_count", (("engine", "uvicorn"),))] == 5
    assert b[("fraud_fallbacks_total", (("kind", "unknown_card"),))] == 5
    assert b[("fraud_audit_records_total", ())] == 5
    assert b[("fraud_score_count", ())] == 5
    assert b[("fraud_model_info", (("version", "v1"),))] == 1  # max, not one per process
    assert b[("fraud_feature_freshness_seconds", ())] == 20.0  # the latest decision's
    assert b[("fraud_drift_psi", (("feature", "TX_AMOUNT"),))] == 0.5  # the larger
    # Only the service's metrics, with the labels a single process shows (no pid).
    assert {name.split("_")[0] for name, _ in b} == {"fraud"}
    assert all("pid" not in dict(labels) for _, labels in b)

    # Both have exited: their gauges go, their counts stay.
    assert live_gauge_pids(tmp_path) == {pid_a, pid_b}
    assert reap_dead_processes(tmp_path) == sorted([pid_a, pid_b])
    after = _read(tmp_path)
    assert _decisions(after) == 5
    assert not any(name in ("fraud_model_info", "fraud_drift_psi") for name, _ in after)


def test_a_process_not_writing_into_the_folder_is_refused(tmp_path):
    """This test process imported prometheus_client without the variable: its values are in
    memory, so a sum over the folder would leave them out."""
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        ServiceMetrics(multiprocess_dir=tmp_path)


def test_single_process_metrics_are_their_own():
    a, b = ServiceMetrics(), ServiceMetrics()
    a.observe_request("uvicorn", 200, 0.01)
    assert 'fraud_requests_total{engine="uvicorn",status="2xx"} 1.0' in a.exposition().decode()
    assert 'status="2xx"} 1.0' not in b.exposition().decode()


def test_the_parent_drops_the_gauges_of_a_worker_that_exited():
    """uvicorn restarts a dead worker without telling anyone: the folder's own thread notices."""
    import time

    with worker_metrics_dir(interval_s=0.05) as folder:
        pid, _ = _worker(folder, 1, freshness=5.0, psi=0.3)
        deadline = time.monotonic() + 10
        while live_gauge_pids(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid not in live_gauge_pids(folder)
        assert _decisions(_read(folder)) == 1


def test_the_workers_folder_is_new_and_empty_each_time_and_removed_after():
    with worker_metrics_dir(interval_s=0.05) as first:
        assert first.is_dir() and not any(first.iterdir())
        (first / "counter_1.db").write_bytes(b"")
        with worker_metrics_dir(interval_s=0.05) as second:
            assert second != first and not any(second.iterdir())
    assert not first.exists() and not second.exists()
