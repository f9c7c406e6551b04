"""The card ledger in Redis: one card state shared by every worker process and Ray replica.

`online.CardLedger` keeps each card's recent payments and first-use sets in the process. With
several uvicorn workers, Ray Serve replicas or stream consumers, each would see only the payments
it decided itself, and a card's velocity would be split between them; a restart would forget
every payment decided since the history folder was read. `RedisCardLedger` keeps the same state
in Redis (the Redis that holds the Feast online store and the event stream) and computes the
inputs with the same function (`online.card_features`), so both ledgers give identical values.

Keys, under a namespace per run (``l4ledger:<run>``):

* ``<ns>:tx:<card>`` — sorted set of the card's payments of the last ``keep`` seconds: score the
  epoch second, member ``"<transaction id>|<amount>"`` (so recording a transaction twice, after a
  retry, stores it once);
* ``<ns>:last`` — hash, card -> epoch second of its newest payment ever (a card whose payments all
  left the window still has a gap since its last one);
* ``<ns>:term:<card>``, ``<ns>:cty:<card>``, ``<ns>:dev:<card>`` — sets of the terminals,
  countries and devices the card has used;
* ``<ns>:ready`` — set once the history folder has been loaded (the first process to start loads
  it under ``<ns>:loading``; the others wait for ``ready``).

Recording is one Lua script (add, raise ``last``, forget what left every window, add to the
sets), so two replicas recording payments of the same card at once cannot lose either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from level4_fraud import features as feat
from level4_fraud.serving.online import (
    CardStateUnavailableError,
    _CardState,
    _device,
    card_features,
    card_histories,
    epoch_seconds,
    keep_seconds,
)
from level4_fraud.serving.outage import OutageGate, fail_fast_retry
from level4_fraud.serving.schemas import TransactionIn
from shared.errors import ConfigError

# KEYS: tx zset, last hash, terminals, countries, devices. ARGV: time, member, keep seconds, card,
# terminal, country ("" for none), device ("" for none).
_RECORD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local t = tonumber(ARGV[1])
local last = redis.call('HGET', KEYS[2], ARGV[4])
if (not last) or tonumber(last) < t then redis.call('HSET', KEYS[2], ARGV[4], ARGV[1]) end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
-- formatted here: Lua would pass the number with 14 significant digits
local cut = string.format('%.17g', tonumber(newest) - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cut)
redis.call('SADD', KEYS[3], ARGV[5])
if ARGV[6] ~= '' then redis.call('SADD', KEYS[4], ARGV[6]) end
if ARGV[7] ~= '' then redis.call('SADD', KEYS[5], ARGV[7]) end
return 1
"""
# KEYS: last hash, tx zset, terminals, countries, devices. ARGV: card, lowest time (exclusive,
# "(t"), highest time, terminal, country ("" for none), device ("" for none). One round trip, and
# the payments come back as one string: redis-py's pure-Python parser spent about 1 ms of CPU per
# decision on a card's ~90 members and scores read as separate replies.
_READ = """
local last = redis.call('HGET', KEYS[1], ARGV[1])
if not last then return false end
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], ARGV[3], 'WITHSCORES')
local term = redis.call('SISMEMBER', KEYS[3], ARGV[4])
local cty = 0
if ARGV[5] ~= '' then cty = redis.call('SISMEMBER', KEYS[4], ARGV[5]) end
local dev = 0
if ARGV[6] ~= '' then dev = redis.call('SISMEMBER', KEYS[5], ARGV[6]) end
return {last, table.concat(rows, ' '), term, cty, dev}
"""
LOAD_WAIT_S = 300.0


class RedisCardLedger:
    """`online.CardLedger`'s interface with the state in Redis (see the module docstring).

    Args:
        client: A ``redis.Redis`` client (``decode_responses=True``).
        namespace: Prefix of every key (one per run: runs never share card state).
        windows: Window lengths in days (the run's).
        keep_days: Days of payments kept per card (at least the longest window, and the habit's reach).
        home_country: Holder's home country per card (for ``FOREIGN_COUNTRY``), when known.
        habit: ``(lag, days)`` of the card's spending habit (None: no habit features).
        gate: Refuses calls for a while after one failed (`outage.OutageGate`), so an outage
            costs each request nothing, not the client's retries.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        windows: Sequence[int] = feat.DEFAULT_WINDOWS,
        keep_days: int = 31,
        home_country: Mapping[int, str] | None = None,
        habit: tuple[int, int] | None = None,
        gate: OutageGate | None = None,
    ) -> None:
        self.client = client
        self.gate = gate or OutageGate()
        self.ns = namespace
        self.windows = tuple(int(w) for w in windows)
        self.habit = habit
        self.keep_s = keep_seconds(keep_days, self.windows, habit)
        self.home_country = dict(home_country or {})
        self._record = client.register_script(_RECORD)
        self._read = client.register_script(_READ)

    def _keys(self, card: int) -> list[str]:
        return [f"{self.ns}:{kind}:{card}" for kind in ("tx", "term", "cty", "dev")]

    def __len__(self) -> int:
        return int(self.client.hlen(f"{self.ns}:last"))

    def features(self, tx: TransactionIn) -> dict[str, float] | None:
        """The card's inputs for `tx`, as `online.CardLedger.features` (None: an unknown card).

        Raises:
            CardStateUnavailableError: Redis could not be read.
        """
        t = epoch_seconds(tx.TX_DATETIME)
        tx_key, term_key, cty_key, dev_key = self._keys(tx.CUSTOMER_ID)
        device = _device(tx.DEVICE_ID)
        # Only payments up to t count, and none older than the ledger keeps.
        keys = [f"{self.ns}:last", tx_key, term_key, cty_key, dev_key]
        args = [
            tx.CUSTOMER_ID,
            f"({t - self.keep_s!r}",
            repr(t),
            tx.TERMINAL_ID,
            tx.COUNTRY or "",
            device or "",
        ]
        reply = self._call(lambda: self._read(keys=keys, args=args, client=self.client))
        if reply is None:
            return None
        last, joined, term, cty, dev = reply
        flat = joined.split(" ") if joined else []
        state = _CardState(
            times=[float(score) for score in flat[1::2]],
            amounts=[_amount(member) for member in flat[0::2]],
            last=float(last),
        )
        # The first-use checks only ask about this transaction's terminal, country and device.
        if term:
            state.terminals.add(tx.TERMINAL_ID)
        if cty and tx.COUNTRY is not None:
            state.countries.add(tx.COUNTRY)
        if dev and device is not None:
            state.devices.add(device)
        return card_features(state, tx, self.windows, self.habit)

    def record(self, tx: TransactionIn) -> None:
        """Add a decided transaction to its card's state (recording it again changes nothing).

        Raises:
            CardStateUnavailableError: Redis could not be written.
        """
        t = epoch_seconds(tx.TX_DATETIME)
        keys = self._keys(tx.CUSTOMER_ID)
        args = [
            repr(t),
            _member(tx.TRANSACTION_ID, float(tx.TX_AMOUNT)),
            repr(self.keep_s),
            tx.CUSTOMER_ID,
            tx.TERMINAL_ID,
            tx.COUNTRY or "",
            _device(tx.DEVICE_ID) or "",
        ]
        self._call(
            lambda: self._record(keys=[keys[0], f"{self.ns}:last", *keys[1:]], args=args, client=self.client)
        )

    def _call(self, call: Callable[[], Any]) -> Any:
        """`call` against Redis through the gate (`outage.OutageGate.call`).

        Raises:
            CardStateUnavailableError: Refused, or Redis failed (and the gate shuts).
        """
        return self.gate.call(call, CardStateUnavailableError)

    def clear(self) -> int:
        """Delete every key of this namespace; returns how many were deleted."""
        keys = list(self.client.scan_iter(match=f"{self.ns}:*", count=1000))
        for start in range(0, len(keys), 1000):
            self.client.delete(*keys[start : start + 1000])
        return len(keys)

    def load(self, read_history: Callable[[], pd.DataFrame], *, wait_s: float = LOAD_WAIT_S) -> bool:
        """Load the history once per namespace; True when this call loaded it.

        The first process to start loads (under a lock key); the others wait until it is done, so
        no replica scores from a half-loaded ledger. A namespace already loaded is left as it is:
        it holds the payments decided since, which the history folder does not. Only the loading
        process calls ``read_history``: the others, and every restart, skip reading the folder.

        Raises:
            ConfigError: Another process held the load lock for longer than ``wait_s``.
        """
        ready = f"{self.ns}:ready"
        if self.client.exists(ready):
            return False
        if not self.client.set(f"{self.ns}:loading", "1", nx=True, ex=int(LOAD_WAIT_S)):
            deadline = time.monotonic() + wait_s
            while not self.client.exists(ready):
                if time.monotonic() > deadline:
                    raise ConfigError(f"card ledger {self.ns} in Redis not loaded within {wait_s:.0f} s")
                time.sleep(0.05)
            return False
        self._write_histories(read_history())
        self.client.set(ready, "1")
        self.client.delete(f"{self.ns}:loading")
        return True

    def _write_histories(self, tx: pd.DataFrame) -> None:
        pipe = self.client.pipeline(transaction=False)
        for n, (card, state, ids) in enumerate(card_histories(tx, self.keep_s)):
            tx_key, term_key, cty_key, dev_key = self._keys(card)
            pipe.hset(f"{self.ns}:last", card, repr(state.last))
            if state.times:
                members = zip(ids.tolist(), state.amounts, state.times, strict=True)
                pipe.zadd(tx_key, {_member(i, a): s for i, a, s in members})
            for key, used in (
                (term_key, state.terminals),
                (cty_key, state.countries),
                (dev_key, state.devices),
            ):
                if used:
                    pipe.sadd(key, *used)
            if n % 500 == 499:
                pipe.execute()
        pipe.execute()


def _member(transaction_id: Any, amount: float) -> str:
    """A payment's member in the card's sorted set: unique per transaction, and carrying the amount."""
    return f"{transaction_id}|{amount!r}"


def _amount(member: str) -> float:
    """The amount of a `_member`."""
    return float(member.rsplit("|", 1)[1])


def connect_ledger(url: str) -> Any:
    """A Redis client (strings decoded) for the ledger at `url`, checked with PING.

    Raises:
        ConfigError: Redis does not answer at `url`.
    """
    import redis

    client = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=0.5,
        retry=fail_fast_retry(),
    )
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise ConfigError(f"no Redis for the card ledger at {url} ({type(exc).__name__}: {exc})") from None
    return client


def ledger_namespace(run_id: str) -> str:
    """The key prefix of a run's card ledger in Redis."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"l4ledger:{safe}"
