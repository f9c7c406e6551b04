"""The load test's figures: Locust statistics rows, a scenario's result, medians over repeated runs."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from shared.errors import ConfigError


@dataclass
class Stats:
    """One Locust stats row (a request name, or the aggregate)."""

    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    max: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass
class ScenarioResult:
    """A scenario's Locust figures, with the breaker timeline for ``model_killed``."""

    name: str
    duration_s: float
    total: Stats
    by_name: dict[str, Stats]
    events: dict[str, float] = field(default_factory=dict)
    breaker: list[tuple[float, int]] = field(default_factory=list)
    runs: int = 1
    close_times: list[float] = field(default_factory=list)
    server_cpu_s: float = float("nan")
    model_cpu_s: float = float("nan")
    server_rss_mib: tuple[float, float] = (float("nan"), float("nan"))

    def cpu_ms_per_request(self, which: str = "server") -> float:
        """CPU milliseconds the server (or the model service) spent per request answered."""
        cpu = self.server_cpu_s if which == "server" else self.model_cpu_s
        return 1000 * cpu / self.total.requests if self.total.requests else float("nan")

    def recs(self, source: str | None = None) -> Stats | None:
        """Stats of recommendation requests (all sources pooled when `source` is None)."""
        if source is not None:
            return self.by_name.get(f"recs:{source}")
        rows = [s for n, s in self.by_name.items() if n.startswith("recs")]
        return rows[0] if len(rows) == 1 else None


def parse_stats(path: Path) -> tuple[Stats, dict[str, Stats]]:
    """Read Locust's ``*_stats.csv``: the aggregate row and one row per request name.

    Raises:
        ConfigError: The file is missing (Locust did not run).
    """
    if not path.is_file():
        raise ConfigError(f"Locust wrote no statistics at {path}")
    rows: dict[str, Stats] = {}
    total = None
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stats = Stats(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]),
                p50=_num(row["50%"]),
                p95=_num(row["95%"]),
                p99=_num(row["99%"]),
                max=_num(row["Max Response Time"]),
            )
            if row["Name"] == "Aggregated":
                total = stats
            else:
                rows[row["Name"]] = stats
    if total is None:
        raise ConfigError(f"{path} has no Aggregated row")
    return total, rows


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "N/A" when a name had no request
        return float("nan")


def finite_median(values: list[float]) -> float:
    """The median of the finite values (NaN: a figure a run could not measure); NaN when none is."""
    finite = [v for v in values if v == v]
    return float(median(finite)) if finite else float("nan")


def _median_stats(rows: list[Stats]) -> Stats:
    return Stats(
        name=rows[0].name,
        requests=round(finite_median([r.requests for r in rows])),
        failures=max(r.failures for r in rows),  # errors: the worst run, never hidden by a median
        rps=finite_median([r.rps for r in rows]),
        p50=finite_median([r.p50 for r in rows]),
        p95=finite_median([r.p95 for r in rows]),
        p99=finite_median([r.p99 for r in rows]),
        max=max(r.max for r in rows),
    )


def median_results(runs: list[dict[str, ScenarioResult]]) -> dict[str, ScenarioResult]:
    """Per scenario, the median of each figure over repeated runs.

    Throughput and percentiles are medians; failures and the maximum latency are the worst run's;
    breaker event times are medians and the state timeline is the first run's.
    """
    out: dict[str, ScenarioResult] = {}
    for name in runs[0]:
        results = [r[name] for r in runs if name in r]
        names = sorted({n for r in results for n in r.by_name})
        by_name = {n: _median_stats([r.by_name[n] for r in results if n in r.by_name]) for n in names}
        keys = set.intersection(*(set(r.events) for r in results)) if results[0].events else set()
        events = {k: finite_median([r.events[k] for r in results]) for k in sorted(keys)}
        combined = ScenarioResult(
            name, results[0].duration_s, _median_stats([r.total for r in results]), by_name, events
        )
        combined.breaker = results[0].breaker
        combined.runs = len(results)
        combined.server_cpu_s = finite_median([r.server_cpu_s for r in results])
        combined.model_cpu_s = finite_median([r.model_cpu_s for r in results])
        combined.server_rss_mib = (
            finite_median([r.server_rss_mib[0] for r in results]),
            finite_median([r.server_rss_mib[1] for r in results]),
        )
        combined.close_times = [
            r.events["breaker_closed_s"] - r.events["ready_again_s"]
            for r in results
            if "breaker_closed_s" in r.events
        ]
        out[name] = combined
    return out
