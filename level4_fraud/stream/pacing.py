"""A drift-free pacing schedule: message ``i`` is due at ``start + i / tps``.

Sleeping a fixed ``1 / tps`` after each message drifts: every oversleep and every message's own
cost add up, and the achieved rate falls short. Absolute deadlines do not: a late wake-up sends
everything already due at once and the next deadline is unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """Deadlines of a constant-rate stream.

    Attributes:
        tps: Messages per second (> 0).
        start: Deadline of message 0, in the clock's seconds.
    """

    tps: float
    start: float = 0.0

    def __post_init__(self) -> None:
        if not (self.tps > 0 and math.isfinite(self.tps)):
            raise ValueError(f"tps must be a positive number, got {self.tps}")

    def deadline(self, i: int) -> float:
        """When message `i` (0-based) is due."""
        return self.start + i / self.tps

    def due(self, now: float) -> int:
        """How many messages are due at `now` (those with a deadline <= now)."""
        if now < self.start:
            return 0
        return math.floor((now - self.start) * self.tps) + 1


def deadlines(n: int, tps: float, start: float = 0.0) -> np.ndarray:
    """The deadlines of `n` messages at `tps` from `start` (each computed, never accumulated)."""
    sched = Schedule(tps, start)
    return sched.start + np.arange(n, dtype="float64") / sched.tps


def paced_batches(
    n: int,
    tps: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    max_batch: int = 256,
    start: float | None = None,
) -> Iterator[tuple[int, int, float]]:
    """Release `n` messages at `tps`, in batches of everything that is due.

    Yields ``(lo, hi, lag)``: messages ``lo`` to ``hi - 1`` are due now; `lag` is how late message
    `lo` is (seconds, >= 0 up to clock resolution). A slow consumer of the batches, or a late
    wake-up, makes the next batch larger instead of shifting every later deadline.

    Args:
        n: Messages to release.
        tps: Rate in messages per second.
        clock: Monotonic clock in seconds.
        sleep: Sleeps the given seconds.
        max_batch: Most messages in one batch.
        start: Deadline of message 0 on `clock` (default: now).
    """
    sched = Schedule(tps, clock() if start is None else start)
    i = 0
    while i < n:
        wait = sched.deadline(i) - clock()
        if wait > 0:
            sleep(wait)
        now = clock()
        # We waited for message i's deadline: it is due even if rounding says otherwise.
        hi = min(n, i + max_batch, max(i + 1, sched.due(now)))
        yield i, hi, max(0.0, now - sched.deadline(i))
        i = hi
