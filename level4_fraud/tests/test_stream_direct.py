"""The direct replay (``stream`` without a broker) against the real scoring API on uvicorn: every
transaction decided once and audited, a second replay answered from the audit log, a wrong key
counted as errors (not a crash), and the command's bad input as one line with exit code 2."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from level4_fraud.stream.direct import replay_direct
from level4_fraud.stream.replay import encode, load_replay, payloads
from level4_fraud.tests.serving_helpers import serving_config, serving_run
from shared.process import free_port

KEY = "test-key"  # serving_config's


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, str, object]]:
    """``(base URL, audit URL, replay folder)`` of the real app on uvicorn in a thread."""
    import uvicorn

    from level4_fraud.serving.app import create_app
    from level4_fraud.serving.service import ScoringService

    run = serving_run()
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    cfg = serving_config(run, audit_url=audit_url)
    service = ScoringService.from_run(run.copy(tmp_path / "run"), cfg)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service, cfg), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", audit_url, run.replay_day.parent
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        service.close()


@pytest.mark.slow
def test_direct_replay_decides_every_transaction_once(api) -> None:
    from level4_fraud.serving.audit import AuditLog

    url, audit_url, replay = api
    frame = load_replay(replay, limit=200)
    bodies = [encode(p) for p in payloads(frame)]

    first = replay_direct(bodies, url=url, api_key=KEY, tps=100.0, concurrency=8)
    assert (first.sent, first.ok, first.errors, first.replayed) == (200, 200, 0, 0)
    assert sum(first.decisions.values()) == 200 and len(first.latencies_ms) == 200
    with AuditLog.open(audit_url, b"k" * 32) as audit:
        assert sorted(audit.transaction_ids()) == sorted(int(t) for t in frame["TRANSACTION_ID"])

    again = replay_direct(bodies, url=url, api_key=KEY, tps=200.0, concurrency=8)
    assert (again.ok, again.replayed) == (200, 200)  # idempotent: the first decisions, from the log
    assert again.decisions == first.decisions

    wrong = replay_direct(bodies[:10], url=url, api_key="not-the-key", tps=100.0)
    assert (wrong.ok, wrong.errors) == (0, 10)
    assert set(wrong.error_kinds) <= {"HTTP 401", "HTTP 403"}


def _cli(*args: str):
    from level4_fraud.cli import app

    return CliRunner().invoke(app, ["stream", *args])


def test_stream_command_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from level4_fraud.tests.integration_helpers import small_folder

    got = _cli("--data", str(tmp_path / "missing"))
    assert got.exit_code == 2 and got.output.strip().splitlines() == [
        f"error: {tmp_path / 'missing'}: no such folder"
    ]

    got = _cli("--data", str(small_folder()), "--limit", "5", "--url", f"http://127.0.0.1:{free_port()}")
    assert got.exit_code == 2 and "error: no scoring service at" in got.output

    got = _cli("--data", str(small_folder()), "--broker", "http://127.0.0.1:6379")
    assert got.exit_code == 2 and "broker must be a redis:// URL" in got.output

    got = _cli("--data", str(small_folder()), "--tps", "0")
    assert got.exit_code == 2 and "tps" in got.output
