"""The audit log across a crash: ``python -m level4_fraud serve`` is SIGKILLed in the middle of a
stream of transactions and restarted; every decision it acknowledged (HTTP 200) is in the audit
log exactly once, and a retry of it after the restart gets the same decision back."""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from level4_fraud.tests.serving_helpers import payload, serving_run
from shared.process import (
    free_port,
    read_log_tail,
    signal_tree,
    start_process,
    stop_process_tree,
    wait_http_ready,
)

pytestmark = pytest.mark.slow

KEY = "kill-test-key"
ROOT = Path(__file__).resolve().parents[2]


def _start(run, port: int, audit_url: str, log: Path):
    env = {
        **os.environ,
        "L4__SERVING__HISTORY": str(run.history),
        "L4__SERVING__AUDIT_URL": audit_url,
        "L4__SERVING__AUDIT_HASH_KEY": "k" * 32,
    }
    cmd = [sys.executable, "-m", "level4_fraud", "serve", "--run", str(run.run_dir), "--port", str(port)]
    proc = start_process([*cmd, "--api-key", KEY], env=env, cwd=ROOT, log_path=log)
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", proc=proc, timeout_s=240)
    except RuntimeError as exc:
        stop_process_tree(proc)
        raise AssertionError(f"{exc}\n{read_log_tail(log)}") from None
    return proc


def test_every_acknowledged_decision_survives_a_sigkill_exactly_once(tmp_path):
    from level4_fraud.serving.audit import AuditLog

    run = serving_run()
    bodies = [payload(row) for _, row in run.replay().head(400).iterrows()]
    port = free_port()
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    url = f"http://127.0.0.1:{port}/v1/score"
    log = tmp_path / "serve.log"
    acked: dict[int, dict] = {}
    lock = threading.Lock()
    killed = threading.Event()

    proc = _start(run, port, audit_url, log)
    try:

        def send(body: dict) -> None:
            try:
                r = httpx.post(url, json=body, headers={"X-API-Key": KEY}, timeout=30)
            except httpx.HTTPError:
                return  # the service died with this request in flight: not acknowledged
            if r.status_code == 200:
                with lock:
                    acked[body["TRANSACTION_ID"]] = r.json()
                    if len(acked) >= 120 and not killed.is_set():
                        killed.set()
                        signal_tree(proc, signal.SIGKILL)  # mid-stream, requests in flight

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(send, bodies))
        assert killed.is_set(), f"only {len(acked)} decisions before the stream ended"
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert 120 <= len(acked) < len(bodies)

        proc = _start(run, port, audit_url, log)
        # The stream is sent again: acknowledged ones come back replayed and unchanged.
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=30) as client:
            for body in bodies:
                r = client.post(url, json=body)
                assert r.status_code == 200, r.text
                d = r.json()
                first = acked.get(body["TRANSACTION_ID"])
                if first is not None:
                    assert d["replayed"] is True
                    assert {k: v for k, v in d.items() if k != "replayed"} == {
                        k: v for k, v in first.items() if k != "replayed"
                    }
    finally:
        stop_process_tree(proc)

    audit = AuditLog.open(audit_url, b"k" * 32)
    try:
        ids = audit.transaction_ids()
        assert len(ids) == len(set(ids)) == len(bodies)  # each exactly once
        assert set(acked) <= set(ids)
        for tid, first in acked.items():
            rec = audit.get(tid)
            assert rec is not None and rec.decision == first["decision"] and rec.score == first["score"]
    finally:
        audit.close()
