"""`serving.outage`: a failure repeated on every request is logged once per interval, with
the count of the messages left out, and each kind of failure has its own interval."""

from __future__ import annotations

import logging

from level4_fraud.serving.outage import LogThrottle, OutageGate


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_repeated_warning_is_logged_once_per_interval_with_the_count_left_out(caplog) -> None:
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("throttle-test"), every_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="throttle-test"):
        logged = []
        for _ in range(50):  # 50 requests within 4.9 s
            logged.append(throttle.warning("ledger", "card state unavailable (%s)", "down"))
            clock.t += 0.1
        clock.t = 110.5
        logged.append(throttle.warning("ledger", "card state unavailable (%s)", "down"))
    assert logged == [True] + [False] * 49 + [True]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "card state unavailable (down)"
    assert messages[1].startswith("card state unavailable (down) (49 more like it in the last 10 s)")


def test_each_kind_of_failure_has_its_own_interval(caplog) -> None:
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("throttle-test"), every_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="throttle-test"):
        assert throttle.warning("ledger", "ledger down")
        assert throttle.error("model", "model failed")
        assert not throttle.warning("ledger", "ledger down")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "ledger down"),
        (logging.ERROR, "model failed"),
    ]


def test_a_gate_refuses_calls_for_a_while_after_a_failure_then_lets_one_probe() -> None:
    clock = Clock()
    gate = OutageGate(retry_after_s=1.0, clock=clock)
    assert gate.refused() is None
    gate.failed("ConnectionError: refused")
    clock.t += 0.99
    assert gate.refused() == "ConnectionError: refused (not retried for 1 s)"
    clock.t += 0.02
    assert gate.refused() is None  # the next call probes the service again
