"""Publish transactions to a Redis Stream at a paced rate, and follow the consumer group.

Each entry holds the request body (``tx``), its scheduled send time (``ts``, epoch seconds, for
end-to-end latency) and optionally a results stream (``reply``) where consumers add one entry
per decision, so the publisher can measure what the group did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from level4_fraud.stream.pacing import paced_batches
from level4_fraud.stream.stats import ReplayStats
from shared.errors import UserError

FIELD_TX = "tx"
FIELD_SENT = "ts"
FIELD_REPLY = "reply"


class BrokerError(UserError):
    """The broker cannot be reached, or the consumer group did not finish."""


def connect(url: str) -> Any:
    """A Redis client (strings decoded) on `url`, checked with PING.

    Raises:
        BrokerError: Redis does not answer.
    """
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise BrokerError(f"no Redis at {url} ({type(exc).__name__}: {exc})") from None
    return client


def ensure_group(client: Any, key: str, group: str) -> bool:
    """Create the consumer group (and the stream) unless it exists; True when created.

    The group starts at the stream's beginning, so entries published before any consumer
    started are read too.
    """
    import redis

    try:
        client.xgroup_create(key, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a comparable tuple."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Published:
    """What `publish` did: entry ids, when the schedule started, how late it ran."""

    ids: list[str]
    start_wall: float
    max_lag_ms: float

    @property
    def last_id(self) -> str:
        return self.ids[-1]


def publish(
    client: Any,
    key: str,
    bodies: Sequence[bytes | str],
    *,
    tps: float,
    maxlen: int | None = None,
    reply: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Published:
    """``XADD`` every body to `key` at `tps`; entries already due go out in one round trip.

    Args:
        client: Redis client.
        key: The stream.
        bodies: JSON request bodies, in replay order.
        tps: Rate.
        maxlen: Approximate cap on the stream's length (None: no trimming).
        reply: Results stream named in each entry (None: consumers write no results).
        clock: Monotonic clock.
        sleep: Sleeps the given seconds.
    """
    start = clock()
    start_wall = time.time()
    ids: list[str] = []
    max_lag = 0.0
    for lo, hi, lag in paced_batches(len(bodies), tps, clock=clock, sleep=sleep, start=start):
        max_lag = max(max_lag, lag)
        pipe = client.pipeline(transaction=False)
        for i in range(lo, hi):
            fields = {FIELD_TX: bodies[i], FIELD_SENT: f"{start_wall + i / tps:.6f}"}
            if reply:
                fields[FIELD_REPLY] = reply
            pipe.xadd(key, fields, maxlen=maxlen, approximate=True)
        ids.extend(pipe.execute())
    return Published(ids=ids, start_wall=start_wall, max_lag_ms=max_lag * 1000.0)


def group_info(client: Any, key: str, group: str) -> dict[str, Any] | None:
    """The group's ``XINFO GROUPS`` entry (None when the group or the stream is missing)."""
    import redis

    try:
        groups = client.xinfo_groups(key)
    except redis.exceptions.ResponseError:
        return None
    return next((g for g in groups if g["name"] == group), None)


def wait_drained(
    client: Any,
    key: str,
    group: str,
    last_id: str,
    *,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    poll_s: float = 0.05,
) -> None:
    """Wait until the group has read past `last_id` and acknowledged everything it read.

    Raises:
        BrokerError: Not drained within `timeout_s`, or `alive` says no consumer is left.
    """
    deadline = time.monotonic() + timeout_s
    info = group_info(client, key, group)
    while time.monotonic() < deadline:
        info = group_info(client, key, group)
        if info and stream_id(info["last-delivered-id"]) >= stream_id(last_id) and info["pending"] == 0:
            return
        if not alive():
            raise BrokerError(f"every consumer of {key}/{group} exited before the stream was drained")
        time.sleep(poll_s)
    pending = info["pending"] if info else "?"
    raise BrokerError(f"{key}/{group} not drained after {timeout_s:.0f}s ({pending} pending)")


def read_all(client: Any, key: str, chunk: int = 10_000) -> list[tuple[str, dict[str, str]]]:
    """Every entry of stream `key`, in order."""
    out: list[tuple[str, dict[str, str]]] = []
    start = "-"
    while True:
        got = client.xrange(key, min=start, max="+", count=chunk)
        out.extend(got)
        if len(got) < chunk:
            return out
        start = "(" + got[-1][0]


def stats_from_results(
    results: list[tuple[str, dict[str, str]]], published: Published, tps: float
) -> ReplayStats:
    """Replay figures from the consumers' results stream (see `consumer.Result`).

    A transaction decided twice (an entry claimed after its first consumer died between the
    audit log and the acknowledgement) counts once, with its first decision's latency.
    """
    stats = ReplayStats(sent=len(published.ids), offered_tps=tps, max_lag_ms=published.max_lag_ms)
    seen: set[str] = set()
    last_done = published.start_wall
    for _, r in results:
        tid = r.get("id", "")
        if tid in seen:
            stats.replayed += 1
            continue
        seen.add(tid)
        if r.get("error"):
            stats.errors += 1
            stats.error_kinds[r["error"]] += 1
            continue
        stats.ok += 1
        stats.decisions[r["decision"]] += 1
        stats.replayed += r.get("replayed") == "1"
        done = float(r["done"])
        stats.latencies_ms.append((done - float(r[FIELD_SENT])) * 1000.0)
        last_done = max(last_done, done)
    missing = stats.sent - stats.ok - stats.errors
    if missing > 0:
        stats.errors += missing
        stats.error_kinds["no result"] += missing
    stats.elapsed_s = last_done - published.start_wall
    return stats
