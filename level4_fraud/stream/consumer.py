"""One scorer of the consumer group: read, decide, push features, acknowledge.

Delivery is at least once and decisions exactly once: an entry is acknowledged (``XACK``) only
after `ScoringService.decide` returned, which is after the audit log committed the decision; a
consumer that dies before acknowledging leaves its entries pending, another consumer claims them
once they have been idle `claim_min_idle_ms` (``XAUTOCLAIM``), and ``decide`` answers an entry
already in the audit log from the log (``replayed``), so nothing is decided or written twice.

Each entry read is parsed (a bad payload goes to the dead-letter stream ``KEY:dead``: retrying
cannot fix it) and decided (an exception — the audit log unreachable — leaves the entry pending,
to be retried when claimed). With the real service over a SQLite audit log, a batch's cards are
decided concurrently on one event loop (each card's entries in stream order), so their appends
share group commits. Decided entries are buffered and flushed every `flush_every_s`
(and whenever the stream is idle): the cards' activity is pushed to the online store through
Feast's push source in one call (a push has a fixed cost of milliseconds whatever its size:
`FraudFeatureStore.push`), the results go to
the publisher's results stream if it named one, and the entries are acknowledged. A failed
push is logged and counted, not retried: the decision stands, the card's recency feature is
stale until its next transaction.

The push is made inline on purpose: run in a background thread while the consumer went on
deciding, it took the GIL from the decisions instead, and the load test's stream p99 did not
improve (48 and 50 ms against 44 and 41 inline, SQLite and Redis stores, two alternating runs
each, 2026-12-08).

Card state: by default the scorer's card state (`serving.online.CardLedger`: today's windows,
1-hour counts, devices seen) lives in each consumer process and learns only the transactions
that process decided, so with several consumers a card's in-day features miss the transactions
its other consumers saw. With ``serving.ledger_url`` the consumers' scorers keep it in Redis
(`serving.redis_ledger`), one state for all of them, as uvicorn workers and Ray replicas do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from level4_fraud import schema
from level4_fraud.stream.config import StreamConfig
from level4_fraud.stream.producer import FIELD_REPLY, FIELD_SENT, FIELD_TX, ensure_group

log = logging.getLogger(__name__)
ENGINE = "stream"
Entry = tuple[str, dict[str, str] | None]


class Decider(Protocol):
    """What scores a transaction: `ScoringService` (``decide(TransactionIn) -> DecisionOut``)."""

    def decide(self, tx: Any) -> Any: ...


class FeatureSink(Protocol):
    """Where card activity goes: `FraudFeatureStore` (``push(card_activity_rows(...))``)."""

    def push(self, rows: pd.DataFrame) -> int: ...


@dataclass(frozen=True)
class ConsumerSettings:
    """One consumer's place in the group and its timings (see `StreamConfig`)."""

    key: str
    group: str
    name: str
    read_count: int = 32
    block_ms: int = 200
    claim_min_idle_ms: int = 10_000
    claim_every_s: float = 1.0
    flush_every_s: float = 0.25

    @classmethod
    def from_config(cls, cfg: StreamConfig, name: str | None = None) -> ConsumerSettings:
        return cls(
            key=cfg.key,
            group=cfg.group,
            name=name or default_name(),
            read_count=cfg.read_count,
            block_ms=cfg.block_ms,
            claim_min_idle_ms=cfg.claim_min_idle_ms,
            claim_every_s=cfg.claim_every_s,
            flush_every_s=cfg.flush_every_s,
        )

    @property
    def dead_key(self) -> str:
        return f"{self.key}:dead"


def default_name() -> str:
    """``host-pid``: unique among the consumers of a group."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ConsumerCounts:
    """What one consumer did (logged when it stops)."""

    decided: int = 0
    replayed: int = 0
    claimed: int = 0
    dead: int = 0
    failed: int = 0
    push_errors: int = 0


def transaction_parser() -> Callable[[str], Any]:
    """``TransactionIn`` from a JSON body (raises ``ValueError`` on a bad one)."""
    from level4_fraud.serving.schemas import TransactionIn

    return TransactionIn.model_validate_json


def activity_frame(txs: Sequence[Any]) -> pd.DataFrame:
    """The push rows' input (`card_activity_rows`) from decided transactions."""
    return pd.DataFrame(
        {
            schema.CUSTOMER_ID: [t.CUSTOMER_ID for t in txs],
            schema.TX_DATETIME: [t.TX_DATETIME for t in txs],
            schema.TX_AMOUNT: [t.TX_AMOUNT for t in txs],
        }
    )


class StreamConsumer:
    """A consumer of the group (see the module docstring).

    Args:
        client: Redis client with ``decode_responses=True``.
        settings: Stream, group, name, timings.
        decider: Scores a parsed transaction; returns a ``DecisionOut``.
        features: Online store to push card activity to (None: no push).
        parse: JSON body -> transaction (default: ``TransactionIn``).
    """

    def __init__(
        self,
        client: Any,
        settings: ConsumerSettings,
        decider: Decider,
        features: FeatureSink | None = None,
        parse: Callable[[str], Any] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.decider = decider
        self.features = features
        self.parse = parse or transaction_parser()
        self.counts = ConsumerCounts()
        self._buffer = _Buffer()
        self._next_flush = time.monotonic() + settings.flush_every_s

    # -- reading

    def join(self) -> int:
        """Create the group if needed and finish this consumer's own pending entries (a restart
        under the same name); joins the group's consumer list. Returns the entries handled."""
        s = self.settings
        ensure_group(self.client, s.key, s.group)
        cursor, handled = "0", 0
        while True:
            got = self.client.xreadgroup(s.group, s.name, {s.key: cursor}, count=s.read_count)
            entries = got[0][1] if got else []
            if not entries:
                self.flush()
                return handled
            handled += self.handle(entries)
            cursor = entries[-1][0]

    def claim(self) -> int:
        """Claim and handle every entry idle longer than `claim_min_idle_ms` (a dead consumer's)."""
        s = self.settings
        cursor, handled = "0-0", 0
        while True:
            cursor, entries, _deleted = self.client.xautoclaim(
                s.key, s.group, s.name, s.claim_min_idle_ms, start_id=cursor, count=s.read_count
            )
            if entries:
                self.counts.claimed += len(entries)
                log.info("%s claimed %d idle entries", s.name, len(entries))
                handled += self.handle(entries)
            if cursor == "0-0":
                self.flush()
                return handled

    def poll(self) -> int:
        """Read and handle new entries (waits up to `block_ms`; flushes when there are none)."""
        s = self.settings
        got = self.client.xreadgroup(s.group, s.name, {s.key: ">"}, count=s.read_count, block=s.block_ms)
        if not got:
            self.flush()
            return 0
        return self.handle(got[0][1])

    def run(self, stop: threading.Event) -> ConsumerCounts:
        """Consume until `stop` is set (finishing the batch in hand)."""
        self.join()
        next_claim = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_claim:
                self.claim()
                next_claim = time.monotonic() + self.settings.claim_every_s
            self.poll()
        self.flush()
        return self.counts

    # -- handling

    def handle(self, entries: Sequence[Entry]) -> int:
        """Decide each entry of a batch into the buffer (flushed when due, see `flush`).

        With a decider that can await its audit commit (`ScoringService.decide_async` over a
        SQLite log), the batch's cards are decided concurrently on one event loop, each card's
        entries in stream order: the decisions then share group commits instead of waiting for
        one commit each, and every card still sees its own earlier transactions, as in order.

        Returns:
            The entries handled: decided, dead-lettered or gone (each acknowledged at the flush).
        """
        handled, ready = 0, []
        for entry_id, fields in entries:
            tx = self._parse_one(entry_id, fields)
            if tx is None:
                handled += 1
            else:
                ready.append((entry_id, fields, tx))
        if ready and self._concurrent():
            handled += asyncio.run(self._decide_by_card(ready))
        else:
            handled += sum(self._decide_one(*item) for item in ready)
        if time.monotonic() >= self._next_flush:
            self.flush()
        return handled

    def _concurrent(self) -> bool:
        audit = getattr(self.decider, "audit", None)
        return hasattr(self.decider, "decide_async") and bool(getattr(audit, "commits_in_background", False))

    def _parse_one(self, entry_id: str, fields: dict[str, str] | None) -> Any:
        """The entry's transaction; None when the entry is settled here (gone or dead-lettered)."""
        buf = self._buffer
        if not fields:  # trimmed from the stream before anyone read it
            buf.ack.append(entry_id)
            return None
        try:
            return self.parse(fields[FIELD_TX])
        except (KeyError, ValueError) as exc:
            buf.dead.append((fields, f"bad payload: {str(exc).splitlines()[0]}"))
            buf.ack.append(entry_id)
            self._observe(422, 0.0)
            return None

    def _decide_one(self, entry_id: str, fields: dict[str, str], tx: Any) -> int:
        t0 = time.perf_counter()
        try:
            out = self.decider.decide(tx)
        except Exception:  # the audit log failed: leave it pending, to be claimed and retried
            return self._failed(entry_id, t0)
        return self._decided(entry_id, fields, tx, out, t0)

    async def _decide_by_card(self, ready: Sequence[tuple[str, dict[str, str], Any]]) -> int:
        by_card: dict[Any, list[tuple[str, dict[str, str], Any]]] = {}
        for item in ready:
            by_card.setdefault(item[2].CUSTOMER_ID, []).append(item)

        async def in_order(items: list[tuple[str, dict[str, str], Any]]) -> int:
            done = 0
            for entry_id, fields, tx in items:
                t0 = time.perf_counter()
                try:
                    out = await self.decider.decide_async(tx)  # type: ignore[attr-defined]
                except Exception:
                    done += self._failed(entry_id, t0)
                    continue
                done += self._decided(entry_id, fields, tx, out, t0)
            return done

        return sum(await asyncio.gather(*(in_order(items) for items in by_card.values())))

    def _failed(self, entry_id: str, t0: float) -> int:
        log.exception("%s: no decision for entry %s", self.settings.name, entry_id)
        self.counts.failed += 1
        self._observe(503, time.perf_counter() - t0)
        return 0

    def _decided(self, entry_id: str, fields: dict[str, str], tx: Any, out: Any, t0: float) -> int:
        self._observe(200, time.perf_counter() - t0)
        self._buffer.decided.append((fields, tx, out, time.time()))
        self._buffer.ack.append(entry_id)
        return 1

    def flush(self) -> None:
        """Push the buffered cards' activity, write the results, acknowledge the buffered entries.

        Every buffered decision is already in the audit log; acknowledging after the push too
        makes the feature update at least once as well (a consumer killed before its flush leaves
        the entries pending: the claimer replays the decisions from the log and pushes again).
        """
        buf, self._buffer = self._buffer, _Buffer()
        self._next_flush = time.monotonic() + self.settings.flush_every_s
        self._push([tx for _, tx, _, _ in buf.decided])
        self._finish(buf)

    def _observe(self, status: int, seconds: float) -> None:
        # The service's Prometheus collectors, labelled engine="stream" (the API's say "uvicorn").
        metrics = getattr(self.decider, "metrics", None)
        if metrics is not None:
            metrics.observe_request(ENGINE, status, seconds)

    def _push(self, txs: list[Any]) -> None:
        if self.features is None or not txs:
            return
        from level4_fraud.feature_store import card_activity_rows

        try:
            self.features.push(card_activity_rows(activity_frame(txs)))
        except Exception:  # the decision stands; only the card's recency feature is stale
            log.exception("%s: feature push failed for %d transactions", self.settings.name, len(txs))
            self.counts.push_errors += 1

    def _finish(self, buf: _Buffer) -> None:
        if not buf.ack:
            return
        s = self.settings
        pipe = self.client.pipeline(transaction=False)
        for fields, error in buf.dead:
            pipe.xadd(s.dead_key, {**fields, "error": error, "consumer": s.name})
            if fields.get(FIELD_REPLY):
                pipe.xadd(
                    fields[FIELD_REPLY], {"id": _raw_id(fields), "error": "bad payload", "consumer": s.name}
                )
        for fields, tx, out, done in buf.decided:
            if fields.get(FIELD_REPLY):
                pipe.xadd(fields[FIELD_REPLY], _result(fields, tx, out, done, s.name))
        pipe.xack(s.key, s.group, *buf.ack)
        pipe.execute()
        self.counts.dead += len(buf.dead)
        self.counts.decided += len(buf.decided)
        self.counts.replayed += sum(bool(getattr(out, "replayed", False)) for _, _, out, _ in buf.decided)


@dataclass
class _Buffer:
    """Decided (or dead) entries waiting for the next flush."""

    ack: list[str] = field(default_factory=list)
    dead: list[tuple[dict[str, str], str]] = field(default_factory=list)
    decided: list[tuple[dict[str, str], Any, Any, float]] = field(default_factory=list)


def _raw_id(fields: dict[str, str]) -> str:
    import json

    try:
        return str(json.loads(fields.get(FIELD_TX, "")).get(schema.TRANSACTION_ID, ""))
    except (ValueError, AttributeError):
        return ""


def _result(fields: dict[str, str], tx: Any, out: Any, done: float, name: str) -> dict[str, str]:
    return {
        "id": str(tx.TRANSACTION_ID),
        "decision": str(out.decision),
        "score": f"{out.score:.6g}",
        "replayed": "1" if out.replayed else "0",
        "service_ms": f"{out.latency_ms:.3f}",
        FIELD_SENT: fields.get(FIELD_SENT, f"{done:.6f}"),
        "done": f"{done:.6f}",
        "consumer": name,
    }


# -- one consumer process ---------------------------------------------------------------------


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`: the consumer finishes its batch, acknowledges, exits."""

    def _handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def run_consumer_process(
    run_dir: Path,
    stream: StreamConfig,
    *,
    broker: str,
    name: str | None,
    build_decider: Callable[[Path], Decider],
    build_features: Callable[[Path], FeatureSink | None],
    metrics_port: int | None = None,
) -> ConsumerCounts:
    """Load the scorer of `run_dir`, join the group on `broker` and consume until SIGTERM.

    With `metrics_port`, the scorer's Prometheus metrics are served on
    ``http://127.0.0.1:PORT/metrics`` (requests labelled ``engine="stream"``).
    """
    from level4_fraud.stream.producer import connect

    stop = threading.Event()
    stop_on_signals(stop)
    decider = build_decider(run_dir)
    registry = getattr(getattr(decider, "metrics", None), "registry", None)
    if metrics_port is not None and registry is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    features = build_features(run_dir) if stream.push_features else None
    client = connect(broker)
    settings = ConsumerSettings.from_config(stream, name)
    consumer = StreamConsumer(client, settings, decider, features)
    from level4_fraud.serving.heap import freeze_startup_heap

    freeze_startup_heap()
    log.info("consumer %s joining %s/%s", settings.name, settings.key, settings.group)
    try:
        counts = consumer.run(stop)
    finally:
        client.close()
        close = getattr(decider, "close", None)
        if callable(close):
            close()
    log.info("consumer %s stopped: %s", settings.name, counts)
    return counts
