"""What the service does while a backing service (the shared card ledger in Redis, the online
store, a model) is down: fail fast and log once in a while.

An outage fails every request the same way until it ends. Two costs follow, and each has a
guard here:

* **Time.** redis-py 8 retries a refused connection 10 times with backoff, about 4 s, so every
  request would wait that long before its fallback. After a failure, an `OutageGate` refuses
  calls at once for ``retry_after_s``; the first call after that probes the service again.
* **The log.** At 500 transactions/s a warning per request floods it. `LogThrottle` logs each
  kind of failure the first time, then at most once per interval with the count of the ones
  left out; the flags in the responses and the metrics still count every request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class OutageGate:
    """Refuse calls to a backing service for `retry_after_s` after one of them failed.

    Args:
        retry_after_s: How long calls are refused after a failure (0: never refused).
        clock: Seconds (monotonic); tests pass their own.
    """

    def __init__(self, retry_after_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_after_s, self.clock = retry_after_s, clock
        self._until = -math.inf
        self._reason = ""

    def refused(self) -> str | None:
        """Why a call now is refused (the failure that opened the gate), or None: go ahead."""
        if self.clock() < self._until:
            return f"{self._reason} (not retried for {self.retry_after_s:g} s)"
        return None

    def failed(self, reason: str) -> None:
        """A call failed: refuse the next ones for `retry_after_s`."""
        self._reason = reason
        self._until = self.clock() + self.retry_after_s

    def call(self, call: Callable[[], T], error: Callable[[str], Exception]) -> T:
        """``call()``, refused at once while the gate is shut.

        Raises:
            Exception: ``error(reason)``: refused, or the call failed (and the gate shuts); the
                reason is the failure's first line, at most 300 characters.
        """
        refused = self.refused()
        if refused is not None:
            raise error(refused)
        try:
            return call()
        except Exception as exc:  # the backing service's errors come in many types
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.failed(reason)
            raise error(reason) from exc


def fail_fast_retry() -> Any:
    """redis-py's retry policy for a backing Redis: one retry, at once (its default, 10 with
    backoff, holds a request about 4 s while Redis refuses connections; `OutageGate` does the
    rest)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 1)


class LogThrottle:
    """Log each `kind` of message at most once per `every_s` seconds.

    Args:
        logger: Where messages go.
        every_s: Smallest interval between two messages of one kind.
        clock: Seconds (monotonic); tests pass their own.
    """

    def __init__(
        self, logger: logging.Logger, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger, self.every_s, self.clock = logger, every_s, clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless a message of `kind` went out less than `every_s` ago.

        Returns:
            True when the message was logged (with the count left out since the last one).
        """
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every_s:
                self._skipped[kind] = self._skipped.get(kind, 0) + 1
                return False
            self._last[kind] = now
            skipped = self._skipped.pop(kind, 0)
        if skipped:
            msg = f"{msg} ({skipped} more like it in the last {now - (last or now):.0f} s)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        """`log` at WARNING."""
        return self.log(logging.WARNING, kind, msg, *args)

    def error(self, kind: str, msg: str, *args: object) -> bool:
        """`log` at ERROR."""
        return self.log(logging.ERROR, kind, msg, *args)
