"""``serve --workers N``: several uvicorn worker processes share one card state in Redis
(``serving.ledger_url``; marker ``services``). Over a replayed day, sent one transaction at a time
on fresh connections so that both workers take some, the decisions are those of one in-process
scorer deciding the same sequence: each worker sees the payments the other one decided. They count
as one process too: every scrape of ``/metrics``, whichever worker answers it, gives the decisions
of both. Without a shared ledger the command refuses, in one line, to start several workers."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from level4_fraud.serving.schemas import TransactionIn
from level4_fraud.tests.serving_helpers import payload, serving_config, serving_run
from shared.process import free_port, read_log_tail, start_process, stop_process_tree, wait_http_ready

pytestmark = [pytest.mark.services, pytest.mark.slow]

KEY = "workers-test-key"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]


def _workers(proc) -> list[psutil.Process]:
    """uvicorn's worker processes (spawned children, not multiprocessing's resource tracker)."""
    kids = psutil.Process(proc.pid).children(recursive=True)
    return [p for p in kids if "resource_tracker" not in " ".join(p.cmdline())]


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def _scrape(port: int) -> dict[str, float]:
    """``/metrics`` on a new connection (any worker may take it): each series' value, by the
    sample's name and labels as Prometheus writes them."""
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    return {
        s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}": s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _assert_every_scrape_counts_both_workers(port: int, decided: int, scrapes: int = 8) -> None:
    """Per-worker metrics would show one worker's share, a different one from scrape to scrape."""
    for _ in range(scrapes):
        seen = _scrape(port)
        decisions = sum(v for k, v in seen.items() if k.startswith("fraud_decisions_total{"))
        assert decisions == decided, seen
        assert seen['fraud_requests_total{engine="uvicorn",status="2xx"}'] == decided
        assert seen["fraud_audit_records_total{}"] == decided
        assert [v for k, v in seen.items() if k.startswith("fraud_model_info{")] == [1.0]


def test_two_workers_on_the_redis_ledger_decide_as_one_process(tmp_path):
    from level4_fraud.serving.redis_ledger import RedisCardLedger, connect_ledger, ledger_namespace
    from level4_fraud.serving.scorer import FraudScorer

    run = serving_run()
    folder = run.copy(tmp_path / f"run-{uuid.uuid4().hex[:10]}")  # its own ledger namespace
    port = free_port()
    env = {
        **os.environ,
        "L4__SERVING__HISTORY": str(run.history),
        "L4__SERVING__LEDGER_URL": REDIS_URL,
        "L4__SERVING__AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "L4__SERVING__AUDIT_HASH_KEY": "k" * 32,
    }
    cmd = [sys.executable, "-m", "level4_fraud", "serve", "--run", str(folder), "--port", str(port)]
    log = tmp_path / "serve.log"
    proc = start_process([*cmd, "--api-key", KEY, "--workers", "2"], env=env, cwd=ROOT, log_path=log)
    reference = FraudScorer.from_run(run.run_dir, serving_config(run))
    try:
        try:
            wait_http_ready(f"http://127.0.0.1:{port}/readyz", proc=proc, timeout_s=300)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{read_log_tail(log)}") from None
        workers = _workers(proc)
        assert len(workers) == 2, [p.cmdline() for p in workers]
        before = [_cpu_s(p) for p in workers]
        day = run.replay().head(150)
        for _, row in day.iterrows():
            body = payload(row)
            r = httpx.post(  # a new connection each time: the kernel hands it to either worker
                f"http://127.0.0.1:{port}/v1/score", json=body, headers={"X-API-Key": KEY}, timeout=30
            )
            assert r.status_code == 200, r.text
            served = r.json()
            tx = TransactionIn.model_validate(body)
            expected = reference.score(tx)
            reference.observe(tx)
            assert served["decision"] == expected.decision and served["flags"] == expected.flags
            assert served["score"] == pytest.approx(expected.score, abs=1e-6)
        used = [_cpu_s(p) - b for p, b in zip(workers, before, strict=True)]
        # both decided a share of the day (a worker that took none would add almost no CPU)
        assert min(used) > 0.05, used
        _assert_every_scrape_counts_both_workers(port, decided=len(day))
    finally:
        stop_process_tree(proc)
        RedisCardLedger(connect_ledger(REDIS_URL), ledger_namespace(folder.name)).clear()


def test_several_workers_without_a_shared_ledger_or_on_a_broken_run_is_one_clear_error(tmp_path):
    """Refused before any worker starts: uvicorn restarts a worker that raises, so a run the
    service cannot load would otherwise loop on tracebacks instead of stopping."""
    import subprocess

    cmd = [sys.executable, "-m", "level4_fraud", "serve", "--run", str(tmp_path), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "L4__SERVING__LEDGER_URL"}
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs serving.ledger_url" in out.stderr and "Traceback" not in out.stderr

    (tmp_path / "run.json").write_text("{}")  # looks like a run folder, holds no run
    env["L4__SERVING__LEDGER_URL"] = REDIS_URL
    out = subprocess.run(
        [*cmd, "--port", str(free_port())], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "not a level-4 run folder" in out.stderr and "Traceback" not in out.stderr
