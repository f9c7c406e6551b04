"""Shadow deployment: the challenger sees a copy of live traffic, off the response path.

The API answers the user first; then `ShadowRunner.submit` puts a copy of the request and the
champion's answer on a bounded ``asyncio.Queue`` with ``put_nowait`` (a full queue drops the
copy and counts it; the user never waits). A few worker tasks take copies, call the
challenger under a timeout, and compare:

* overlap@K — share of the champion's list that the challenger also recommends;
* latency of both models;
* predicted CTR of both lists — a position-weighted mean of each item's click rate estimated
  from live feedback (Beta prior, so unseen items get the prior rate).

Each comparison goes to the metrics, a bounded in-memory window (`ShadowRunner.summary`) and,
when configured, a JSONL log. Errors and timeouts of the challenger are counted, never raised.
At shutdown the queue is drained for at most ``drain_timeout_s``; what is left is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from level3_recsys.serving.monitoring import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowJob:
    """A copy of one served request and the champion's answer."""

    user_id: str
    k: int
    device: str
    hour: int
    champion_items: list[Any]
    champion_version: str
    champion_latency_s: float
    enqueued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class ShadowResult:
    """One comparison of challenger and champion."""

    user_id: str
    k: int
    champion_version: str
    challenger_version: str | None
    overlap_at_k: float | None
    champion_latency_s: float
    challenger_latency_s: float
    champion_predicted_ctr: float | None
    challenger_predicted_ctr: float | None
    error: str | None = None


def overlap_at_k(reference: Sequence[Any], other: Sequence[Any], k: int) -> float:
    """Share of the first `k` of `reference` that appear in the first `k` of `other`.

    Returns 0 when `reference` is empty.
    """
    ref = list(reference)[:k]
    if not ref:
        return 0.0
    return len(set(ref) & set(list(other)[:k])) / len(ref)


def position_weights(n: int) -> list[float]:
    """DCG-style examination weights 1/log2(rank + 1), normalised to sum to 1."""
    raw = [1.0 / math.log2(r + 1) for r in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


class ItemCTREstimator:
    """Per-item click rate from feedback events with a Beta(alpha, beta) prior.

    Args:
        alpha: Prior clicks.
        beta: Prior non-clicks (prior CTR = alpha / (alpha + beta)).
        max_items: Items tracked; events for further items are ignored (bounded memory).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 19.0, max_items: int = 200_000) -> None:
        self.alpha = alpha
        self.beta = beta
        self.max_items = max_items
        self._impressions: dict[str, int] = {}
        self._clicks: dict[str, int] = {}

    def observe(self, item_id: Any, event: str) -> None:
        """Count an ``impression`` or a ``click`` (other events are ignored)."""
        key = str(item_id)
        if event not in ("impression", "click"):
            return
        if key not in self._impressions and len(self._impressions) >= self.max_items:
            return
        self._impressions.setdefault(key, 0)
        self._clicks.setdefault(key, 0)
        if event == "impression":
            self._impressions[key] += 1
        else:
            self._clicks[key] += 1

    def item_ctr(self, item_id: Any) -> float:
        """Posterior mean click rate of an item."""
        key = str(item_id)
        clicks = self._clicks.get(key, 0)
        shown = max(self._impressions.get(key, 0), clicks)
        return (clicks + self.alpha) / (shown + self.alpha + self.beta)

    def predicted_ctr(self, items: Sequence[Any]) -> float | None:
        """Position-weighted mean click rate of a list (None for an empty list)."""
        if not items:
            return None
        return sum(w * self.item_ctr(i) for w, i in zip(position_weights(len(items)), items, strict=True))


ChallengerCall = Callable[[ShadowJob], Awaitable[tuple[list[Any], str]]]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ShadowRunner:
    """Bounded queue + workers that mirror requests to the challenger.

    Args:
        call: Async function taking a job and returning (challenger item ids, challenger version).
        metrics: Where counts, latencies and overlaps go.
        ctr: Click-rate estimator for the predicted CTR of both lists.
        queue_size: Queue bound; a full queue drops new copies.
        workers: Concurrent challenger calls.
        timeout_s: Deadline of one challenger call.
        window: Comparisons kept for `summary`.
        log_path: JSONL file receiving every comparison (None: no file).
        log_max_bytes: Size at which the log is rotated to ``<name>.1`` (one backup kept), so
            disk use stays below twice this bound.
    """

    def __init__(
        self,
        call: ChallengerCall,
        *,
        metrics: Metrics,
        ctr: ItemCTREstimator,
        queue_size: int = 256,
        workers: int = 2,
        timeout_s: float = 1.0,
        window: int = 1000,
        log_path: str | Path | None = None,
        log_max_bytes: int = 50_000_000,
    ) -> None:
        self._call = call
        self.metrics = metrics
        self.ctr = ctr
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self.n_workers = workers
        self.timeout_s = timeout_s
        self.results: deque[ShadowResult] = deque(maxlen=window)
        self.log_path = Path(log_path) if log_path else None
        self.log_max_bytes = log_max_bytes
        self._log: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker tasks (call inside the running loop)."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._tasks = [asyncio.create_task(self._worker(), name=f"shadow-{i}") for i in range(self.n_workers)]

    async def aclose(self, drain_timeout_s: float) -> int:
        """Let the workers finish queued copies for at most `drain_timeout_s`, then stop them.

        Returns:
            Copies left undone (dropped).
        """
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout=drain_timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        left = self.queue.qsize()
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        if left:
            self.metrics.shadow_requests.labels("dropped").inc(left)
            self.dropped += left
        self.metrics.shadow_queue_depth.set(0)
        if self._log is not None:
            self._log.close()
            self._log = None
        return left

    # ------------------------------------------------------------------ request path
    def submit(self, job: ShadowJob) -> bool:
        """Queue a copy without waiting; False (and counted as dropped) when the queue is full."""
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            self.metrics.shadow_requests.labels("dropped").inc()
            return False
        self.metrics.shadow_queue_depth.set(self.queue.qsize())
        return True

    # ------------------------------------------------------------------ workers
    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                result = await self._compare(job)
                self._record(result)
            except Exception:  # a shadow bug must never stop the mirror
                logger.exception("shadow comparison failed")
            finally:
                self.queue.task_done()
                self.metrics.shadow_queue_depth.set(self.queue.qsize())

    async def _compare(self, job: ShadowJob) -> ShadowResult:
        start = time.perf_counter()
        champion_ctr = self.ctr.predicted_ctr(job.champion_items)
        try:
            async with asyncio.timeout(self.timeout_s):
                items, version = await self._call(job)
        except Exception as exc:  # the challenger's failures are data, not errors
            latency = time.perf_counter() - start
            self.metrics.shadow_requests.labels("timeout" if isinstance(exc, TimeoutError) else "error").inc()
            return ShadowResult(
                job.user_id, job.k, job.champion_version, None, None, job.champion_latency_s, latency,
                champion_ctr, None, error=type(exc).__name__,
            )  # fmt: skip
        latency = time.perf_counter() - start
        self.metrics.shadow_requests.labels("ok").inc()
        self.metrics.shadow_latency.observe(latency)
        overlap = overlap_at_k(job.champion_items, items, job.k)
        self.metrics.shadow_overlap.observe(overlap)
        return ShadowResult(
            job.user_id, job.k, job.champion_version, version, overlap, job.champion_latency_s, latency,
            champion_ctr, self.ctr.predicted_ctr(items),
        )  # fmt: skip

    def _record(self, result: ShadowResult) -> None:
        self.results.append(result)
        summary = self.summary()
        for model in ("champion", "challenger"):
            value = summary[f"{model}_predicted_ctr"]
            if value is not None:
                self.metrics.shadow_predicted_ctr.labels(model).set(value)
        if self.log_path is not None:
            self._write_log(self.log_path, json.dumps(asdict(result)) + "\n")

    def _write_log(self, path: Path, line: str) -> None:
        if self._log is None:
            self._log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in aclose
        if self._log.tell() + len(line) > self.log_max_bytes:
            self._log.close()
            path.replace(path.with_name(path.name + ".1"))
            self._log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in aclose
        self._log.write(line)
        self._log.flush()

    # ------------------------------------------------------------------ report
    def summary(self) -> dict[str, Any]:
        """Comparison over the window: counts, mean overlap@K, latencies and predicted CTRs."""
        ok = [r for r in self.results if r.error is None]
        return {
            "compared": len(ok),
            "errors": len(self.results) - len(ok),
            "dropped": self.dropped,
            "queued": self.queue.qsize(),
            "mean_overlap_at_k": _mean([r.overlap_at_k for r in ok if r.overlap_at_k is not None]),
            "champion_latency_p50_s": _quantile([r.champion_latency_s for r in ok], 0.5),
            "challenger_latency_p50_s": _quantile([r.challenger_latency_s for r in ok], 0.5),
            "challenger_latency_p95_s": _quantile([r.challenger_latency_s for r in ok], 0.95),
            "champion_predicted_ctr": _mean(
                [r.champion_predicted_ctr for r in ok if r.champion_predicted_ctr]
            ),
            "challenger_predicted_ctr": _mean(
                [r.challenger_predicted_ctr for r in ok if r.challenger_predicted_ctr is not None]
            ),
            "challenger_version": next((r.challenger_version for r in reversed(ok)), None),
        }
