"""The decision audit log: every decision, once, durable before it is acknowledged.

A bank must be able to say, for any transaction, what was decided, by which model, on which
inputs and why. `AuditLog` appends one `AuditRecord` per ``transaction_id``:

* **Durable before it returns.** SQLite runs in WAL mode with ``synchronous=FULL`` (the commit is
  fsynced, so it survives a SIGKILL and a power cut); PostgreSQL commits every insert
  (``synchronous_commit`` on, the server's default). A caller that acknowledges a decision only
  after `AuditLog.append` returned never loses an acknowledged decision.
* **Idempotent.** ``INSERT ... ON CONFLICT (transaction_id) DO NOTHING`` then a read back: a retry
  (or a second scorer racing on the same transaction) gets the first record, unchanged.
* **No card number in clear.** Card and terminal ids go in as keyed hashes
  (HMAC-SHA256, `AuditLog.keyed_hash`); `append` refuses a record whose hashes are not 64 hex
  digits, so a clear id cannot slip in by mistake.
* **Threads and processes.** One connection per thread (and per process after a fork) for
  reads. SQLite appends go through one writer thread per process that **group-commits**: the
  appends waiting while a commit is fsynced go into the next transaction together, each caller
  returning once its own transaction is committed (one fsync per commit caps a writer at a few
  hundred commits a second on a busy disk; batching keeps ``synchronous=FULL`` at the load the
  service needs). Processes share the file through SQLite's lock (``busy_timeout``); PostgreSQL
  settles races with the primary key and group-commits on its own.

URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``postgresql://...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

DEFAULT_TABLE = "audit_log"
BUSY_TIMEOUT_MS = 30_000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Fixed-width UTC text: SQLite compares these strings in time order (purge relies on it).
_SQLITE_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class AuditRecord:
    """One decision as the audit log keeps it.

    Attributes:
        transaction_id: The transaction (the log's key: one record per id).
        card_hash: Keyed hash of the card (customer) id, never the id itself.
        terminal_hash: Keyed hash of the terminal id.
        tx_datetime: When the transaction happened (naive means UTC).
        amount: Its amount.
        decision: ``approve``, ``review`` or ``decline``.
        score: The fraud score the decision came from.
        model_version: Which model decided.
        features_hash: Hash of the feature vector the model saw (to prove what it was given).
        reasons: Reason codes, as JSON-ready dicts.
        flags: Fallbacks and other conditions of the decision.
        latency_ms: Time to decide.
        decided_at: When it was decided (UTC).
    """

    transaction_id: int
    card_hash: str
    terminal_hash: str
    tx_datetime: datetime
    amount: float
    decision: str
    score: float
    model_version: str
    features_hash: str
    reasons: list[dict[str, Any]]
    flags: list[str]
    latency_ms: float
    decided_at: datetime


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditRecord))


def utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalise(record: AuditRecord) -> AuditRecord:
    """The record as the log stores and returns it: UTC datetimes, plain Python types.

    Raises:
        ValueError: A hash is not 64 lowercase hex digits (a clear id must never be stored) or
            the transaction id is negative.
    """
    for name in ("card_hash", "terminal_hash"):
        if not _HEX64.fullmatch(getattr(record, name)):
            raise ValueError(f"{name} must be a keyed hash (64 hex digits), not a clear id")
    if int(record.transaction_id) < 0:
        raise ValueError("transaction_id must be >= 0")
    return replace(
        record,
        transaction_id=int(record.transaction_id),
        tx_datetime=utc(record.tx_datetime),
        decided_at=utc(record.decided_at),
        amount=float(record.amount),
        score=float(record.score),
        latency_ms=float(record.latency_ms),
        reasons=[dict(r) for r in record.reasons],
        flags=[str(f) for f in record.flags],
    )


def _create_table(table: str, *, key: str, time: str, real: str) -> str:
    types = {"transaction_id": f"{key} PRIMARY KEY", "tx_datetime": time, "decided_at": time}
    types |= dict.fromkeys(("amount", "score", "latency_ms"), real)
    not_null = {c: "" if c == "transaction_id" else " NOT NULL" for c in COLUMNS}
    cols = ", ".join(f"{c} {types.get(c, 'TEXT')}{not_null[c]}" for c in COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols})"


class _Dialect:
    """What differs between SQLite and PostgreSQL: connecting, placeholders, time values."""

    mark = "?"

    def connect(self) -> Any:
        raise NotImplementedError

    def create_schema(self, conn: Any, table: str) -> None:
        raise NotImplementedError

    def time_in(self, value: datetime) -> Any:
        return value

    def time_out(self, value: Any) -> datetime:
        return utc(value)


class _SQLite(_Dialect):
    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        # Autocommit (isolation_level=None): each statement is its own committed transaction.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise ConfigError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode})")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def create_schema(self, conn: sqlite3.Connection, table: str) -> None:
        conn.execute(_create_table(table, key="INTEGER", time="TEXT", real="REAL"))
        conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_decided_at ON {table} (decided_at)")

    def time_in(self, value: datetime) -> str:
        return utc(value).strftime(_SQLITE_TIME)

    def time_out(self, value: Any) -> datetime:
        return datetime.strptime(value, _SQLITE_TIME).replace(tzinfo=UTC)


class _Postgres(_Dialect):
    mark = "%s"

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        import psycopg2

        try:
            conn = psycopg2.connect(self.url)
        except psycopg2.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot connect to the audit database: {first}") from None
        conn.autocommit = True  # every insert commits (durable) before append returns
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
        return conn

    def create_schema(self, conn: Any, table: str) -> None:
        # CREATE TABLE IF NOT EXISTS races between processes in PostgreSQL (a unique violation on
        # pg_type): an advisory lock per table name makes the first opener create it alone.
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"audit:{table}",))
                cur.execute(_create_table(table, key="BIGINT", time="TIMESTAMPTZ", real="DOUBLE PRECISION"))
                cur.execute(f"CREATE INDEX IF NOT EXISTS {table}_decided_at ON {table} (decided_at)")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.autocommit = True


def _dialect(url: str) -> _Dialect:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise ConfigError(f"{url}: the audit log needs a file (sqlite:///path/to/audit.db)")
        return _SQLite(Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    raise ConfigError(f"{url!r}: unsupported audit log URL (sqlite:///PATH or postgresql://...)")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Pending:
    """One append waiting for the writer thread."""

    __slots__ = ("done", "error", "inserted", "notify", "row", "stored")

    def __init__(self, row: tuple[Any, ...], notify: Callable[[], None] | None = None) -> None:
        self.row = row
        self.done = threading.Event()
        self.notify = notify  # called by the writer thread once `done` is set
        self.inserted = False
        self.stored: tuple[Any, ...] | None = None
        self.error: BaseException | None = None


class _GroupCommitter:
    """The SQLite writer of one process: batches concurrent appends into one committed transaction."""

    MAX_BATCH = 256

    def __init__(self, dialect: _SQLite, insert: str, select: str) -> None:
        self._dialect, self._insert, self._select = dialect, insert, select
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self.commits = 0  # transactions committed (each holds one or more appends)
        self._thread = threading.Thread(target=self._loop, name="audit-writer", daemon=True)
        self._thread.start()

    def enqueue(self, row: tuple[Any, ...], notify: Callable[[], None] | None = None) -> _Pending:
        """Queue `row` without waiting; `notify` is called from the writer thread when it is done."""
        if not self._thread.is_alive():
            raise RuntimeError("the audit writer has stopped")
        pending = _Pending(row, notify)
        self._queue.put(pending)
        return pending

    def submit(self, row: tuple[Any, ...]) -> _Pending:
        """Queue `row` and wait until its transaction is committed (or failed)."""
        pending = self.enqueue(row)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        try:
            conn = self._dialect.connect()
        except Exception as exc:  # answer every append with the error rather than leave it waiting
            while (p := self._queue.get()) is not None:
                p.error = exc
                p.done.set()
            return
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < self.MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    batch.append(nxt)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for p in batch:
                    p.inserted = conn.execute(self._insert, p.row).rowcount == 1
                    if not p.inserted:  # logged before (or earlier in this batch): read it back
                        p.stored = conn.execute(self._select, (p.row[0],)).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # every caller of the batch learns that nothing was stored
            for p in batch:
                p.inserted, p.stored, p.error = False, None, exc
        self.commits += 1
        for p in batch:
            p.done.set()
            if p.notify is not None:
                with contextlib.suppress(Exception):  # a waiter's event loop that has closed
                    p.notify()


class AuditLog:
    """Append-only (but for retention) log of decisions; see the module docstring.

    Open it with `AuditLog.open`; use it from any number of threads; `close` it once.
    """

    def __init__(self, dialect: _Dialect, hash_key: bytes, table: str = DEFAULT_TABLE) -> None:
        if not hash_key:
            raise ConfigError("the audit log needs a non-empty hash key (card ids are stored hashed)")
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigError(f"{table!r}: not a valid audit table name")
        self._dialect = dialect
        self._key = bytes(hash_key)
        self._table = table
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._closed = False
        self._dialect.create_schema(self._conn(), table)
        cols = ", ".join(COLUMNS)
        marks = ", ".join([dialect.mark] * len(COLUMNS))
        self._insert = (
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT (transaction_id) DO NOTHING"
        )
        self._select = f"SELECT {cols} FROM {table} WHERE transaction_id = {dialect.mark}"
        self._writer: tuple[int, _GroupCommitter] | None = None

    @classmethod
    def open(cls, url: str, hash_key: bytes, *, table: str = DEFAULT_TABLE) -> AuditLog:
        """Open (creating if needed) the audit log at `url`.

        Args:
            url: ``sqlite:///path`` (WAL, synchronous=FULL) or ``postgresql://...``.
            hash_key: Secret key of the card and terminal hashes.
            table: Table name (one log per table; tests use their own).

        Raises:
            ConfigError: Unsupported URL, empty key, bad table name, unreachable database.
        """
        dialect = _dialect(url)
        if isinstance(dialect, _SQLite):
            dialect.path.parent.mkdir(parents=True, exist_ok=True)
        return cls(dialect, hash_key, table)

    # ------------------------------------------------------------------ connections
    def _conn(self) -> Any:
        if self._closed:
            raise RuntimeError("the audit log is closed")
        # A connection belongs to one thread of one process: a forked child opens its own.
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        conn = self._dialect.connect()
        self._local.held = (os.getpid(), conn)
        with self._lock:
            self._connections.append(conn)
        return conn

    def _group_committer(self) -> _GroupCommitter:
        with self._lock:
            if self._closed:
                raise RuntimeError("the audit log is closed")
            # The writer thread belongs to the process that started it: a forked child starts its own.
            if self._writer is None or self._writer[0] != os.getpid():
                assert isinstance(self._dialect, _SQLite)
                self._writer = (os.getpid(), _GroupCommitter(self._dialect, self._insert, self._select))
            return self._writer[1]

    def _drop_conn(self) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            with self._lock:
                if held[1] in self._connections:
                    self._connections.remove(held[1])
            with contextlib.suppress(Exception):
                held[1].close()

    def _run(self, sql: str, params: tuple[Any, ...] = (), *, fetch: bool = False) -> tuple[int, list[Any]]:
        """Execute one statement (committed on return); ``(rowcount, rows if fetch)``."""
        if isinstance(self._dialect, _SQLite):
            cur = self._conn().execute(sql, params)
            return cur.rowcount, cur.fetchall() if fetch else []
        import psycopg2

        for attempt in (1, 2):
            try:
                with self._conn().cursor() as cur:
                    cur.execute(sql, params)
                    return cur.rowcount, cur.fetchall() if fetch else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                # A dropped connection (server restart, failover): reconnect once. Every statement
                # here is safe to repeat: an insert that did commit is found by ON CONFLICT.
                self._drop_conn()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ the interface
    def keyed_hash(self, value: int | str) -> str:
        """HMAC-SHA256 (hex) of an id with the log's key: ``5`` and ``"5"`` hash alike."""
        return hmac.new(self._key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()

    def append(self, record: AuditRecord) -> tuple[AuditRecord, bool]:
        """Store `record` unless its transaction is already logged; durable when it returns.

        Returns:
            ``(record, True)`` when stored now (datetimes as UTC), else ``(the stored record, False)``,
            unchanged.

        Raises:
            ValueError: A hash is not a keyed hash, or the id is negative.
        """
        record = normalise(record)
        row = self._row_of(record)
        if isinstance(self._dialect, _SQLite):
            return self._outcome(record, self._group_committer().submit(row))
        while True:
            inserted, _ = self._run(self._insert, row)
            if inserted == 1:
                return record, True
            stored = self.get(record.transaction_id)
            if stored is not None:
                return stored, False
            # Purged between the insert and the read: insert again.

    @property
    def commits_in_background(self) -> bool:
        """Whether appends are committed by this process's writer thread (SQLite), so that an
        event loop can await them (`append_async`) instead of blocking a thread on them."""
        return isinstance(self._dialect, _SQLite)

    async def append_async(self, record: AuditRecord) -> tuple[AuditRecord, bool]:
        """`append` for code on an event loop: durable when it returns, like `append`.

        With SQLite the loop is free while the writer thread commits (other requests' appends
        join the same transaction); with PostgreSQL `append` runs in a worker thread.
        """
        if not isinstance(self._dialect, _SQLite):
            return await asyncio.to_thread(self.append, record)
        record = normalise(record)
        row = self._row_of(record)
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(_resolve, committed)

        pending = self._group_committer().enqueue(row, wake)
        await committed
        return self._outcome(record, pending)

    def _outcome(self, record: AuditRecord, done: _Pending) -> tuple[AuditRecord, bool]:
        if done.error is not None:
            raise done.error
        if done.inserted:
            return record, True
        assert done.stored is not None
        return self._record_of(done.stored), False

    def get(self, transaction_id: int) -> AuditRecord | None:
        """The stored record of a transaction, or None."""
        _, rows = self._run(self._select, (int(transaction_id),), fetch=True)
        return self._record_of(rows[0]) if rows else None

    def count(self) -> int:
        """Number of records."""
        return int(self._run(f"SELECT COUNT(*) FROM {self._table}", fetch=True)[1][0][0])

    def transaction_ids(self) -> list[int]:
        """Every logged transaction id, ascending."""
        _, rows = self._run(f"SELECT transaction_id FROM {self._table} ORDER BY transaction_id", fetch=True)
        return [int(r[0]) for r in rows]

    def purge(self, older_than: datetime) -> int:
        """Retention: delete the records decided before `older_than` (naive = UTC).

        Returns:
            How many were deleted.
        """
        sql = f"DELETE FROM {self._table} WHERE decided_at < {self._dialect.mark}"
        return int(self._run(sql, (self._dialect.time_in(utc(older_than)),))[0])

    def close(self) -> None:
        """Close every connection this log opened (in this process)."""
        with self._lock:
            self._closed = True
            conns, self._connections = self._connections, []
            writer, self._writer = self._writer, None
        if writer is not None and writer[0] == os.getpid():
            writer[1].stop()
        for conn in conns:
            # A connection of another thread may already be gone.
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ rows
    def _row_of(self, r: AuditRecord) -> tuple[Any, ...]:
        t = self._dialect.time_in
        return (
            r.transaction_id,
            r.card_hash,
            r.terminal_hash,
            t(r.tx_datetime),
            r.amount,
            r.decision,
            r.score,
            r.model_version,
            r.features_hash,
            json.dumps(r.reasons, sort_keys=True),
            json.dumps(r.flags),
            r.latency_ms,
            t(r.decided_at),
        )

    def _record_of(self, row: tuple[Any, ...]) -> AuditRecord:
        v = dict(zip(COLUMNS, row, strict=True))
        return AuditRecord(
            transaction_id=int(v["transaction_id"]),
            card_hash=v["card_hash"],
            terminal_hash=v["terminal_hash"],
            tx_datetime=self._dialect.time_out(v["tx_datetime"]),
            amount=float(v["amount"]),
            decision=v["decision"],
            score=float(v["score"]),
            model_version=v["model_version"],
            features_hash=v["features_hash"],
            reasons=json.loads(v["reasons"]),
            flags=json.loads(v["flags"]),
            latency_ms=float(v["latency_ms"]),
            decided_at=self._dialect.time_out(v["decided_at"]),
        )
