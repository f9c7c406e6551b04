"""The card ledger in Redis (`serving.redis_ledger`): the in-process ledger's inputs exactly, one
state shared by every process and kept across restarts, a load done once, and an outage flagged
rather than raised. Tests marked ``services`` need Redis on 127.0.0.1:6379."""

from __future__ import annotations

import logging
import math
import uuid

import pandas as pd
import pytest

from level4_fraud.serving.online import (
    CardLedger,
    CardStateUnavailableError,
    OnlineFeatureSource,
    read_history,
)
from level4_fraud.serving.redis_ledger import RedisCardLedger, connect_ledger, ledger_namespace
from level4_fraud.serving.schemas import CARD_STATE_UNAVAILABLE, UNKNOWN_CARD, TransactionIn
from level4_fraud.tests.integration_helpers import small_folder
from level4_fraud.tests.serving_helpers import payload
from shared.errors import ConfigError

REDIS_URL = "redis://127.0.0.1:6379/0"
HABIT = (14, 30)
WINDOWS = (1, 7, 30)


@pytest.fixture(scope="module")
def days() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The small simulation's history (all days but the last) and its last day, in time order."""
    tx = read_history(small_folder() / "transactions")
    last = tx["TX_DATETIME"].max().normalize()
    replay = tx[tx["TX_DATETIME"] >= last].sort_values(["TX_DATETIME", "TRANSACTION_ID"])
    return tx[tx["TX_DATETIME"] < last], replay.reset_index(drop=True)


@pytest.fixture()
def namespace():
    ns = ledger_namespace(f"test-{uuid.uuid4().hex[:12]}")
    yield ns
    RedisCardLedger(connect_ledger(REDIS_URL), ns).clear()


def _shared(ns: str) -> RedisCardLedger:
    return RedisCardLedger(connect_ledger(REDIS_URL), ns, WINDOWS, 31, habit=HABIT)


def _same(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        if math.isnan(value):
            assert math.isnan(b[name]), name
        else:
            assert b[name] == pytest.approx(value, rel=1e-12, abs=1e-9), name


@pytest.mark.services
def test_redis_ledger_gives_the_in_process_ledgers_inputs(days, namespace) -> None:
    """History loaded, then a day replayed (each payment scored, then recorded, some twice as after
    a retry): every input equal, the card's habit and first-use flags included."""
    history, replay = days
    memory = CardLedger.from_transactions(history, windows=WINDOWS, keep_days=31, habit=HABIT)
    shared = _shared(namespace)
    assert shared.load(lambda: history)
    assert len(shared) == len(memory)
    compared = 0
    for i, row in replay.head(400).iterrows():
        tx = TransactionIn.model_validate(payload(row))
        a, b = memory.features(tx), shared.features(tx)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            _same(a, b)
            compared += 1
        memory.record(tx)
        shared.record(tx)
        if i % 7 == 0:
            shared.record(tx)  # a retry: recorded once
    assert compared > 300
    assert len(shared) == len(memory)


@pytest.mark.services
def test_every_process_sees_one_card_state_that_outlives_a_restart(days, namespace) -> None:
    history, replay = days
    first, second = _shared(namespace), _shared(namespace)  # two clients, as two worker processes
    assert first.load(lambda: history)
    assert not second.load(lambda: history)  # already loaded: left as it is
    row = replay.iloc[0]
    tx = TransactionIn.model_validate(payload(row))
    before = second.features(tx)
    assert before is not None
    first.record(tx)
    later = TransactionIn.model_validate({**payload(row), "TRANSACTION_ID": 10**12, "TX_DATETIME": (
        pd.Timestamp(row["TX_DATETIME"]) + pd.Timedelta(minutes=1)).isoformat()})  # fmt: skip
    seen = second.features(later)
    assert seen is not None
    assert seen["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == before["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] + 1
    assert seen["SECONDS_SINCE_LAST_TX"] == pytest.approx(60.0)
    restarted = _shared(namespace)
    assert not restarted.load(lambda: history)  # a restart keeps what was decided since the history
    assert restarted.features(later) == seen


@pytest.mark.services
def test_a_process_waits_for_another_ones_load(days, namespace) -> None:
    history, _ = days
    client = connect_ledger(REDIS_URL)
    client.set(f"{namespace}:loading", "1", ex=30)  # another process is loading
    with pytest.raises(ConfigError, match="not loaded within"):
        _shared(namespace).load(lambda: history, wait_s=0.3)
    client.set(f"{namespace}:ready", "1")
    assert not _shared(namespace).load(lambda: history, wait_s=0.3)


def test_a_redis_outage_is_flagged_and_the_card_scored_without_its_state(caplog) -> None:
    import redis

    down = RedisCardLedger(
        redis.Redis(port=1, decode_responses=True, socket_connect_timeout=0.2), "l4ledger:x"
    )
    tx = TransactionIn.model_validate(
        {"TRANSACTION_ID": 1, "TX_DATETIME": "2018-05-01T10:00:00", "CUSTOMER_ID": 3, "TERMINAL_ID": 4,
         "TX_AMOUNT": 12.5}
    )  # fmt: skip
    with pytest.raises(CardStateUnavailableError):
        down.features(tx)
    with pytest.raises(CardStateUnavailableError):
        down.record(tx)
    source = OnlineFeatureSource(None, down, WINDOWS)
    with caplog.at_level(logging.WARNING, logger="level4_fraud.serving.online"):
        outs = [source.features(tx) for _ in range(5)]
    for out in outs:  # every decision is flagged ...
        assert CARD_STATE_UNAVAILABLE in out.flags and UNKNOWN_CARD in out.flags
        assert out.values["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 1.0  # a first transaction's inputs
    # ... but the outage is logged once, not once per request
    assert sum("card state unavailable" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.services
def test_after_a_failure_the_ledger_answers_at_once_until_it_probes_redis_again(namespace) -> None:
    """While Redis is down each request must not wait for the client's retries: after one failure
    the ledger refuses at once (no call to Redis, even one that would answer) for the gate's
    interval, then asks Redis again and gets the state back."""
    import redis

    from level4_fraud.serving.outage import OutageGate

    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    gate = OutageGate(retry_after_s=1.0, clock=clock)
    ledger = RedisCardLedger(redis.Redis(port=1, decode_responses=True), namespace, WINDOWS, gate=gate)
    tx = TransactionIn.model_validate(
        {"TRANSACTION_ID": 1, "TX_DATETIME": "2018-05-01T10:00:00", "CUSTOMER_ID": 3, "TERMINAL_ID": 4,
         "TX_AMOUNT": 12.5}
    )  # fmt: skip
    with pytest.raises(CardStateUnavailableError, match="Connection"):
        ledger.features(tx)
    ledger.client = connect_ledger(REDIS_URL)  # Redis is back ...
    clock.t = 0.5
    with pytest.raises(CardStateUnavailableError, match="not retried for 1 s"):
        ledger.features(tx)  # ... but the gate has not let a probe through yet
    clock.t = 1.5
    assert ledger.features(tx) is None  # asked again: a card this namespace has never seen


def test_no_redis_at_the_ledger_url_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="no Redis for the card ledger"):
        connect_ledger("redis://127.0.0.1:1/0")


@pytest.mark.services
def test_payments_that_left_every_window_are_forgotten_as_in_process(namespace) -> None:
    """keep = 45 days (the habit's reach): a payment 46 days before the newest is dropped from the
    sorted set, yet the card's last payment time stays, exactly as the in-process ledger does."""
    shared, memory = _shared(namespace), CardLedger(WINDOWS, 31, habit=HABIT)
    start = pd.Timestamp("2018-04-01 08:00:00")
    for i, (days_later, amount) in enumerate([(0, 20.0), (0.5, 35.0), (46, 50.0), (46.2, 8.0)]):
        tx = TransactionIn.model_validate(
            {"TRANSACTION_ID": i, "TX_DATETIME": (start + pd.Timedelta(days=days_later)).isoformat(),
             "CUSTOMER_ID": 5, "TERMINAL_ID": 9, "TX_AMOUNT": amount}
        )  # fmt: skip
        if i:
            _same(memory.features(tx), shared.features(tx))  # type: ignore[arg-type]
        memory.record(tx)
        shared.record(tx)
    kept = shared.client.zrange(f"{namespace}:tx:5", 0, -1)
    assert (
        kept
        == ["2|50.0", "3|8.0"]
        == [f"{i}|{a!r}" for i, a in zip((2, 3), memory._cards[5].amounts, strict=True)]
    )
