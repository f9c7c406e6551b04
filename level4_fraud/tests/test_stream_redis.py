"""The consumer group on a real Redis (127.0.0.1:6379) with the real `ScoringService`: a consumer
killed mid-stream loses nothing — its pending entries are claimed by the other, every transaction
is in the audit log exactly once, and nothing is left pending.

Each test uses its own stream key and group and deletes them after.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from level4_fraud import schema
from level4_fraud.stream.consumer import ConsumerSettings, StreamConsumer
from level4_fraud.stream.group import ConsumerProcesses, consumer_command
from level4_fraud.stream.producer import connect, ensure_group, publish, read_all, wait_drained
from level4_fraud.stream.replay import encode, load_replay, payloads
from level4_fraud.tests.serving_helpers import serving_run

pytestmark = pytest.mark.services

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_client() -> Iterator[object]:
    pytest.importorskip("redis")
    try:
        client = connect(REDIS_URL)
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield client
    client.close()


@pytest.fixture
def stream_key(redis_client) -> Iterator[str]:
    key = f"l4test:stream:{uuid.uuid4().hex[:12]}"
    yield key
    leftover = list(redis_client.scan_iter(match=f"{key}*"))
    if leftover:
        redis_client.delete(*leftover)


@pytest.fixture
def scoring_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``(run folder, history folder, replay folder)``: a private copy of the small servable run
    (consumers push card activity into its online store) and the day after its history."""
    run = serving_run()
    return run.copy(tmp_path / "run"), run.history, run.replay_day.parent


class FlakyDecider:
    """Approves everything; raises on the first try of the ids in `fail_once` (as the service
    does when the audit log cannot be written)."""

    def __init__(self, fail_once: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail_once = set(fail_once)
        self.decided: list[int] = []

    def decide(self, tx):
        from level4_fraud.serving.schemas import DecisionOut

        if tx.TRANSACTION_ID in self.fail_once:
            self.fail_once.discard(tx.TRANSACTION_ID)
            raise RuntimeError("audit log not writable")
        self.decided.append(tx.TRANSACTION_ID)
        return DecisionOut(
            transaction_id=tx.TRANSACTION_ID,
            decision="approve",
            score=0.01,
            model_version="t",
            latency_ms=0.1,
        )


def _tx(tid: int, card: int = 1, when: str = "2018-05-01T10:00:00", terminal: int = 2) -> bytes:
    return encode(
        {
            "TRANSACTION_ID": tid,
            "TX_DATETIME": when,
            "CUSTOMER_ID": card,
            "TERMINAL_ID": terminal,
            "TX_AMOUNT": 5.0,
        }
    )


def _settings(key: str, name: str = "c1", flush_every_s: float = 0.0) -> ConsumerSettings:
    return ConsumerSettings(
        key,
        "g",
        name,
        read_count=10,
        block_ms=50,
        claim_min_idle_ms=200,
        claim_every_s=0.05,
        flush_every_s=flush_every_s,
    )


class PendingAtPush:
    """The real Feast store, noting how many entries were still unacknowledged at each push."""

    def __init__(self, store, client, key: str) -> None:
        self.store, self.client, self.key = store, client, key
        self.pending_at_push: list[int] = []

    def push(self, rows):
        self.pending_at_push.append(self.client.xpending(self.key, "g")["pending"])
        return self.store.push(rows)


def test_card_activity_reaches_the_online_store_before_the_entries_are_acknowledged(
    redis_client, stream_key: str, tmp_path: Path
) -> None:
    from datetime import timedelta

    from level4_fraud.tests.test_feast import DAY, build_store, request

    fs = build_store(tmp_path)
    fs.materialize(DAY - timedelta(days=2), DAY + timedelta(days=2))
    sink = PendingAtPush(fs, redis_client, stream_key)
    consumer = StreamConsumer(redis_client, _settings(stream_key, flush_every_s=60.0), FlakyDecider(), sink)
    consumer.join()
    times = ["2018-04-03T10:15:00", "2018-04-03T10:30:00", "2018-04-03T10:45:00"]
    publish(
        redis_client,
        stream_key,
        [_tx(i, card=1, when=t, terminal=7) for i, t in enumerate(times)],
        tps=1000.0,
    )

    assert consumer.poll() == 3
    assert redis_client.xpending(stream_key, "g")["pending"] == 3  # decided, buffered, not yet acknowledged
    assert sink.pending_at_push == []
    assert consumer.poll() == 0  # the stream is idle: flush
    assert sink.pending_at_push == [3]  # one push for the three, before any acknowledgement
    assert redis_client.xpending(stream_key, "g")["pending"] == 0
    got = fs.online_features([request(1, 7, 30.0, "2018-04-03 11:00")])
    assert got.loc[0, "SECONDS_SINCE_LAST_TX"] == 900.0  # the card's newest transaction, 10:45


def test_a_bad_payload_is_dead_lettered_and_a_failed_decision_is_retried_once_claimed(
    redis_client, stream_key: str
) -> None:
    reply = f"{stream_key}:results"
    decider = FlakyDecider(fail_once={2})
    consumer = StreamConsumer(redis_client, _settings(stream_key), decider)
    consumer.join()
    bad = encode({"TRANSACTION_ID": 3, "TX_AMOUNT": -1})
    publish(redis_client, stream_key, [_tx(1), bad, _tx(2)], tps=1000.0, reply=reply)

    assert consumer.poll() == 2  # 1 decided, the bad one dead-lettered: both acknowledged
    pending = redis_client.xpending_range(stream_key, "g", min="-", max="+", count=10)
    assert len(pending) == 1  # transaction 2 failed: not acknowledged
    dead = read_all(redis_client, f"{stream_key}:dead")
    assert len(dead) == 1 and dead[0][1]["error"].startswith("bad payload")
    assert consumer.claim() == 0  # not idle long enough yet: nobody takes it

    time.sleep(0.3)
    assert consumer.claim() == 1
    assert redis_client.xpending(stream_key, "g")["pending"] == 0
    assert decider.decided == [1, 2]
    counts = consumer.counts
    assert (counts.decided, counts.failed, counts.dead, counts.claimed) == (2, 1, 1, 1)
    results = [r for _, r in read_all(redis_client, reply)]
    assert sorted(r["id"] for r in results if "decision" in r) == ["1", "2"]
    assert [r["error"] for r in results if "error" in r] == ["bad payload"]


def test_a_restarted_consumer_first_finishes_the_entries_it_had_read(redis_client, stream_key: str) -> None:
    ensure_group(redis_client, stream_key, "g")
    publish(redis_client, stream_key, [_tx(i) for i in range(5)], tps=1000.0)
    # the consumer reads, then dies before acknowledging anything
    redis_client.xreadgroup("g", "c1", {stream_key: ">"}, count=10)
    assert redis_client.xpending(stream_key, "g")["pending"] == 5

    decider = FlakyDecider()
    restarted = StreamConsumer(redis_client, _settings(stream_key), decider)
    assert restarted.join() == 5  # without waiting for the entries to go idle
    assert decider.decided == [0, 1, 2, 3, 4]
    assert redis_client.xpending(stream_key, "g")["pending"] == 0


def test_run_stops_when_asked_and_acknowledges_what_it_decided(redis_client, stream_key: str) -> None:
    decider = FlakyDecider()
    consumer = StreamConsumer(redis_client, _settings(stream_key), decider)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    try:
        publish(redis_client, stream_key, [_tx(i) for i in range(50)], tps=500.0)
        deadline = time.monotonic() + 30
        while len(decider.decided) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert decider.decided == list(range(50))
    assert redis_client.xpending(stream_key, "g")["pending"] == 0


class AwaitingDecider(FlakyDecider):
    """Decides on an event loop and awaits a 'commit' (as `ScoringService.decide_async` does
    over a SQLite log), noting how many decisions were waiting at once."""

    class audit:  # noqa: N801  (stands for the service's AuditLog)
        commits_in_background = True

    def __init__(self, fail_once: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(fail_once)
        self.waiting, self.peak = 0, 0

    def decide(self, tx):
        raise AssertionError("a concurrent-capable decider was called one entry at a time")

    async def decide_async(self, tx):
        import asyncio

        out = FlakyDecider.decide(self, tx)
        self.waiting += 1
        self.peak = max(self.peak, self.waiting)
        await asyncio.sleep(0.005)  # the commit
        self.waiting -= 1
        return out


def test_a_batch_decides_cards_concurrently_and_each_cards_entries_in_order(
    redis_client, stream_key: str
) -> None:
    ensure_group(redis_client, stream_key, "g")
    # 3 cards interleaved in the stream; id 4 fails once (left pending, then claimed and decided)
    bodies = [_tx(i, card=i % 3) for i in range(30)]
    publish(redis_client, stream_key, bodies, tps=5000.0)
    decider = AwaitingDecider(fail_once={4})
    consumer = StreamConsumer(redis_client, _settings(stream_key), decider)
    consumer.join()
    while consumer.poll():
        pass
    time.sleep(0.3)  # id 4 goes idle past claim_min_idle_ms
    consumer.claim()
    assert sorted(decider.decided) == list(range(30))
    for card in range(3):
        order = [i for i in decider.decided if i % 3 == card and i != 4]
        assert order == sorted(order), (card, order)  # a card's entries in stream order
    assert decider.peak > 1  # different cards waited on their commits together
    assert consumer.counts.decided == 30 and consumer.counts.failed == 1
    assert redis_client.xpending(stream_key, "g")["pending"] == 0


def _pending_of(client, key: str, group: str, consumer: str) -> list[str]:
    rows = client.xpending_range(key, group, min="-", max="+", count=10_000, consumername=consumer)
    return [r["message_id"] for r in rows]


def _kill_holding_entries(
    proc, client, key: str, group: str, name: str, timeout_s: float = 60.0
) -> list[str]:
    """SIGKILL `proc` at a moment it holds pending entries; returns the entries it left pending.

    It is frozen (SIGSTOP) until it is seen holding some, then killed; its pending list is read
    after its death, so an acknowledgement it had already sent cannot be mistaken for a loss.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        os.kill(proc.pid, signal.SIGSTOP)
        if _pending_of(client, key, group, name):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            time.sleep(0.1)  # commands it had sent before dying are applied by now
            return _pending_of(client, key, group, name)
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"{name} never held a pending entry")


@pytest.mark.slow
def test_a_killed_consumers_entries_are_claimed_and_every_decision_is_logged_once(
    scoring_run, redis_client, stream_key: str, tmp_path: Path
) -> None:
    from level4_fraud.serving.audit import AuditLog

    run_dir, history, replay = scoring_run
    group, reply = "scorers", f"{stream_key}:results"
    audit_url, hash_key = f"sqlite:///{tmp_path / 'audit.db'}", "stream-test-key"
    env = {
        **os.environ,
        "L4__STREAM__KEY": stream_key,
        "L4__STREAM__GROUP": group,
        "L4__STREAM__READ_COUNT": "8",
        "L4__STREAM__CLAIM_MIN_IDLE_MS": "1000",
        "L4__STREAM__CLAIM_EVERY_S": "0.2",
        "L4__SERVING__AUDIT_URL": audit_url,
        "L4__SERVING__AUDIT_HASH_KEY": hash_key,
        "L4__SERVING__HISTORY": str(history),
    }
    frame = load_replay(replay, limit=300)
    bodies = [encode(p) for p in payloads(frame)]
    tids = [int(t) for t in frame[schema.TRANSACTION_ID]]
    ensure_group(redis_client, stream_key, group)
    commands = {n: consumer_command(run_dir, REDIS_URL, n, "quick", None) for n in ("victim", "survivor")}
    procs = ConsumerProcesses(commands, tmp_path / "logs", env=env)
    published: dict[str, object] = {}
    try:
        procs.wait_joined(redis_client, stream_key, group, timeout_s=300)
        publisher = threading.Thread(
            target=lambda: published.update(
                p=publish(connect(REDIS_URL), stream_key, bodies, tps=100.0, reply=reply)
            )
        )
        publisher.start()
        deadline = time.monotonic() + 60
        while redis_client.xlen(reply) < 30 and time.monotonic() < deadline:  # mid-stream
            time.sleep(0.05)
        held = _kill_holding_entries(procs.procs["victim"], redis_client, stream_key, group, "victim")
        publisher.join(timeout=60)
        last_id = published["p"].last_id  # type: ignore[attr-defined]
        wait_drained(redis_client, stream_key, group, last_id, timeout_s=120, alive=procs.alive)
    finally:
        procs.stop()

    # nothing pending, nothing dead-lettered
    assert redis_client.xpending(stream_key, group)["pending"] == 0
    assert redis_client.xlen(f"{stream_key}:dead") == 0
    # every transaction in the audit log, exactly once
    with AuditLog.open(audit_url, hash_key.encode()) as audit:
        logged = audit.transaction_ids()
        assert audit.count() == len(tids)
        assert sorted(logged) == sorted(tids)
        results = [r for _, r in read_all(redis_client, reply)]
        # a replayed answer is the logged decision, never a second one
        for r in results:
            assert audit.get(int(r["id"])).decision == r["decision"]
    # the victim's pending entries at its death were decided by the survivor
    ids = published["p"].ids  # type: ignore[attr-defined]
    by_entry = {entry: tids[i] for i, entry in enumerate(ids)}
    held_tids = {by_entry[e] for e in held}
    assert held_tids  # it died holding some
    survivor_tids = {int(r["id"]) for r in results if r["consumer"] == "survivor"}
    assert held_tids <= survivor_tids
    assert "claimed" in (tmp_path / "logs" / "survivor.log").read_text()


@pytest.mark.slow
def test_stream_command_through_the_broker_decides_every_transaction(
    scoring_run, redis_client, stream_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from level4_fraud.cli import app
    from level4_fraud.serving.audit import AuditLog

    run_dir, history, replay = scoring_run
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    for name, value in {
        "L4__STREAM__KEY": stream_key,
        "L4__SERVING__AUDIT_URL": audit_url,
        "L4__SERVING__AUDIT_HASH_KEY": "cli-test-key",
        "L4__SERVING__HISTORY": str(history),
        "L4__ARTIFACTS_DIR": str(tmp_path / "artifacts"),  # the consumers' logs
    }.items():
        monkeypatch.setenv(name, value)
    args = ["stream", "--fdh-folder", str(replay), "--limit", "120", "--tps", "100"]
    args += ["--broker", REDIS_URL, "--consumers", "2", "--run", str(run_dir)]
    got = CliRunner().invoke(app, args)
    assert got.exit_code == 0, got.output
    figures = dict(
        line.split(None, 1) for line in got.output.splitlines() if line and not line.startswith(" ")
    )
    assert figures["decided"].strip() == "120" and figures["errors"].strip() == "0"
    with AuditLog.open(audit_url, b"cli-test-key") as audit:
        assert audit.count() == 120
    assert redis_client.xpending(stream_key, "scorers")["pending"] == 0
    # the consumers were stopped and left the group; the results stream was removed
    assert redis_client.xinfo_consumers(stream_key, "scorers") == []
    assert not list(redis_client.scan_iter(match=f"{stream_key}:results:*"))
