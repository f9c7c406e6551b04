"""Prometheus metrics of the scoring service (names shared with the alert rules and dashboards).

Each `ServiceMetrics` owns its registry, so several services (tests, FastAPI and a stream
consumer in one process) never collide in the global one.

Several uvicorn workers on one port (``serve --workers N``) use prometheus_client's multiprocess
mode instead: the parent makes a fresh folder (`worker_metrics_dir`) and names it in
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so that each worker's prometheus_client
keeps its values in files there (it chooses once, on import); each worker's
``ServiceMetrics(multiprocess_dir=...)`` answers a scrape with the sum over every worker's files
(`MultiProcessCollector`). Counters and histograms of a worker that exited stay in the sum, so
totals never go back; its gauges are dropped (`reap_dead_processes`). Each gauge says how workers
combine (``multiprocess_mode``, ignored in a single process).

Alert rate = ``rate(fraud_decisions_total{decision=~"review|decline"}) / rate(fraud_decisions_total)``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from level4_fraud.serving.schemas import (
    ONLINE_STORE_UNAVAILABLE,
    UNKNOWN_CARD,
    UNKNOWN_TERMINAL,
    DecisionOut,
)

logger = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
SCORE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.99,
    1.0,
)
# Decision flag -> fraud_fallbacks_total's kind label.
FALLBACK_KINDS = {
    ONLINE_STORE_UNAVAILABLE: "online_store",
    "model_fallback_rules": "model",
    UNKNOWN_CARD: "unknown_card",
    UNKNOWN_TERMINAL: "unknown_terminal",
}


def status_class(status: int) -> str:
    """``2xx``, ``4xx`` or ``5xx`` (the ``status`` label)."""
    return f"{status // 100}xx"


def multiprocess_mode() -> bool:
    """Whether this process's prometheus_client keeps its values in files (multiprocess mode).

    prometheus_client decides once, when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``;
    the variable read later says nothing (Feast sets it after that import, see
    ``level4_fraud/__init__.py``), so the value class it chose is asked.
    """
    return values.ValueClass is not values.MutexValue


def check_multiprocess_dir(path: Path) -> None:
    """Check that this process's metrics are written into `path`.

    Raises:
        RuntimeError: prometheus_client is in single-process mode (``PROMETHEUS_MULTIPROC_DIR``
            was not set before it was imported) or writes into another folder.
    """
    current = os.environ.get(MULTIPROC_DIR_ENV)
    if not multiprocess_mode() or current is None or Path(current).resolve() != path.resolve():
        raise RuntimeError(
            f"metrics aggregated from {path} need {MULTIPROC_DIR_ENV}={path} set before "
            f"prometheus_client is imported (multiprocess mode: {multiprocess_mode()}, "
            f"{MULTIPROC_DIR_ENV}={current!r})"
        )


def live_gauge_pids(path: Path) -> set[int]:
    """The processes with live-mode gauge files (``gauge_live<mode>_<pid>.db``) in `path`."""
    pids = set()
    for f in path.glob("gauge_live*_*.db"):
        pid = f.stem.rsplit("_", 1)[-1]
        if pid.isdigit():
            pids.add(int(pid))
    return pids


def _running(pid: int) -> bool:
    # Imported here: only the parent of several workers asks (psutil comes with Feast's
    # requirements in the image, not in its own list).
    import psutil

    # A zombie has exited: its gauges describe nothing any more.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.Error:  # another user's process took the pid: it exists, leave it
        return True


def reap_dead_processes(path: Path) -> list[int]:
    """Drop the gauges of the processes that wrote into `path` and have exited.

    `multiprocess.mark_process_dead` removes a process's live-mode gauge files (every gauge of
    `ServiceMetrics` is one); its counters and histograms stay, so totals never go back.

    Returns:
        The pids whose gauges were dropped, sorted.
    """
    dead = sorted(pid for pid in live_gauge_pids(path) if not _running(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return dead


def _reap_until(path: Path, stop: threading.Event, interval_s: float) -> None:
    while not stop.wait(interval_s):
        try:
            reap_dead_processes(path)
        except OSError as exc:  # a file gone meanwhile: the next round sees the folder again
            logger.warning("dropping exited workers' gauges in %s: %s", path, exc)


@contextmanager
def worker_metrics_dir(interval_s: float = 1.0) -> Iterator[Path]:
    """A fresh, empty multiprocess folder for the worker processes started inside the block.

    A new temporary folder each time (never a fixed path: files left by an earlier run, or by
    another server, would add up with this one's); removed on exit. uvicorn has no hook for a
    worker's death (gunicorn's ``child_exit``), so a thread looks every `interval_s` for
    exited workers and drops their gauges (`reap_dead_processes`).

    Yields:
        The folder, to set as ``PROMETHEUS_MULTIPROC_DIR`` for the workers.
    """
    path = Path(tempfile.mkdtemp(prefix="l4-prometheus-"))
    stop = threading.Event()
    reaper = threading.Thread(
        target=_reap_until, args=(path, stop, interval_s), name="prometheus-reaper", daemon=True
    )
    reaper.start()
    try:
        yield path
    finally:
        stop.set()
        reaper.join()
        shutil.rmtree(path, ignore_errors=True)


class _Only:
    """The metrics of `source` named in `names` (a collector)."""

    def __init__(self, source: multiprocess.MultiProcessCollector, names: frozenset[str]) -> None:
        self._source = source
        self._names = names

    def collect(self) -> Iterable[Metric]:
        """The kept metrics, summed over the processes."""
        return [m for m in self._source.collect() if m.name in self._names]


class ServiceMetrics:
    """The service's Prometheus collectors in a registry of their own.

    Args:
        registry: Registry to use (default: a new one).
        multiprocess_dir: The multiprocess folder this process writes into, shared with the
            other workers of one server (`worker_metrics_dir`): `exposition` then answers with
            the sum over all of them. None (tests, one process, stream consumers, Ray Serve
            replicas): this process's own values.

    Raises:
        RuntimeError: `multiprocess_dir` is given but this process does not write into it
            (`check_multiprocess_dir`).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess_dir: Path | None = None
    ) -> None:
        if multiprocess_dir is not None:
            check_multiprocess_dir(multiprocess_dir)
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "fraud_request_latency_seconds",
            "Time to answer a scoring request",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "fraud_requests_total", "Scoring requests by answer class", ["engine", "status"], registry=r
        )
        self.decisions = Counter("fraud_decisions_total", "Decisions by type", ["decision"], registry=r)
        self.score = Histogram(
            "fraud_score", "Fraud scores of new decisions", buckets=SCORE_BUCKETS, registry=r
        )
        self.fallbacks = Counter("fraud_fallbacks_total", "Degraded decisions by cause", ["kind"], registry=r)
        # Gauges across workers (``live``: an exited worker's value is dropped, see
        # `reap_dead_processes`). Freshness is that of the latest decision, whichever worker
        # made it, as in one process. Each worker's drift is over its own window of a share of
        # the same traffic: the largest is what the drift alerts (``max(...) > 0.2``) look for.
        self.freshness = Gauge(
            "fraud_feature_freshness_seconds",
            "Age of the newest online feature row used",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.drift_psi = Gauge(
            "fraud_drift_psi",
            "Population stability index against training",
            ["feature"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.drift_ks = Gauge(
            "fraud_drift_ks",
            "Kolmogorov-Smirnov statistic against training",
            ["feature"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.audit_records = Counter(
            "fraud_audit_records_total", "Decisions written to the audit log", registry=r
        )
        # 1 for every version some live worker serves: a sum would read N, which the
        # "several versions served" alert (``fraud_model_info == 1``) would miss.
        self.model_info = Gauge(
            "fraud_model_info",
            "The model that decides (value 1)",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self._version: str | None = None
        for d in ("approve", "review", "decline"):
            self.decisions.labels(d)
        for kind in FALLBACK_KINDS.values():
            self.fallbacks.labels(kind)
        self._exposed = self.registry if multiprocess_dir is None else self._workers_sum(multiprocess_dir)

    def _workers_sum(self, path: Path) -> CollectorRegistry:
        """A registry answering with the sum over the files in `path`, limited to these metrics.

        A registry of its own: the collectors' one gives this worker's values only. Limited:
        other libraries in the worker write their own metrics there too (Feast's, created on
        import), which a single process's ``/metrics`` does not show either.
        """
        names = frozenset(m.name for m in self.registry.collect())
        exposed = CollectorRegistry()
        exposed.register(_Only(multiprocess.MultiProcessCollector(None, path=str(path)), names))
        return exposed

    def set_model(self, version: str) -> None:
        """Point ``fraud_model_info`` at `version` (the only series at 1)."""
        if self._version is not None and self._version != version:
            # remove() forgets the series here but not in this worker's file: 0 there, so
            # the old version is not counted as served in the workers' max.
            self.model_info.labels(self._version).set(0)
            self.model_info.remove(self._version)
        self._version = version
        self.model_info.labels(version).set(1)

    def observe_request(self, engine: str, status: int, seconds: float) -> None:
        """One answered request."""
        self.latency.labels(engine).observe(seconds)
        self.requests.labels(engine, status_class(status)).inc()

    def observe_decision(self, decision: DecisionOut, *, freshness_s: float | None = None) -> None:
        """A new decision (not a replay): its type, score and fallbacks; the audit record."""
        self.decisions.labels(decision.decision).inc()
        self.score.observe(decision.score)
        for flag in decision.flags:
            kind = FALLBACK_KINDS.get(flag)
            if kind is not None:
                self.fallbacks.labels(kind).inc()
        if freshness_s is not None:
            self.freshness.set(freshness_s)
        self.audit_records.inc()

    def exposition(self) -> bytes:
        """The text exposition format (all workers' sum with a `multiprocess_dir`)."""
        return generate_latest(self._exposed)
