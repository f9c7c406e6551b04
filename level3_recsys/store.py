"""Where the nightly batch puts its top-K lists: SQLite by default, Redis when a URL says so.

Both stores share one layout and one promise: a batch becomes visible all at
once, or not at all.

* SQLite (``sqlite:///path/to/recs.db``): each batch is written into its own
  table ``recs_<batch_id>`` inside one transaction; the pointer row in
  ``current_batch`` moves to it in that same transaction. A failure rolls
  everything back, so readers keep seeing yesterday's table.
* Redis (``redis://host:port/db``): each batch is one hash
  ``<prefix>:batch:<id>:recs`` (user -> JSON) written in pipelined chunks under
  a fresh key; the pointer ``<prefix>:current`` and the batch metadata switch
  in one ``MULTI``/``EXEC``. A failure deletes the half-written hash and never
  touches the pointer.

Every user's entry carries the batch's model name, model version and
generation time, so the serving layer (level 3b) can tell how fresh an answer
is.

A batch may also carry the model's **cold-start list** (what it answers for a user
it has never seen) with the set of users the model knows. The API then answers a
never-seen user from the batch (`get_cold_start`) instead of calling the model
service, while a known user without a list (not active lately) still goes to the
model. Both are written in the batch's transaction and pruned with it.

The previous batch is kept (``keep=2``) so a reader that fetched the old
pointer a moment before the switch still finds its table.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from shared.errors import ConfigError, DataError

REC_COLUMNS = ("user_id", "item_id", "rank", "score")


@dataclass(frozen=True)
class BatchInfo:
    """Metadata of one batch of recommendations.

    Attributes:
        batch_id: Unique id (UTC timestamp plus a random suffix); safe as a table name.
        model_name: Registered model name (or the recommender's name).
        model_version: Registry version of the model that produced the batch.
        generated_at: ISO-8601 UTC time the batch started.
        n_users: Users written.
        k: List length requested.
    """

    batch_id: str
    model_name: str
    model_version: str
    generated_at: str
    n_users: int
    k: int

    def age_seconds(self, now: datetime | None = None) -> float:
        """Seconds since the batch was generated (freshness)."""
        now = now or datetime.now(UTC)
        return (now - datetime.fromisoformat(self.generated_at)).total_seconds()


@dataclass(frozen=True)
class UserRecs:
    """One user's stored list with the metadata of the batch it came from."""

    user_id: str
    item_ids: list[Any]
    scores: list[float]
    batch: BatchInfo


@dataclass(frozen=True)
class ColdStart:
    """The model's answer for users it has never seen, and the users it has.

    Attributes:
        item_ids: The cold-start ranking, best first (at least the batch's k items).
        scores: Their scores.
        known_users: Every user the model was trained on (a user outside this set is cold).
    """

    item_ids: Sequence[Any]
    scores: Sequence[float]
    known_users: Iterable[Any]

    def payload(self) -> str:
        """The list in the stored JSON layout of one user's entry."""
        if len(self.item_ids) != len(self.scores):
            raise DataError(f"cold-start list has {len(self.item_ids)} items but {len(self.scores)} scores")
        items = np.asarray(self.item_ids).tolist()
        return json.dumps({"items": items, "scores": np.round(np.asarray(self.scores, float), 6).tolist()})


class RecStore(Protocol):
    """What the batch writes to and the serving layer reads from."""

    def write_batch(
        self,
        chunks: Iterable[pd.DataFrame],
        *,
        model_name: str,
        model_version: str,
        k: int,
        generated_at: datetime | None = None,
        cold_start: ColdStart | None = None,
    ) -> BatchInfo: ...

    def current(self) -> BatchInfo | None: ...

    def get(self, user_id: Any) -> UserRecs | None: ...

    def get_cold_start(self, user_id: Any) -> UserRecs | None: ...

    def read_all(self) -> pd.DataFrame: ...

    def history(self) -> list[BatchInfo]: ...

    def close(self) -> None: ...


def new_batch_id(now: datetime) -> str:
    """A sortable, table-name-safe batch id."""
    return f"{now:%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:8]}"


def pack_chunk(chunk: pd.DataFrame) -> Iterator[tuple[str, str]]:
    """Turn long rows (user_id, item_id, rank, score) into (user_key, JSON payload) per user.

    Sorting once and splitting at user boundaries keeps this to one pass of
    numpy work plus one JSON dump per user.
    """
    missing = [c for c in REC_COLUMNS if c not in chunk.columns]
    if missing:
        raise DataError(f"recommendations lack columns {missing}; expected {list(REC_COLUMNS)}")
    if chunk.empty:
        return
    ordered = chunk.sort_values(["user_id", "rank"], kind="stable")
    users = ordered["user_id"].to_numpy()
    items = ordered["item_id"].to_numpy()
    scores = ordered["score"].to_numpy(dtype=float)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    item_list = items.tolist()
    score_list = np.round(scores, 6).tolist()
    user_list = users.tolist()
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        yield str(user_list[s]), json.dumps({"items": item_list[s:e], "scores": score_list[s:e]})


def _unpack(user_key: str, payload: str, batch: BatchInfo) -> UserRecs:
    data = json.loads(payload)
    return UserRecs(user_key, data["items"], data["scores"], batch)


def _long_frame(rows: Iterable[tuple[str, str]]) -> pd.DataFrame:
    records = []
    for user_key, payload in rows:
        data = json.loads(payload)
        for rank, (item, score) in enumerate(zip(data["items"], data["scores"], strict=True), start=1):
            records.append((user_key, item, rank, score))
    return pd.DataFrame(records, columns=list(REC_COLUMNS))


class SQLiteStore:
    """Recommendation store in one SQLite file (WAL mode: readers never block the writer).

    Args:
        path: Database file; created with its folder when missing.
        keep: Batches kept (the live one and the ones before it).
    """

    def __init__(self, path: str | Path, *, keep: int = 2) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep = max(1, keep)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is one explicit transaction.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS batches (
                batch_id TEXT PRIMARY KEY, model_name TEXT, model_version TEXT,
                generated_at TEXT, n_users INTEGER, k INTEGER, status TEXT);
            CREATE TABLE IF NOT EXISTS current_batch (
                id INTEGER PRIMARY KEY CHECK (id = 1), batch_id TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS cold_start (batch_id TEXT PRIMARY KEY, payload TEXT NOT NULL);
            """
        )

    def write_batch(
        self,
        chunks: Iterable[pd.DataFrame],
        *,
        model_name: str,
        model_version: str,
        k: int,
        generated_at: datetime | None = None,
        cold_start: ColdStart | None = None,
    ) -> BatchInfo:
        """Write every chunk to a new table and switch the pointer to it, all in one transaction.

        Args:
            chunks: DataFrames with user_id, item_id, rank, score (a generator is fine:
                an exception it raises aborts the batch).
            model_name: Registered model name.
            model_version: Registry version.
            k: List length.
            generated_at: Batch time (now, UTC, by default).
            cold_start: The model's list for never-seen users and the users it knows
                (None: never-seen users are left to the model service).

        Returns:
            The new live batch's metadata.

        Raises:
            Whatever a chunk raises; the store is then exactly as before the call.
        """
        now = generated_at or datetime.now(UTC)
        batch_id = new_batch_id(now)
        table = f"recs_{batch_id}"
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f'CREATE TABLE "{table}" (user_key TEXT PRIMARY KEY, payload TEXT NOT NULL)')
            n_users = 0
            for chunk in chunks:
                rows = list(pack_chunk(chunk))
                conn.executemany(f'INSERT OR REPLACE INTO "{table}" VALUES (?, ?)', rows)
                n_users += len(rows)
            if cold_start is not None:
                payload = cold_start.payload()
                known = f"known_{batch_id}"
                conn.execute(f'CREATE TABLE "{known}" (user_key TEXT PRIMARY KEY) WITHOUT ROWID')
                conn.executemany(
                    f'INSERT OR IGNORE INTO "{known}" VALUES (?)', ((str(u),) for u in cold_start.known_users)
                )
                conn.execute("INSERT INTO cold_start VALUES (?, ?)", (batch_id, payload))
            info = BatchInfo(batch_id, model_name, str(model_version), now.isoformat(), n_users, int(k))
            conn.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, 'live')",
                (info.batch_id, info.model_name, info.model_version, info.generated_at, n_users, info.k),
            )
            conn.execute(
                "INSERT INTO current_batch (id, batch_id) VALUES (1, ?) "
                "ON CONFLICT(id) DO UPDATE SET batch_id = excluded.batch_id",
                (batch_id,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._prune()
        return info

    def _prune(self) -> None:
        live = [b.batch_id for b in self.history()]
        for old in live[self.keep :]:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(f'DROP TABLE IF EXISTS "recs_{old}"')
            self._conn.execute(f'DROP TABLE IF EXISTS "known_{old}"')
            self._conn.execute("DELETE FROM cold_start WHERE batch_id = ?", (old,))
            self._conn.execute("UPDATE batches SET status = 'expired' WHERE batch_id = ?", (old,))
            self._conn.execute("COMMIT")

    def history(self) -> list[BatchInfo]:
        """Batches whose table still exists, newest first."""
        rows = self._conn.execute(
            "SELECT batch_id, model_name, model_version, generated_at, n_users, k FROM batches "
            "WHERE status = 'live' ORDER BY generated_at DESC, batch_id DESC"
        ).fetchall()
        return [BatchInfo(*row) for row in rows]

    def current(self) -> BatchInfo | None:
        """The live batch, or None before the first successful batch."""
        row = self._conn.execute(
            "SELECT b.batch_id, b.model_name, b.model_version, b.generated_at, b.n_users, b.k "
            "FROM current_batch c JOIN batches b ON b.batch_id = c.batch_id"
        ).fetchone()
        return BatchInfo(*row) if row else None

    def get(self, user_id: Any) -> UserRecs | None:
        """A user's list from the live batch (None when the user or the batch is absent)."""
        batch = self.current()
        if batch is None:
            return None
        row = self._conn.execute(
            f'SELECT payload FROM "recs_{batch.batch_id}" WHERE user_key = ?', (str(user_id),)
        ).fetchone()
        return _unpack(str(user_id), row[0], batch) if row else None

    def get_cold_start(self, user_id: Any) -> UserRecs | None:
        """The live batch's cold-start list for a user its model has never seen.

        None when the batch has no cold-start list or the model knows the user (a known user
        without a list of their own is the model service's to score).
        """
        batch = self.current()
        if batch is None:
            return None
        row = self._conn.execute("SELECT payload FROM cold_start WHERE batch_id = ?", (batch.batch_id,))
        found = row.fetchone()
        if found is None:
            return None
        key = str(user_id)
        known = self._conn.execute(
            f'SELECT 1 FROM "known_{batch.batch_id}" WHERE user_key = ?', (key,)
        ).fetchone()
        return None if known else _unpack(key, found[0], batch)

    def read_all(self) -> pd.DataFrame:
        """The live batch as long rows (user_id as stored text, item_id, rank, score)."""
        batch = self.current()
        if batch is None:
            return pd.DataFrame(columns=list(REC_COLUMNS))
        rows = self._conn.execute(f'SELECT user_key, payload FROM "recs_{batch.batch_id}"').fetchall()
        return _long_frame(rows)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class RedisStore:
    """Recommendation store in Redis: one hash per batch and an atomically switched pointer.

    Args:
        client: A ``redis.Redis`` client.
        prefix: Key namespace (tests use a unique one and delete it afterwards).
        keep: Batches kept.
        chunk_size: Users per pipelined ``HSET``.
    """

    def __init__(
        self, client: Any, *, prefix: str = "l3:recs", keep: int = 2, chunk_size: int = 5000
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.keep = max(1, keep)
        self.chunk_size = chunk_size

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def write_batch(
        self,
        chunks: Iterable[pd.DataFrame],
        *,
        model_name: str,
        model_version: str,
        k: int,
        generated_at: datetime | None = None,
        cold_start: ColdStart | None = None,
    ) -> BatchInfo:
        """Write the batch under a fresh hash, then switch the pointer in one MULTI/EXEC.

        See `SQLiteStore.write_batch` for the arguments; on any exception the
        half-written hash is deleted and the live batch is untouched.
        """
        now = generated_at or datetime.now(UTC)
        batch_id = new_batch_id(now)
        recs_key = self._key("batch", batch_id, "recs")
        known_key = self._key("batch", batch_id, "known")
        n_users = 0
        try:
            for chunk in chunks:
                rows = dict(pack_chunk(chunk))
                items = list(rows.items())
                for start in range(0, len(items), self.chunk_size):
                    self.client.hset(recs_key, mapping=dict(items[start : start + self.chunk_size]))
                n_users += len(rows)
            meta: dict[str, str] = {}
            if cold_start is not None:
                meta["cold_start"] = cold_start.payload()
                known = [str(u) for u in cold_start.known_users]
                for start in range(0, len(known), self.chunk_size):
                    self.client.sadd(known_key, *known[start : start + self.chunk_size])
            info = BatchInfo(batch_id, model_name, str(model_version), now.isoformat(), n_users, int(k))
            pipe = self.client.pipeline(transaction=True)
            meta["json"] = json.dumps(asdict(info))
            pipe.hset(self._key("batch", batch_id, "meta"), mapping=meta)
            pipe.zadd(self._key("batches"), {batch_id: now.timestamp()})
            pipe.set(self._key("current"), batch_id)
            pipe.execute()
        except BaseException:
            self.client.delete(recs_key, known_key)
            raise
        self._prune()
        return info

    def _prune(self) -> None:
        ids = [_text(b) for b in self.client.zrevrange(self._key("batches"), 0, -1)]
        for old in ids[self.keep :]:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(*(self._key("batch", old, part) for part in ("recs", "meta", "known")))
            pipe.zrem(self._key("batches"), old)
            pipe.execute()

    def _info(self, batch_id: str) -> BatchInfo | None:
        raw = self.client.hget(self._key("batch", batch_id, "meta"), "json")
        return BatchInfo(**json.loads(_text(raw))) if raw else None

    def history(self) -> list[BatchInfo]:
        """Kept batches, newest first."""
        ids = [_text(b) for b in self.client.zrevrange(self._key("batches"), 0, -1)]
        return [info for b in ids if (info := self._info(b)) is not None]

    def current(self) -> BatchInfo | None:
        """The live batch, or None before the first successful batch."""
        raw = self.client.get(self._key("current"))
        return self._info(_text(raw)) if raw else None

    def get(self, user_id: Any) -> UserRecs | None:
        """A user's list from the live batch (None when the user or the batch is absent)."""
        batch = self.current()
        if batch is None:
            return None
        raw = self.client.hget(self._key("batch", batch.batch_id, "recs"), str(user_id))
        return _unpack(str(user_id), _text(raw), batch) if raw else None

    def get_cold_start(self, user_id: Any) -> UserRecs | None:
        """The live batch's cold-start list for a never-seen user (see `SQLiteStore.get_cold_start`)."""
        batch = self.current()
        if batch is None:
            return None
        raw = self.client.hget(self._key("batch", batch.batch_id, "meta"), "cold_start")
        if not raw:
            return None
        key = str(user_id)
        if self.client.sismember(self._key("batch", batch.batch_id, "known"), key):
            return None
        return _unpack(key, _text(raw), batch)

    def read_all(self) -> pd.DataFrame:
        """The live batch as long rows."""
        batch = self.current()
        if batch is None:
            return pd.DataFrame(columns=list(REC_COLUMNS))
        rows = self.client.hscan_iter(self._key("batch", batch.batch_id, "recs"), count=5000)
        return _long_frame((_text(k), _text(v)) for k, v in rows)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_store(url: str, *, keep: int = 2) -> RecStore:
    """Open the store a URL names.

    Args:
        url: ``sqlite:///relative/or//absolute/path.db`` or
            ``redis://host:port/db?prefix=name`` (prefix defaults to ``l3:recs``).
        keep: Batches kept.

    Raises:
        ConfigError: Unknown scheme or a malformed prefix.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"store URL {url!r} must look like sqlite:///path/to/recs.db")
        return SQLiteStore(path, keep=keep)
    if parsed.scheme in {"redis", "rediss"}:
        import redis

        query = parse_qs(parsed.query)
        prefix = query.pop("prefix", ["l3:recs"])[0]
        if not re.fullmatch(r"[A-Za-z0-9_:.-]+", prefix):
            raise ConfigError(f"store prefix {prefix!r} may hold only letters, digits and _:.-")
        base = parsed._replace(query="").geturl()
        return RedisStore(redis.Redis.from_url(base), prefix=prefix, keep=keep)
    raise ConfigError(f"unsupported store URL {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB")
