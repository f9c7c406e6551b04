"""Circuit breaker: every transition driven by a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from level3_recsys.serving.breaker import CLOSED, HALF_OPEN, OPEN, BreakerOpenError, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock, changes: list | None = None, **kw) -> CircuitBreaker:
    params = {
        "failure_rate": 0.5,
        "window_s": 10.0,
        "min_calls": 4,
        "open_s": 5.0,
        "half_open_probes": 1,
        "close_after": 2,
        "timeout_s": 0.05,
    }
    params.update(kw)
    on_change = (lambda old, new: changes.append((old, new))) if changes is not None else None
    return CircuitBreaker("t", clock=clock, on_change=on_change, **params)


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise ConnectionError("down")


async def hang() -> str:
    await asyncio.sleep(10)
    return "late"


def run(coro):
    return asyncio.run(coro)


def test_stays_closed_below_min_calls_and_below_rate():
    clock = FakeClock()
    b = make(clock)
    for _ in range(3):  # 3 failures < min_calls 4
        b.record(False, probe=False)
    assert b.state == CLOSED
    b = make(clock)
    for ok_ in (True, True, True, False, True, False, True):  # 2/7 < 0.5
        b.record(ok_, probe=False)
    assert b.state == CLOSED
    assert b.window() == (7, 2)


def test_opens_at_failure_rate_and_refuses_calls():
    clock = FakeClock()
    changes: list = []
    b = make(clock, changes)
    for ok_ in (True, False, True, False):  # 2/4 = 0.5 >= 0.5
        b.record(ok_, probe=False)
    assert b.state == OPEN
    assert changes == [(CLOSED, OPEN)]
    with pytest.raises(BreakerOpenError):
        run(b.call(ok))


def test_old_outcomes_leave_the_window():
    clock = FakeClock()
    b = make(clock)
    for _ in range(3):
        b.record(False, probe=False)
    clock.advance(11)  # the three failures are now outside the 10 s window
    b.record(False, probe=False)
    assert b.window() == (1, 1)
    assert b.state == CLOSED


def test_open_turns_half_open_after_wait_then_closes_on_successful_probes():
    clock = FakeClock()
    changes: list = []
    b = make(clock, changes)
    for _ in range(4):
        b.record(False, probe=False)
    assert b.state == OPEN
    clock.advance(4.9)
    assert b.state == OPEN
    clock.advance(0.2)
    assert b.state == HALF_OPEN
    assert run(b.call(ok)) == "ok"
    assert b.state == HALF_OPEN  # one success of the two needed
    assert run(b.call(ok)) == "ok"
    assert b.state == CLOSED
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert b.window() == (0, 0)  # closing starts a clean window


def test_failed_probe_reopens_for_another_wait():
    clock = FakeClock()
    changes: list = []
    b = make(clock, changes)
    for _ in range(4):
        b.record(False, probe=False)
    clock.advance(5)
    with pytest.raises(ConnectionError):
        run(b.call(boom))
    assert b.state == OPEN
    clock.advance(4)
    assert b.state == OPEN  # the wait restarted at the failed probe
    clock.advance(1)
    assert b.state == HALF_OPEN
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN)]


def test_half_open_admits_only_the_probe_budget():
    clock = FakeClock()
    b = make(clock)
    for _ in range(4):
        b.record(False, probe=False)
    clock.advance(5)
    assert b.acquire() is True  # the single probe slot
    assert b.acquire() is False  # concurrent request: refused (served by the fallback)
    b.record(True, probe=True)
    assert b.acquire() is True  # slot free again
    b.record(True, probe=True)
    assert b.state == CLOSED


def test_timeout_counts_as_failure_and_is_bounded():
    clock = FakeClock()
    b = make(clock, min_calls=2, timeout_s=0.05)

    async def two_hangs() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await b.call(hang)
        return loop.time() - start

    elapsed = run(two_hangs())
    assert elapsed < 1.0  # two 0.05 s deadlines, not two 10 s hangs
    assert b.state == OPEN


def test_stale_outcome_after_opening_is_ignored():
    clock = FakeClock()
    b = make(clock)
    for _ in range(4):
        b.record(False, probe=False)
    assert b.state == OPEN
    b.record(True, probe=False)  # a call that started while closed finishes late
    assert b.state == OPEN
    assert b.window() == (4, 4)


def test_cancelled_probe_frees_its_slot():
    clock = FakeClock()
    b = make(clock)
    for _ in range(4):
        b.record(False, probe=False)
    clock.advance(5)

    async def cancel_probe() -> None:
        task = asyncio.create_task(b.call(hang))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_probe())
    assert b.state == HALF_OPEN
    assert b.acquire() is True


def test_invalid_rate_rejected():
    with pytest.raises(ValueError, match="failure_rate"):
        CircuitBreaker(failure_rate=0)
