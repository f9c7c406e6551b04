"""A small asyncio circuit breaker around the model-service call.

States and transitions:

* **closed**: calls go through; each outcome lands in a sliding time window. When the window
  holds at least ``min_calls`` outcomes and the failure share reaches ``failure_rate``, the
  breaker **opens**.
* **open**: calls are refused at once (`BreakerOpenError`; the API serves the popularity
  fallback). After ``open_s`` seconds the breaker turns **half-open**.
* **half-open**: at most ``half_open_probes`` calls at a time go through as probes; the others
  are refused. ``close_after`` successful probes in a row **close** it (with a clean window);
  one failed probe **opens** it again for another ``open_s``.

A call that exceeds ``timeout_s`` is cancelled and counts as a failure, so a hung model
service costs each request at most the timeout, and only until the breaker opens.

The clock is injectable (tests drive every transition with a fake one); state changes are
reported to an ``on_change(old, new)`` callback (the API exports them as a Prometheus gauge).
pybreaker is not used: its 1.x API is synchronous and counts consecutive failures, not a rate
over a window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class BreakerOpenError(RuntimeError):
    """The breaker refused the call (open, or half-open with every probe slot taken)."""


class CircuitBreaker:
    """Failure-rate circuit breaker with a sliding time window and half-open probing.

    Args:
        name: Label of the breaker in metrics and logs.
        failure_rate: Failure share (0..1] in the window that opens the breaker.
        window_s: Length of the sliding window of outcomes.
        min_calls: Outcomes needed in the window before the breaker may open.
        open_s: Time spent open before probing.
        half_open_probes: Concurrent probes while half-open.
        close_after: Successful probes in a row that close the breaker.
        timeout_s: Deadline of one call (None: no deadline from the breaker).
        clock: Monotonic time source in seconds.
        on_change: Called with (old_state, new_state) on every transition.
        max_window_calls: Hard bound on stored outcomes (memory stays bounded under any load).
    """

    def __init__(
        self,
        name: str = "model",
        *,
        failure_rate: float = 0.5,
        window_s: float = 10.0,
        min_calls: int = 5,
        open_s: float = 5.0,
        half_open_probes: int = 1,
        close_after: int = 2,
        timeout_s: float | None = 0.3,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
        max_window_calls: int = 10_000,
    ) -> None:
        if not 0 < failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        self.name = name
        self.failure_rate = failure_rate
        self.window_s = window_s
        self.min_calls = min_calls
        self.open_s = open_s
        self.half_open_probes = half_open_probes
        self.close_after = close_after
        self.timeout_s = timeout_s
        self.clock = clock
        self.on_change = on_change
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=max_window_calls)
        self._failures = 0
        self._state = CLOSED
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> str:
        """Current state; an open breaker whose wait has passed reads (and becomes) half-open."""
        if self._state == OPEN and self.clock() - self._opened_at >= self.open_s:
            self._transition(HALF_OPEN)
        return self._state

    def _transition(self, new: str) -> None:
        old, self._state = self._state, new
        if new == OPEN:
            self._opened_at = self.clock()
        if new in (HALF_OPEN, OPEN):
            self._probe_successes = 0
        if new == CLOSED:
            self._outcomes.clear()
            self._failures = 0
        if old != new and self.on_change is not None:
            self.on_change(old, new)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, ok = self._outcomes.popleft()
            self._failures -= not ok

    def window(self) -> tuple[int, int]:
        """(calls, failures) in the current window."""
        self._trim(self.clock())
        return len(self._outcomes), self._failures

    # ------------------------------------------------------------------ protocol
    def acquire(self) -> bool:
        """Ask to make a call: True when allowed (a probe slot is taken when half-open)."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self._probes_in_flight < self.half_open_probes:
            self._probes_in_flight += 1
            return True
        return False

    def record(self, ok: bool, *, probe: bool) -> None:
        """Record the outcome of an allowed call (`probe`: it was allowed while half-open)."""
        if probe:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            if self._state != HALF_OPEN:
                return  # a late probe after another probe already decided
            if ok:
                self._probe_successes += 1
                if self._probe_successes >= self.close_after:
                    self._transition(CLOSED)
            else:
                self._transition(OPEN)
            return
        if self._state != CLOSED:
            return  # a call that started before the breaker opened: its outcome is stale
        now = self.clock()
        if len(self._outcomes) == self._outcomes.maxlen:
            _, dropped_ok = self._outcomes[0]
            self._failures -= not dropped_ok
        self._outcomes.append((now, ok))
        self._failures += not ok
        self._trim(now)
        n = len(self._outcomes)
        if n >= self.min_calls and self._failures / n >= self.failure_rate:
            self._transition(OPEN)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` under the breaker and its timeout.

        Raises:
            BreakerOpenError: Refused without calling.
            TimeoutError: The call took longer than ``timeout_s`` (recorded as a failure).
            Exception: Whatever ``fn`` raised (recorded as a failure).
        """
        was_half_open = self.state == HALF_OPEN
        if not self.acquire():
            raise BreakerOpenError(f"circuit breaker {self.name!r} is {self._state}")
        try:
            if self.timeout_s is None:
                result = await fn()
            else:
                async with asyncio.timeout(self.timeout_s):
                    result = await fn()
        except asyncio.CancelledError:
            # the caller went away: not the model's fault, free the probe slot without judging
            if was_half_open:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
            raise
        except BaseException:
            self.record(False, probe=was_half_open)
            raise
        self.record(True, probe=was_half_open)
        return result
