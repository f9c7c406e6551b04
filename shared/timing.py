"""Wall-clock timing and peak-memory readings."""

from __future__ import annotations

import resource
import sys
import time
from types import TracebackType


class Timer:
    """Context manager measuring wall time with ``time.perf_counter``.

    Example:
        >>> with Timer() as t:
        ...     pass
        >>> t.seconds >= 0
        True
    """

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.end = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Elapsed seconds (so far, if still running)."""
        if self.start is None:
            return 0.0
        end = self.end if self.end is not None else time.perf_counter()
        return end - self.start


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory of this process (or its finished children) in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
