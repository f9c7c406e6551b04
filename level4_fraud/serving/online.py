"""Online features of one transaction: the Feast online store, the card state, the request.

**What the models read, and where serving gets it.** The champion and its student were trained
on `level4_fraud.features.transaction_features`: point-in-time values over *every* earlier
transaction. The Feast online store holds what a batch job can publish — the card's and the
terminal's window aggregates as of the last materialised midnight, the card's last transaction
(pushed by the stream), home and terminal coordinates. Several inputs cannot come from it:

* the card's 1/7/30-day windows *including today* (the snapshot misses every transaction since
  midnight — exactly the bursts a stolen card shows) and the 1-hour counts
  (``CUSTOMER_ID_NB_TX_1H_WINDOW``, ``SMALL_AMOUNT_BURST_1H``);
* first use by the card of a device, country or terminal (``NEW_DEVICE``, ``NEW_COUNTRY``,
  ``NEW_TERMINAL``): sets, not aggregates;
* ``FOREIGN_COUNTRY`` (the holder's home country is not in the store).

Choice: **additional online state**, `CardLedger`: per card, its transactions of the last
``history_days`` days (time, amount) and the devices, countries and terminals it has used,
started from the run's transaction history and updated with every decided transaction. It
gives those inputs exactly as training computed them, so the student is served the
distribution it learnt from (a student retrained on the store's features alone would have
lost the card-testing and takeover signals). Feast remains the source of what needs labels
or reference data the service never sees: the terminal windows (fraud rates from investigated
labels), the coordinates (distance from home), and the card's snapshot for a card the ledger
does not know (a service started without history). This ledger lives in the process: several
worker processes (or Ray replicas) each keep their own, and a restart starts again from the
history folder, without the transactions decided since (the audit log holds card ids only as
keyed hashes, so it cannot rebuild it). `serving.redis_ledger.RedisCardLedger` keeps the same
state in Redis, shared by every process and kept across restarts (``serving.ledger_url``); both
compute the inputs with `card_features`.

The terminal's fraud recency (``TERMINAL_ID_DAYS_SINCE_LAST_FRAUD``, ``..._FIRST_FRAUD``) is
stored as the times of the frauds (the snapshot's ``TERMINAL_FRAUD_TIMES``) and measured from
the scored transaction's own time here (`features.recency_days`), so it does not age by a day
between two snapshots.

Remaining gap with the batch features: the terminal windows are the midnight snapshot, not the
window ending exactly a label delay before the transaction (they differ by the terminal's
transactions of one part of a day, a week ago); so are the frauds the recency is measured to (a
fraud entering or leaving the window, or a label arriving, since midnight shows the next day).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from level4_fraud import features as feat
from level4_fraud import schema
from level4_fraud.serving.feast_sqlite import SqliteViews, sqlite_store
from level4_fraud.serving.outage import LogThrottle, OutageGate, fail_fast_retry
from level4_fraud.serving.schemas import (
    CARD_STATE_UNAVAILABLE,
    ONLINE_STORE_UNAVAILABLE,
    UNKNOWN_CARD,
    UNKNOWN_TERMINAL,
    TransactionIn,
)

logger = logging.getLogger(__name__)

_DAY_S = 86_400.0
_HOUR_S = 3_600.0
_EPOCH = datetime(1970, 1, 1)
NO_DEVICE = {"", "-1", "None", "nan"}


def epoch_seconds(when: datetime) -> float:
    """Seconds since 1970 of a naive UTC datetime."""
    return (when - _EPOCH).total_seconds()


class OnlineStoreUnavailableError(RuntimeError):
    """The online store could not be read (outage, missing or corrupt store)."""


class CardStateUnavailableError(RuntimeError):
    """The shared card ledger could not be read or written (its Redis is down)."""


class Ledger(Protocol):
    """What the service needs of a card ledger (`CardLedger`, `redis_ledger.RedisCardLedger`)."""

    home_country: dict[int, str]

    def __len__(self) -> int: ...
    def features(self, tx: TransactionIn) -> dict[str, float] | None: ...
    def record(self, tx: TransactionIn) -> None: ...


# ------------------------------------------------------------------------------------ card state
@dataclass
class _CardState:
    times: list[float] = field(default_factory=list)  # epoch seconds, ascending, the last days only
    amounts: list[float] = field(default_factory=list)
    last: float = -math.inf
    devices: set[str] = field(default_factory=set)
    countries: set[str] = field(default_factory=set)
    terminals: set[int] = field(default_factory=set)


def _device(value: Any) -> str | None:
    text = None if value is None else str(value)
    return None if text is None or text in NO_DEVICE else text


def keep_seconds(keep_days: int, windows: Sequence[int], habit: tuple[int, int] | None) -> float:
    """Seconds of payments a ledger keeps per card: ``keep_days``, or longer when the longest
    window or the habit's reach (``lag + days + 1``) needs it."""
    reach = habit[0] + habit[1] + 1 if habit else 0
    return max(keep_days, reach, *windows) * _DAY_S


def card_histories(tx: pd.DataFrame, keep_s: float) -> Iterator[tuple[int, _CardState, np.ndarray]]:
    """Per card of the history ``tx``: its state and the transaction ids of the payments it keeps.

    The state holds the payments of the last ``keep_s`` seconds before the newest transaction of
    ``tx`` (time order), the time of the card's last payment, and every terminal, country and
    device the card used. Both ledgers start from it (`CardLedger.from_transactions`,
    `redis_ledger.RedisCardLedger.load`).
    """
    if len(tx) == 0:
        return
    tx = tx.sort_values([schema.TX_DATETIME, schema.TRANSACTION_ID], kind="mergesort")
    t = (tx[schema.TX_DATETIME] - pd.Timestamp(_EPOCH)).dt.total_seconds().to_numpy()
    cards = tx[schema.CUSTOMER_ID].to_numpy(dtype=np.int64)
    ids = tx[schema.TRANSACTION_ID].to_numpy()
    amounts = tx[schema.TX_AMOUNT].to_numpy(dtype=np.float64)
    terminals = tx[schema.TERMINAL_ID].to_numpy(dtype=np.int64)
    countries = tx[schema.COUNTRY].astype(str).to_numpy() if schema.COUNTRY in tx.columns else None
    devices = tx[schema.DEVICE_ID].astype(str).to_numpy() if schema.DEVICE_ID in tx.columns else None
    recent = t > t.max() - keep_s
    for card, idx in pd.Series(np.arange(len(tx))).groupby(cards).groups.items():
        pos = np.asarray(idx)
        keep = pos[recent[pos]]
        state = _CardState(times=t[keep].tolist(), amounts=amounts[keep].tolist(), last=float(t[pos[-1]]))
        state.terminals = set(terminals[pos].tolist())
        if countries is not None:
            state.countries = set(countries[pos].tolist())
        if devices is not None:
            state.devices = {d for d in devices[pos].tolist() if _device(d) is not None}
        yield int(card), state, ids[keep]


class CardLedger:
    """Per-card online state the Feast store cannot give (see the module docstring).

    Thread-safe. `features` reads, `record` adds a decided transaction (once per transaction:
    the service calls it after the audit log has accepted the decision).

    Args:
        windows: Window lengths in days (the run's).
        keep_days: Days of transactions kept per card (at least the longest window, and the
            habit's reach).
        home_country: Holder's home country per card (for ``FOREIGN_COUNTRY``), when known.
        habit: ``(lag, days)`` of the card's spending habit (the run's; None: no habit features).
    """

    def __init__(
        self,
        windows: Sequence[int] = feat.DEFAULT_WINDOWS,
        keep_days: int = 31,
        home_country: Mapping[int, str] | None = None,
        habit: tuple[int, int] | None = None,
    ) -> None:
        self.windows = tuple(int(w) for w in windows)
        self.habit = habit
        self.keep_s = keep_seconds(keep_days, self.windows, habit)
        self.home_country = dict(home_country or {})
        self._cards: dict[int, _CardState] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cards)

    def knows(self, card: int) -> bool:
        """Whether the card has any transaction in the ledger."""
        return card in self._cards

    @classmethod
    def from_transactions(
        cls,
        tx: pd.DataFrame,
        *,
        windows: Sequence[int] = feat.DEFAULT_WINDOWS,
        keep_days: int = 31,
        home_country: Mapping[int, str] | None = None,
        habit: tuple[int, int] | None = None,
    ) -> CardLedger:
        """A ledger holding `tx` (the history: its last `keep_days` days, every first use)."""
        ledger = cls(windows, keep_days, home_country, habit)
        ledger._cards = {card: state for card, state, _ in card_histories(tx, ledger.keep_s)}
        return ledger

    def features(self, tx: TransactionIn) -> dict[str, float] | None:
        """The card's inputs for `tx` as `features.transaction_features` defines them (the current
        transaction included in the windows, excluded from the mean and the gap); None when the
        ledger does not know the card."""
        with self._lock:
            state = self._cards.get(tx.CUSTOMER_ID)
            if state is None:
                return None
            return card_features(state, tx, self.windows, self.habit)

    def record(self, tx: TransactionIn) -> None:
        """Add a decided transaction to its card's state (and forget what left every window)."""
        t = epoch_seconds(tx.TX_DATETIME)
        with self._lock:
            state = self._cards.setdefault(tx.CUSTOMER_ID, _CardState())
            i = bisect.bisect_right(state.times, t)
            state.times.insert(i, t)
            state.amounts.insert(i, float(tx.TX_AMOUNT))
            state.last = max(state.last, t)
            cut = bisect.bisect_right(state.times, state.times[-1] - self.keep_s)
            if cut:
                del state.times[:cut], state.amounts[:cut]
            state.terminals.add(tx.TERMINAL_ID)
            if tx.COUNTRY is not None:
                state.countries.add(tx.COUNTRY)
            device = _device(tx.DEVICE_ID)
            if device is not None:
                state.devices.add(device)


def card_features(
    state: _CardState, tx: TransactionIn, windows: Sequence[int], habit: tuple[int, int] | None
) -> dict[str, float]:
    """The card's inputs for `tx` from its state (`CardLedger.features`; the Redis ledger reads
    the same state from Redis and calls this too, so both compute exactly the same values)."""
    t = epoch_seconds(tx.TX_DATETIME)
    amount = float(tx.TX_AMOUNT)
    hi = bisect.bisect_right(state.times, t)
    out: dict[str, float] = {}
    for w in windows:
        lo = bisect.bisect_right(state.times, t - w * _DAY_S, 0, hi)
        n = hi - lo + 1
        out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = float(n)
        out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = (math.fsum(state.amounts[lo:hi]) + amount) / n
    lo = bisect.bisect_right(state.times, t - max(windows) * _DAY_S, 0, hi)
    n_prev = hi - lo
    mean_prev = math.fsum(state.amounts[lo:hi]) / n_prev if n_prev else math.nan
    out["AMOUNT_TO_CUSTOMER_MEAN"] = amount / mean_prev if n_prev and mean_prev > 0 else 1.0
    last = state.times[hi - 1] if hi else (state.last if state.last <= t else -math.inf)
    out["SECONDS_SINCE_LAST_TX"] = min(t - last, float(feat.SECONDS_CAP))
    lo_h = bisect.bisect_right(state.times, t - _HOUR_S, 0, hi)
    out["CUSTOMER_ID_NB_TX_1H_WINDOW"] = float(hi - lo_h + 1)
    small = sum(1 for a in state.amounts[lo_h:hi] if a < feat.SMALL_AMOUNT)
    out["SMALL_AMOUNT_BURST_1H"] = float(small + (amount < feat.SMALL_AMOUNT))
    if habit:
        lag, days = habit
        h_hi = bisect.bisect_right(state.times, t - lag * _DAY_S, 0, hi)
        h_lo = bisect.bisect_right(state.times, t - (lag + days) * _DAY_S, 0, h_hi)
        past = state.amounts[h_lo:h_hi]
        total = math.fsum(past)
        values = feat.habit_values(amount, len(past), total, math.fsum(a * a for a in past))
        out.update({name: float(v) for name, v in values.items()})
        limit = float(feat.habit_large_limit(len(past), total))
        # Since the habit window ended: (t - lag, t), the earlier payments of this very second included.
        large = sum(1 for a in state.amounts[h_hi:hi] if a > limit)
        out["CUSTOMER_ID_NB_LARGE_SINCE_HABIT"] = float(large)
    out.update(_first_use(state, tx))
    return out


def _first_use(state: _CardState | None, tx: TransactionIn) -> dict[str, float]:
    """``NEW_DEVICE``, ``NEW_COUNTRY``, ``NEW_TERMINAL`` (a card never seen: everything is new)."""
    device = _device(tx.DEVICE_ID)
    out = {"NEW_TERMINAL": float(state is None or tx.TERMINAL_ID not in state.terminals)}
    out["NEW_DEVICE"] = float(device is not None and (state is None or device not in state.devices))
    out["NEW_COUNTRY"] = (
        math.nan if tx.COUNTRY is None else float(state is None or tx.COUNTRY not in state.countries)
    )
    return out


def first_transaction_features(tx: TransactionIn, windows: Sequence[int]) -> dict[str, float]:
    """A card's inputs when nothing is known about it: what training computes for a card's first
    transaction (windows of one, ratio 1, the gap capped, everything used for the first time)."""
    amount = float(tx.TX_AMOUNT)
    out: dict[str, float] = {}
    for w in windows:
        out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = 1.0
        out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = amount
    out["AMOUNT_TO_CUSTOMER_MEAN"] = 1.0
    out["SECONDS_SINCE_LAST_TX"] = float(feat.SECONDS_CAP)
    out["CUSTOMER_ID_NB_TX_1H_WINDOW"] = 1.0
    out["SMALL_AMOUNT_BURST_1H"] = float(amount < feat.SMALL_AMOUNT)
    out.update({name: float(v) for name, v in feat.habit_values(amount, 0, 0.0, 0.0).items()})
    out["CUSTOMER_ID_NB_LARGE_SINCE_HABIT"] = 0.0
    out.update(_first_use(None, tx))
    return out


def request_features(tx: TransactionIn) -> dict[str, float]:
    """Features of the request alone: amount, time of day and week, channel flags."""
    when = tx.TX_DATETIME
    out = {
        schema.TX_AMOUNT: float(tx.TX_AMOUNT),
        "TX_DURING_WEEKEND": float(when.weekday() >= 5),
        "TX_DURING_NIGHT": float(when.hour <= 6),
        "TX_HOUR": float(when.hour),
    }
    channel = tx.CHANNEL
    out["IS_ECOM"] = math.nan if channel is None else float(channel == "ecom")
    out["IS_ATM"] = math.nan if channel is None else float(channel == "atm")
    return out


# ------------------------------------------------------------------------------------ Feast
@dataclass
class StoreRow:
    """What the online store holds for one card and terminal (None: not found)."""

    card: dict[str, float] | None
    terminal: dict[str, float] | None
    distance: float
    newest_event: float | None  # epoch seconds of the newest row used


class FeastOnlineReader:
    """Reads the card's and terminal's rows from the run's Feast online store.

    Only the stored views are asked (windows, activity, coordinates); the request-time features
    are computed by the service itself (`request_features`, `CardLedger`), with the conventions
    of `features.py` the models were trained on.

    Args:
        store: A `feature_store.FraudFeatureStore` of the run (SQLite or Redis online store).
    """

    def __init__(self, store: Any) -> None:
        from level4_fraud.feature_repo.feature_views import (
            CARD_WINDOW_FEATURES,
            LAST_TX_AMOUNT,
            LAST_TX_EPOCH_S,
            TERMINAL_VIEW_FEATURES,
        )

        self.store = store
        self.card_features = [*CARD_WINDOW_FEATURES, LAST_TX_EPOCH_S, LAST_TX_AMOUNT]
        self.terminal_features = list(TERMINAL_VIEW_FEATURES)
        refs = [f"card_windows:{f}" for f in CARD_WINDOW_FEATURES]
        refs += [f"card_activity:{f}" for f in (LAST_TX_EPOCH_S, LAST_TX_AMOUNT)]
        refs += [f"terminal_windows:{f}" for f in TERMINAL_VIEW_FEATURES]
        self.geo = bool(store.has_geo)
        if self.geo:
            refs += [f"card_profile:{c}" for c in (schema.X_CUSTOMER, schema.Y_CUSTOMER)]
            refs += [f"terminal_profile:{c}" for c in (schema.X_TERMINAL, schema.Y_TERMINAL)]
        self.refs = refs
        by_view: dict[str, list[str]] = {}
        for ref in refs:
            view, name = ref.split(":")
            by_view.setdefault(view, []).append(name)
        fs = store.store
        # (view, its join key, the features asked): resolved once, at start.
        self._views = [(fv, fv.join_keys[0], by_view[fv.name]) for fv in map(fs.get_feature_view, by_view)]
        # Feast's own provider, asked directly: `get_online_features` rebuilds the request and
        # converts the response on every call, which cost more than the reads themselves
        # (about 0.7 of its 1 ms on SQLite); the rows and timestamps are the same.
        self._provider = fs._get_provider()
        self._config = fs.config
        self._redis = _redis_store(self._provider, self._config)
        # Redis only: per view, the name its hashes are stored under, the fields asked (the
        # timestamp's included) and their hashed keys; the same on every read, so built once.
        self._redis_fields = (
            [] if self._redis is None else [self._redis_view(fv, n) for fv, _, n in self._views]
        )
        if self._redis is not None:
            self._redis._get_client(self._config.online_store).set_retry(fail_fast_retry())
        # SQLite: every view in one statement (`feast_sqlite.SqliteViews`), as Redis in one pipeline.
        sqlite = sqlite_store(self._provider)
        self._sqlite = (
            None
            if sqlite is None
            else SqliteViews(sqlite, self._config, [(fv, names) for fv, _, names in self._views])
        )
        self.gate = OutageGate()

    def read(self, card: int, terminal: int) -> StoreRow:
        """The stored rows of `card` and `terminal`.

        Raises:
            OnlineStoreUnavailableError: The store failed (any error of Feast or its database).
        """
        keys = self.entity_keys(card, terminal)
        values, stamps = self.gate.call(lambda: self._fetch(keys), OnlineStoreUnavailableError)
        card_row = _row(values, self.card_features, required=self.card_features[0])
        term_row = _row(values, self.terminal_features, required=self.terminal_features[0])
        return StoreRow(card_row, term_row, self._distance(values), max(stamps) if stamps else None)

    def entity_keys(self, card: int, terminal: int) -> list[Any]:
        """Feast's entity key of each view, in view order: one key object per entity, shared by
        its views (the stores only read them, and `SqliteViews` serialises each object once)."""
        by_join_key = {
            join_key: EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(int64_val=value)])
            for join_key, value in ((schema.CUSTOMER_ID, card), (schema.TERMINAL_ID, terminal))
        }
        return [by_join_key[join_key] for _, join_key, _ in self._views]

    def _fetch(self, keys: Sequence[Any]) -> tuple[dict[str, Any], list[float]]:
        """The stored values of every view and their timestamps (raises whatever Feast raises)."""
        values: dict[str, Any] = {}
        stamps: list[float] = []
        if self._redis is not None:
            rows = self._read_redis(keys)
        elif self._sqlite is not None:
            rows = self._sqlite.read(keys)
        else:
            rows = self._read_each(keys)
        for (_, _, names), (ts, row) in zip(self._views, rows, strict=True):
            got = {n: _scalar(row.get(n)) for n in names} if row is not None else {}
            # Redis answers a key it does not hold with empty values stamped 1970: no row
            if not any(v is not None for v in got.values()):
                continue
            values.update(got)
            if ts is not None:
                stamps.append(ts.timestamp())
        return values, stamps

    def _read_each(self, keys: Sequence[Any]) -> list[tuple[Any, Any]]:
        """``(timestamp, row)`` per view, one provider call each."""
        # a copy of the names: Feast's Redis store appends its timestamp field to the list
        return [
            self._provider.online_read(self._config, fv, [key], list(names))[0]
            for (fv, _, names), key in zip(self._views, keys, strict=True)
        ]

    def _read_redis(self, keys: Sequence[Any]) -> list[tuple[Any, Any]]:
        """``(timestamp, row)`` per view from Redis in one pipeline (one round trip instead of
        one per view), built and decoded by the Redis store's own helpers."""
        store = self._redis
        commands = [
            (store._generate_redis_keys_for_entities(self._config, [key])[0], hash_keys)
            for (_, _, hash_keys), key in zip(self._redis_fields, keys, strict=True)
        ]
        replies = store._read_hash_fields(self._config, commands)
        return [
            store._get_features_for_entity(reply, fv_name, fields)
            for (fv_name, fields, _), reply in zip(self._redis_fields, replies, strict=True)
        ]

    def _redis_view(self, fv: Any, names: Sequence[str]) -> tuple[str, list[str], list[Any]]:
        """``(stored view name, fields asked, their hash keys)`` of one view in Redis."""
        fv_name = _versioned_fv_name(fv, self._config)
        # a copy of the names: the store appends its timestamp field to the list it is given
        fields, hash_keys = self._redis._generate_hset_keys_for_features(
            fv, list(names), fv_name_override=fv_name
        )
        return fv_name, fields, hash_keys

    def _distance(self, values: Mapping[str, Any]) -> float:
        if not self.geo:
            return math.nan
        xy = [
            values.get(c)
            for c in (schema.X_CUSTOMER, schema.Y_CUSTOMER, schema.X_TERMINAL, schema.Y_TERMINAL)
        ]
        if any(v is None for v in xy):
            return math.nan
        cx, cy, tx_, ty = (float(v) for v in xy)  # type: ignore[arg-type]
        return math.hypot(cx - tx_, cy - ty)


def _redis_store(provider: Any, config: Any) -> Any:
    """The provider's Redis online store when it reads through redis-py (None: another store,
    or Redis through GLIDE, which batches by itself)."""
    from feast.infra.online_stores.redis import RedisClient, RedisOnlineStore

    store = getattr(provider, "online_store", None)
    if not isinstance(store, RedisOnlineStore) or config.online_store.client == RedisClient.glide:
        return None
    return store


def _scalar(value: Any) -> Any:
    """A Feast `ValueProto` of a scalar as a Python value (None: missing or null)."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)


def _row(values: Mapping[str, Any], names: Sequence[str], *, required: str) -> dict[str, float] | None:
    if values.get(required) is None:
        return None
    return {n: (math.nan if values.get(n) is None else float(values[n])) for n in names}


def snapshot_card_features(
    tx: TransactionIn, row: Mapping[str, float], windows: Sequence[int]
) -> dict[str, float]:
    """Card inputs from the store's midnight snapshot alone (a card the ledger does not know):
    the snapshot's windows plus this transaction, the gap from the pushed last transaction."""
    amount = float(tx.TX_AMOUNT)
    out: dict[str, float] = {}
    for w in windows:
        n = row.get(f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW", math.nan)
        avg = row.get(f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW", math.nan)
        if math.isfinite(n) and math.isfinite(avg):
            out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = n + 1
            out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = (n * avg + amount) / (n + 1)
        else:
            out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = math.nan
            out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = math.nan
    mean = row.get(f"CUSTOMER_ID_AVG_AMOUNT_{max(windows)}DAY_WINDOW", math.nan)
    out["AMOUNT_TO_CUSTOMER_MEAN"] = amount / mean if math.isfinite(mean) and mean > 0 else 1.0
    last = row.get("LAST_TX_EPOCH_S", math.nan)
    gap = epoch_seconds(tx.TX_DATETIME) - last if math.isfinite(last) else math.inf
    out["SECONDS_SINCE_LAST_TX"] = min(max(gap, 0.0), float(feat.SECONDS_CAP))
    # Not in the store: unknown (the model's typical value is used).
    for name in (
        "CUSTOMER_ID_NB_TX_1H_WINDOW",
        "SMALL_AMOUNT_BURST_1H",
        *feat.HABIT_FEATURES,
        "NEW_DEVICE",
        "NEW_COUNTRY",
        "NEW_TERMINAL",
    ):
        out[name] = math.nan
    return out


# ------------------------------------------------------------------------------------ assembly
class Geo:
    """Home and terminal coordinates from the simulator's side tables: the distance from home
    when the online store holds no coordinates for the card or terminal (reference data the
    service loads at start; the store's profile views are read first)."""

    def __init__(self, customers: pd.DataFrame, terminals: pd.DataFrame) -> None:
        self.cards = _coordinates(customers, schema.CUSTOMER_ID, schema.X_CUSTOMER, schema.Y_CUSTOMER)
        self.terminals = _coordinates(terminals, schema.TERMINAL_ID, schema.X_TERMINAL, schema.Y_TERMINAL)

    def distance(self, card: int, terminal: int) -> float:
        """Euclidean distance on the grid (NaN when either is unknown)."""
        a, b = self.cards.get(card), self.terminals.get(terminal)
        if a is None or b is None:
            return math.nan
        return math.hypot(a[0] - b[0], a[1] - b[1])


def _coordinates(table: pd.DataFrame, key: str, x: str, y: str) -> dict[int, tuple[float, float]]:
    ids = table[key].to_numpy(dtype=np.int64).tolist()
    xs = table[x].to_numpy(dtype=np.float64).tolist()
    ys = table[y].to_numpy(dtype=np.float64).tolist()
    return {i: (a, b) for i, a, b in zip(ids, xs, ys, strict=True)}


@dataclass
class OnlineFeatures:
    """Every input of one transaction, with the conditions under which they were read."""

    values: dict[str, Any]
    flags: list[str]
    freshness_s: float | None = None
    store_ms: float = 0.0


class OnlineFeatureSource:
    """Assembles a transaction's inputs from the request, the `CardLedger` and the Feast store.

    Args:
        reader: The Feast reader (None: no online store configured; everything else still works).
        ledger: The card state.
        windows: The run's window lengths.
        geo: Coordinates from the side tables, when the store holds none.
        delay_days: The run's label delay (the terminal recency's value without a known fraud
            is ``max(windows) + delay_days``, as in training).
    """

    def __init__(
        self,
        reader: FeastOnlineReader | None,
        ledger: Ledger,
        windows: Sequence[int],
        geo: Geo | None = None,
        delay_days: int = feat.DEFAULT_DELAY_DAYS,
    ) -> None:
        self.reader = reader
        self.ledger = ledger
        self.windows = tuple(windows)
        self.geo = geo
        self.recency_fill = feat.recency_fill(self.windows, delay_days)
        self.warnings = LogThrottle(logger)

    def features(self, tx: TransactionIn) -> OnlineFeatures:
        """The inputs of `tx`; never raises for an online-store failure (flagged instead)."""
        flags: list[str] = []
        t0 = time.perf_counter()
        row: StoreRow | None = None
        if self.reader is not None:
            try:
                row = self.reader.read(tx.CUSTOMER_ID, tx.TERMINAL_ID)
            except OnlineStoreUnavailableError:
                flags.append(ONLINE_STORE_UNAVAILABLE)
        store_ms = (time.perf_counter() - t0) * 1000
        values: dict[str, Any] = request_features(tx)
        values.update(self._card(tx, row, flags))
        values.update(self._terminal(tx, row, flags))
        distance = row.distance if row is not None else math.nan
        if not math.isfinite(distance) and self.geo is not None:
            distance = self.geo.distance(tx.CUSTOMER_ID, tx.TERMINAL_ID)
        values[feat.DISTANCE_FEATURE] = distance
        home = self.ledger.home_country.get(tx.CUSTOMER_ID)
        values[feat.FOREIGN_FEATURE] = (
            math.nan if home is None or tx.COUNTRY is None else float(home != tx.COUNTRY)
        )
        for col in feat.CATEGORICAL_FEATURES:
            values[col] = getattr(tx, col)
        freshness = None
        if row is not None and row.newest_event is not None:
            # Age at the transaction's own time, not the wall clock: a replay of 2018 data would
            # otherwise read years old, and a live stream gets the same value either way.
            freshness = max(0.0, epoch_seconds(tx.TX_DATETIME) - row.newest_event)
        return OnlineFeatures(values, flags, freshness, store_ms)

    def _card(self, tx: TransactionIn, row: StoreRow | None, flags: list[str]) -> dict[str, float]:
        try:
            known = self.ledger.features(tx)
        except CardStateUnavailableError as exc:  # the shared ledger is down: the snapshot decides
            self.warnings.warning("card_state", "card state unavailable (%s)", exc)
            flags.append(CARD_STATE_UNAVAILABLE)
            known = None
        if known is not None:
            return known
        if row is not None and row.card is not None:
            return snapshot_card_features(tx, row.card, self.windows)
        # Unknown to both (or the store is down and the ledger never saw it).
        if ONLINE_STORE_UNAVAILABLE not in flags:
            flags.append(UNKNOWN_CARD)
        return first_transaction_features(tx, self.windows)

    def _terminal(self, tx: TransactionIn, row: StoreRow | None, flags: list[str]) -> dict[str, float]:
        names = feat.terminal_features(self.windows)
        if row is None:
            return dict.fromkeys([*names, *feat.TERMINAL_RECENCY_FEATURES], math.nan)
        if row.terminal is None:
            flags.append(UNKNOWN_TERMINAL)
            # A terminal with no transaction in its windows: what training computes.
            out = dict.fromkeys(names, 0.0)
            out.update(dict.fromkeys(feat.TERMINAL_RECENCY_FEATURES, self.recency_fill))
            return out
        out = {n: row.terminal.get(n, math.nan) for n in names}
        last, first = (row.terminal.get(n, math.nan) for n in feat.TERMINAL_FRAUD_TIMES)
        days = feat.recency_days(epoch_seconds(tx.TX_DATETIME), last, first, self.recency_fill)
        out.update({name: float(v) for name, v in days.items()})
        return out


def read_history(folder: str | os.PathLike[str], *, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The history transactions of a Handbook-layout folder (days before `until` only).

    Raises:
        InputFileError, SchemaError: Not a readable folder of daily files.
    """
    from level4_fraud import data

    tx = data.read_fdh_folder(Path(folder))
    if until is not None:
        tx = tx[tx[schema.TX_DATETIME] < until]
    return tx


def home_countries(customers: pd.DataFrame | None) -> dict[int, str]:
    """Card -> home country from the simulator's customers table (empty without one)."""
    if customers is None or "home_country" not in customers.columns:
        return {}
    ids = customers[schema.CUSTOMER_ID].to_numpy(dtype=np.int64).tolist()
    return dict(zip(ids, customers["home_country"].astype(str).tolist(), strict=True))
