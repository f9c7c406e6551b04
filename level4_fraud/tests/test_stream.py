"""The event stream's pure parts: the pacing schedule, the replay's order and payloads, and the
figures a brokered replay reports. (Redis and the consumer group: test_stream_redis.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level4_fraud import schema
from level4_fraud.data import write_fdh_folder
from level4_fraud.simulate import SimulatorConfig, simulate
from level4_fraud.stream.pacing import Schedule, deadlines, paced_batches
from level4_fraud.stream.producer import FIELD_SENT, Published, stats_from_results
from level4_fraud.stream.replay import REQUEST_FIELDS, encode, load_replay, payloads, replay_folder
from shared.errors import EmptyDataError, InputFileError


class FakeClock:
    """A clock whose sleeps overshoot: each takes `factor` times as long, plus `extra` seconds."""

    def __init__(self, factor: float = 1.0, extra: float = 0.0) -> None:
        self.now = 100.0
        self.factor = factor
        self.extra = extra

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds * self.factor + self.extra


# --- pacing ---------------------------------------------------------------------------------------


def test_deadlines_are_absolute_offsets_of_the_start() -> None:
    got = deadlines(5, 500.0, start=10.0)
    np.testing.assert_allclose(got, [10.0, 10.002, 10.004, 10.006, 10.008], rtol=0, atol=1e-12)
    # Computed from the index, never accumulated: no rounding error builds up over a long replay.
    assert Schedule(3.0, start=7.0).deadline(1_000_000) == 7.0 + 1_000_000 / 3.0


def test_due_counts_the_messages_whose_deadline_has_passed() -> None:
    sched = Schedule(500.0, start=0.0)
    assert sched.due(-0.001) == 0
    assert sched.due(0.0) == 1
    assert sched.due(0.0019) == 1
    assert sched.due(0.0021) == 2
    assert sched.due(1.0) == 501


@pytest.mark.parametrize("tps", [0.0, -5.0, float("inf"), float("nan")])
def test_schedule_rejects_a_rate_that_is_not_positive(tps: float) -> None:
    with pytest.raises(ValueError, match="tps"):
        Schedule(tps)


def test_paced_batches_do_not_drift_when_every_sleep_overshoots() -> None:
    clock = FakeClock(factor=1.5, extra=0.001)  # each sleep 50 % too long, plus 1 ms
    start = clock()
    released: list[int] = []
    for lo, hi, lag in paced_batches(1000, 500.0, clock=clock, sleep=clock.sleep):
        # nothing leaves early: the batch's last message is due by now
        assert clock() >= start + (hi - 1) / 500.0 - 1e-9
        assert lag >= 0
        released.extend(range(lo, hi))
    assert released == list(range(1000))
    # 1000 messages at 500/s: the last is due 1.998 s after the start; a sleep of 1/tps per
    # message would have taken 1000 * (0.002 * 1.5 + 0.001) = 4 s.
    assert clock() - start == pytest.approx(1.998, abs=0.02)


def test_paced_batches_catch_up_after_a_stall_without_moving_later_deadlines() -> None:
    clock = FakeClock()
    start = clock()
    batches = []
    for lo, hi, lag in paced_batches(1000, 500.0, clock=clock, sleep=clock.sleep):
        batches.append((lo, hi, lag))
        if lo == 100:
            clock.now += 0.5011  # the publisher stalls half a second (a GC pause, a slow broker)
    after = next(b for b in batches if b[0] == 101)
    assert after[1] - after[0] == 250  # everything that fell due in the stall goes out at once
    assert after[2] == pytest.approx(0.4991, abs=1e-6)  # and the first of them was that late
    assert clock() - start == pytest.approx(1.998, abs=1e-6)  # the end of the schedule is unchanged
    assert sum(hi - lo for lo, hi, _ in batches) == 1000


def test_paced_batches_cap_the_batch_size() -> None:
    clock = FakeClock()
    clock_start = clock()
    sizes = []
    for lo, hi, _ in paced_batches(300, 1000.0, clock=clock, sleep=clock.sleep, max_batch=64):
        sizes.append(hi - lo)
        if lo == 0:
            clock.now = clock_start + 10.0  # everything is due at once
    assert max(sizes) == 64
    assert sum(sizes) == 300


# --- replay ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shuffled_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A `generate`-style folder whose daily files hold their rows in random order."""
    tx, _, _ = simulate(SimulatorConfig(n_customers=40, n_terminals=80, nb_days=3, seed=5))
    shuffled = tx.sample(frac=1.0, random_state=0).reset_index(drop=True)
    root = tmp_path_factory.mktemp("replay")
    write_fdh_folder(shuffled, root / "transactions")
    day0 = shuffled[shuffled[schema.TX_DATETIME].dt.date == tx[schema.TX_DATETIME].dt.date.min()]
    assert not day0[schema.TX_DATETIME].is_monotonic_increasing  # the files really are out of order
    return root, tx


def test_replay_is_in_time_order_then_by_id(shuffled_folder) -> None:
    root, tx = shuffled_folder
    got = load_replay(replay_folder(root, None, root))
    key = list(zip(got[schema.TX_DATETIME], got[schema.TRANSACTION_ID], strict=True))
    assert key == sorted(key)
    assert sorted(got[schema.TRANSACTION_ID]) == sorted(tx[schema.TRANSACTION_ID])
    # labels never leave the folder
    assert schema.TX_FRAUD not in got.columns and schema.TX_FRAUD_SCENARIO not in got.columns
    assert list(got.columns[: len(REQUEST_FIELDS)]) == list(REQUEST_FIELDS)


def test_replay_limit_and_start_keep_the_earliest_transactions(shuffled_folder) -> None:
    root, tx = shuffled_folder
    ordered = schema.sort_transactions(tx)
    got = load_replay(root / "transactions", limit=25)
    assert list(got[schema.TRANSACTION_ID]) == list(ordered[schema.TRANSACTION_ID].head(25))
    second_day = ordered[schema.TX_DATETIME].dt.normalize().drop_duplicates().iloc[1]
    later = load_replay(root / "transactions", start=str(second_day.date()))
    assert later[schema.TX_DATETIME].min() >= second_day
    assert len(later) == int((ordered[schema.TX_DATETIME] >= second_day).sum())
    with pytest.raises(EmptyDataError):
        load_replay(root / "transactions", limit=0)


def test_payloads_follow_the_replay_order_and_validate_as_requests(shuffled_folder) -> None:
    from level4_fraud.serving.schemas import TransactionIn

    root, _ = shuffled_folder
    frame = load_replay(root / "transactions")
    bodies = payloads(frame)
    assert [b[schema.TRANSACTION_ID] for b in bodies] == list(frame[schema.TRANSACTION_ID])
    parsed = [TransactionIn.model_validate_json(encode(b)) for b in bodies]
    assert [p.TX_DATETIME for p in parsed] == [t.to_pydatetime() for t in frame[schema.TX_DATETIME]]
    assert [p.TX_AMOUNT for p in parsed] == list(frame[schema.TX_AMOUNT])
    card_present = frame[schema.DEVICE_ID].to_numpy() == schema.NO_DEVICE
    assert card_present.any() and (~card_present).any()
    assert all(p.DEVICE_ID is None for p, c in zip(parsed, card_present, strict=True) if c)
    assert all(str(d) == p.DEVICE_ID for p, d in zip(parsed, frame[schema.DEVICE_ID], strict=True) if d >= 0)


def test_replay_folder_resolution(tmp_path: Path, shuffled_folder) -> None:
    root, _ = shuffled_folder
    assert replay_folder(root, None, tmp_path) == root / "transactions"  # a `generate` folder
    assert replay_folder(None, root / "transactions", tmp_path) == root / "transactions"
    assert replay_folder(None, None, root) == root / "transactions"  # the default `generate` output
    with pytest.raises(InputFileError, match="not both"):
        replay_folder(root, root, tmp_path)
    with pytest.raises(InputFileError, match="run `python -m level4_fraud generate`"):
        replay_folder(None, None, tmp_path / "missing")


# --- figures of a brokered replay -------------------------------------------------------------------


def _result(
    tid: int, sent: float, done: float, decision: str = "approve", replayed: str = "0"
) -> tuple[str, dict]:
    return (
        f"{tid}-0",
        {
            "id": str(tid),
            "decision": decision,
            "replayed": replayed,
            FIELD_SENT: f"{sent}",
            "done": f"{done}",
        },
    )


def test_stats_count_each_transaction_once_with_its_first_decision() -> None:
    published = Published(ids=["1-0", "2-0", "3-0", "4-0"], start_wall=1000.0, max_lag_ms=3.0)
    results = [
        _result(1, 1000.000, 1000.010),
        _result(2, 1000.002, 1000.006, decision="decline"),
        # transaction 1 again: its entry was claimed after its first consumer died before XACK
        _result(1, 1000.000, 1012.0, replayed="1"),
        ("9-0", {"id": "3", "error": "bad payload"}),
    ]
    stats = stats_from_results(results, published, tps=500.0)
    assert (stats.sent, stats.ok, stats.errors) == (4, 2, 2)  # 3 bad, 4 never decided
    assert stats.error_kinds == {"bad payload": 1, "no result": 1}
    assert stats.replayed == 1
    assert stats.decisions == {"approve": 1, "decline": 1}
    assert sorted(stats.latencies_ms) == pytest.approx([4.0, 10.0])  # the first decision's, not 12 s
    assert stats.elapsed_s == pytest.approx(0.010)
    assert stats.achieved_tps == pytest.approx(200.0)
    assert stats.percentile(50) == pytest.approx(7.0)
