"""The audit log: round trip, idempotency, no clear card id on disk, one row per transaction
under concurrent threads and processes, every acknowledged record kept across a SIGKILL,
retention purge; the same contract on PostgreSQL (``services``)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from level4_fraud.serving.audit import AuditLog, AuditRecord
from shared.errors import ConfigError

KEY = b"audit-test-key"
ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgresql://127.0.0.1:5432/test"
CARD, TERMINAL = 987654321, 456789123  # distinctive: searched for in the database's bytes

# A writer process: appends ids [start, stop) and prints "id inserted model_version" for each
# record once append returned (= acknowledged), flushing every line.
WRITER = """
import sys
from datetime import datetime, timezone
from level4_fraud.serving.audit import AuditLog, AuditRecord
url, table, tag, start, stop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
log = AuditLog.open(url, b"audit-test-key", table=table)
for i in range(start, stop):
    rec = AuditRecord(i, log.keyed_hash(i % 97), log.keyed_hash(i % 13), datetime(2018, 4, 1), 10.0 + i,
                      "approve", 0.01, tag, "f" * 64, [], [], 1.0, datetime.now(timezone.utc))
    stored, inserted = log.append(rec)
    print(i, int(inserted), stored.model_version, flush=True)
log.close()
"""


def make(log: AuditLog, tid: int, **changes) -> AuditRecord:
    """A typical record of transaction `tid`."""
    values = {
        "transaction_id": tid,
        "card_hash": log.keyed_hash(CARD),
        "terminal_hash": log.keyed_hash(TERMINAL),
        "tx_datetime": datetime(2018, 5, 24, 13, 45, 12, 123456, tzinfo=UTC),
        "amount": 123.45,
        "decision": "review",
        "score": 0.4321,
        "model_version": "level4_fraud/3",
        "features_hash": "ab" * 32,
        "reasons": [{"feature": "TX_AMOUNT", "value": 123.45, "contribution": 0.21, "text": "high amount"}],
        "flags": ["grey_zone_ensemble"],
        "latency_ms": 3.25,
        "decided_at": datetime(2026, 12, 5, 12, 0, 0, 654321, tzinfo=UTC),
    }
    values.update(changes)
    return AuditRecord(**values)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


def _spawn(url: str, table: str, tag: str, start: int, stop: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", WRITER, url, table, tag, str(start), str(stop)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(out: str) -> list[tuple[int, bool, str]]:
    return [(int(a), b == "1", c) for a, b, c in (line.split() for line in out.splitlines() if line.strip())]


# ---------------------------------------------------------------------------------- contract
def test_round_trip_returns_every_field_as_appended_even_after_reopening(url) -> None:
    with AuditLog.open(url, KEY) as log:
        rec = make(log, 42)
        stored, inserted = log.append(rec)
        assert inserted and stored == rec
        # A naive time is UTC: it comes back aware, the same instant.
        naive = make(log, 43, tx_datetime=datetime(2018, 5, 24, 13, 45, 12, 123456))
        assert log.append(naive)[0].tx_datetime == rec.tx_datetime
        assert log.get(42) == rec and log.get(43).tx_datetime == rec.tx_datetime and log.get(44) is None
    with AuditLog.open(url, KEY) as log:
        again = log.get(42)
    assert again == rec
    assert again.reasons[0]["contribution"] == 0.21 and again.flags == ["grey_zone_ensemble"]


def test_second_append_returns_the_first_record_unchanged(url) -> None:
    with AuditLog.open(url, KEY) as log:
        first = make(log, 7, decision="approve", score=0.01, model_version="v1")
        retry = make(
            log, 7, decision="decline", score=0.99, model_version="v2", flags=["model_fallback_rules"]
        )
        assert log.append(first) == (first, True)
        stored, inserted = log.append(retry)
        assert not inserted and stored == first
        assert log.get(7) == first and log.count() == 1 and log.transaction_ids() == [7]


def test_no_clear_card_or_terminal_id_anywhere_in_the_database_files(tmp_path, url) -> None:
    with AuditLog.open(url, KEY) as log:
        for i in range(50):
            log.append(
                make(log, i, card_hash=log.keyed_hash(CARD + i), terminal_hash=log.keyed_hash(TERMINAL + i))
            )
        with pytest.raises(ValueError, match="keyed hash"):
            log.append(make(log, 999, card_hash=str(CARD)))  # a clear id is refused, not stored
        stored_hash = log.get(3).card_hash
        assert 999 not in log.transaction_ids()
    with AuditLog.open(f"sqlite:///{tmp_path / 'other.db'}", b"another key") as other:
        assert other.keyed_hash(CARD + 3) != stored_hash  # the hash depends on the secret key
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("audit.db"))
    assert stored_hash.encode() in blob  # the search below reads the real data
    for i in range(50):
        assert str(CARD + i).encode() not in blob and str(TERMINAL + i).encode() not in blob


def test_sqlite_log_runs_in_wal_mode_with_full_sync(url) -> None:
    with AuditLog.open(url, KEY) as log:
        log.append(make(log, 1))
        conn = log._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_bad_url_empty_key_or_table_name_is_a_config_error(tmp_path) -> None:
    for url in ("mysql://x/y", "sqlite:///:memory:", str(tmp_path / "a.db")):
        with pytest.raises(ConfigError, match="audit"):
            AuditLog.open(url, KEY)
    with pytest.raises(ConfigError, match="hash key"):
        AuditLog.open(f"sqlite:///{tmp_path / 'a.db'}", b"")
    with pytest.raises(ConfigError, match="table name"):
        AuditLog.open(f"sqlite:///{tmp_path / 'a.db'}", KEY, table="x; DROP TABLE y")


def test_purge_deletes_exactly_the_records_decided_before_the_cutoff(url) -> None:
    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    ages = {1: 2000, 2: 1826, 3: 1824, 4: 10, 5: 0}  # days before now
    with AuditLog.open(url, KEY) as log:
        for tid, days in ages.items():
            log.append(make(log, tid, decided_at=now - timedelta(days=days)))
        assert log.purge(now - timedelta(days=1825)) == 2
        assert log.transaction_ids() == [3, 4, 5]
        assert log.purge(now - timedelta(days=1825)) == 0
        # A naive cutoff is UTC, like every time the log stores.
        assert log.purge(datetime(2026, 12, 1, 12)) == 2 and log.transaction_ids() == [5]


# ---------------------------------------------------------------------------------- concurrency
def test_threads_appending_the_same_ids_store_exactly_one_row_each(url) -> None:
    n_threads, n_ids = 8, 150
    results: list[tuple[int, bool, str]] = []
    lock = threading.Lock()
    with AuditLog.open(url, KEY) as log:

        def work(k: int) -> None:
            for i in range(n_ids):
                stored, inserted = log.append(make(log, i, model_version=f"thread{k}"))
                with lock:
                    results.append((i, inserted, stored.model_version))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert log.count() == n_ids and log.transaction_ids() == list(range(n_ids))
        for i in range(n_ids):
            mine = [r for r in results if r[0] == i]
            winners = [r for r in mine if r[1]]
            assert len(mine) == n_threads and len(winners) == 1
            # Every thread got the winner's record back, and that is what the log holds.
            assert {r[2] for r in mine} == {winners[0][2]} == {log.get(i).model_version}


def _two_writers(url: str, table: str, n_ids: int) -> None:
    procs = [_spawn(url, table, f"proc{k}", 0, n_ids) for k in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [r for out, _ in outs for r in _lines(out)]
    with AuditLog.open(url, KEY, table=table) as log:
        assert log.count() == n_ids and log.transaction_ids() == list(range(n_ids))
        for i in range(n_ids):
            mine = [r for r in results if r[0] == i]
            winners = [r for r in mine if r[1]]
            assert len(mine) == 2 and len(winners) == 1
            assert {r[2] for r in mine} == {winners[0][2]} == {log.get(i).model_version}


def test_two_processes_appending_the_same_ids_store_exactly_one_row_each(url) -> None:
    AuditLog.open(url, KEY).close()  # the file exists: both writers race on inserts, not creation
    _two_writers(url, "audit_log", 300)


def test_a_sigkilled_writer_leaves_every_acknowledged_record_exactly_once(tmp_path, url) -> None:
    proc = _spawn(url, "audit_log", "killed", 0, 1_000_000)
    acknowledged: list[int] = []
    assert proc.stdout is not None
    while len(acknowledged) < 400:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "writer died"
        acknowledged.append(int(line.split()[0]))
    proc.send_signal(signal.SIGKILL)  # mid-stream: it keeps appending until the signal lands
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(tmp_path / "audit.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with AuditLog.open(url, KEY) as log:
        ids = log.transaction_ids()
        assert set(acknowledged) <= set(ids) and len(ids) == len(set(ids))
        assert ids == list(range(len(ids)))  # a prefix: nothing skipped, at most the unacknowledged tail
        before = {i: log.get(i) for i in acknowledged[:50]}
    # Restarted, the stream replays from the start: nothing is written twice, nothing changes.
    restart = _spawn(url, "audit_log", "restarted", 0, len(ids) + 5)
    out, err = restart.communicate(timeout=300)
    assert restart.returncode == 0, err[-2000:]
    replayed = _lines(out)
    assert not any(inserted for i, inserted, _ in replayed if i < len(ids))
    with AuditLog.open(url, KEY) as log:
        assert log.count() == len(ids) + 5
        assert all(log.get(i) == rec for i, rec in before.items())


# ---------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg_table():
    """A table of its own in the ``test`` database, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    table = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield table
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


@pytest.mark.services
def test_postgres_round_trip_idempotency_purge_and_no_clear_id(pg_table) -> None:
    import psycopg2

    now = datetime.now(UTC)
    with AuditLog.open(PG_URL, KEY, table=pg_table) as log:
        rec = make(log, 1, decided_at=now)
        assert log.append(rec) == (rec, True)
        assert log.append(make(log, 1, decision="decline")) == (rec, False)
        assert log.get(1) == rec
        log.append(make(log, 2, decided_at=now - timedelta(days=400)))
        assert log.count() == 2 and log.transaction_ids() == [1, 2]
        assert log.purge(now - timedelta(days=365)) == 1 and log.transaction_ids() == [1]
    conn = psycopg2.connect(PG_URL)
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {pg_table}")
        dump = repr(cur.fetchall())
    conn.close()
    assert log.keyed_hash(CARD) in dump and str(CARD) not in dump and str(TERMINAL) not in dump


@pytest.mark.services
def test_postgres_threads_and_two_processes_store_exactly_one_row_per_id(pg_table) -> None:
    with AuditLog.open(PG_URL, KEY, table=pg_table) as log:
        inserted = []
        lock = threading.Lock()

        def work() -> None:
            for i in range(1000, 1100):
                _, new = log.append(make(log, i))
                with lock:
                    inserted.append(new)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(inserted) == 100 and log.count() == 100
    with AuditLog.open(PG_URL, KEY, table=pg_table) as log:
        log.purge(datetime.now(UTC) + timedelta(days=1))
    _two_writers(PG_URL, pg_table, 200)


def test_a_closed_log_refuses_appends_instead_of_hanging(url) -> None:
    log = AuditLog.open(url, KEY)
    log.append(make(log, 1))
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.append(make(log, 2))
    with AuditLog.open(url, KEY) as again:
        assert again.transaction_ids() == [1]


def test_appends_awaited_on_one_event_loop_share_group_commits_and_stay_exactly_once(url) -> None:
    """`append_async` frees the loop while the writer commits: the appends queued meanwhile join
    the next transaction instead of one commit each; a twin id gets the first record back."""
    import asyncio
    import time

    log = AuditLog.open(url, b"k" * 32)
    committer = log._group_committer()
    commit = committer._commit

    def slow_commit(conn, batch):  # the first commit is still running when the rest arrive
        time.sleep(0.05)
        commit(conn, batch)

    committer._commit = slow_commit  # type: ignore[method-assign]

    async def burst():
        return await asyncio.gather(
            *(log.append_async(make(log, tid)) for tid in range(40)),
            log.append_async(make(log, 7, decision="decline")),
        )

    try:
        out = asyncio.run(burst())
        assert [new for _, new in out[:40]] == [True] * 40
        twin, new = out[40]
        assert not new and twin.decision == "review"  # the first record of id 7, unchanged
        assert log.count() == 40 and sorted(log.transaction_ids()) == list(range(40))
        assert committer.commits <= 3, committer.commits
    finally:
        log.close()
