"""Throughput and latency of a replay."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReplayStats:
    """What a replay measured.

    Attributes:
        sent: Transactions offered (requests sent or entries published).
        ok: Transactions decided.
        errors: Transactions that got no decision (HTTP errors, timeouts, bad payloads).
        elapsed_s: From the first scheduled send to the last decision.
        offered_tps: The rate asked for.
        latencies_ms: End to end, per decided transaction: from its scheduled send time to its
            decision (so a replay that falls behind shows it, instead of hiding the queue).
        decisions: Count per decision (approve / review / decline).
        replayed: Decisions answered from the audit log (a retry, or a claimed entry).
        max_lag_ms: Most a send was late on its schedule.
        error_kinds: Count per kind of error (status code or exception name).
    """

    sent: int = 0
    ok: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    offered_tps: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    max_lag_ms: float = 0.0
    error_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def achieved_tps(self) -> float:
        """Decisions per second over the whole replay."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The `q`-th percentile of the latencies in ms (NaN when there are none)."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, object]:
        """The figures the CLI prints, in order."""
        return {
            "sent": self.sent,
            "decided": self.ok,
            "errors": self.errors,
            "elapsed s": round(self.elapsed_s, 3),
            "offered tps": self.offered_tps,
            "achieved tps": self.achieved_tps,
            "latency p50 ms": self.percentile(50),
            "latency p99 ms": self.percentile(99),
            "latency max ms": max(self.latencies_ms) if self.latencies_ms else float("nan"),
            "max send lag ms": self.max_lag_ms,
            "decisions": ", ".join(f"{k} {v}" for k, v in sorted(self.decisions.items())) or "none",
            "replayed": self.replayed,
            "error kinds": ", ".join(f"{k} {v}" for k, v in sorted(self.error_kinds.items())) or "none",
        }
