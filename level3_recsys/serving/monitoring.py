"""Prometheus metrics of the recommendation API, on a registry of its own (no global state).

Metric names are module constants (the Grafana dashboard, the alert rules and the load
test refer to them). Counters carry their exposed ``_total`` name.

What each one answers:

* latency: `REQUEST_LATENCY` (histogram per route: p50/p95/p99 with ``histogram_quantile``),
  `RECOMMENDATION_LATENCY` (per answer source: ``batch``, ``model``, ``fallback``);
* traffic and errors: `REQUESTS` (per route, method, status: ``rate()`` gives requests/s),
  `ERRORS` (responses with status >= 500 and unhandled exceptions), `VALIDATION_ERRORS` (4xx);
* answers: `RECOMMENDATIONS` (per source and model version), `FALLBACKS` (per reason),
  `COLD_STARTS` (users unknown to the model);
* the model call: `MODEL_CALL_LATENCY`, `MODEL_CALL_FAILURES` (per reason), `BREAKER_STATE`
  (0 closed, 1 half-open, 2 open), `BREAKER_TRANSITIONS`;
* the nightly batch: `BATCH_AGE` (seconds since generation; absent without a batch),
  `BATCH_FRESH` (1 when younger than the freshness window);
* outcomes: `FEEDBACK_EVENTS` (per event and model version), `CTR` (clicks / impressions over
  the last ``ctr_window`` feedback events; label ``model_version="all"`` for the total);
* drift: `PSI` (population stability index of request context — ``device``, ``hour`` — and of
  recommended-item popularity — ``item_popularity`` — over the last ``drift_window`` requests
  against the training reference; above 0.2 is the usual "shifted" threshold);
* shadow: `SHADOW_REQUESTS` (per outcome: ``ok``, ``error``, ``timeout``, ``dropped``), `SHADOW_LATENCY`,
  `SHADOW_OVERLAP`, `SHADOW_PREDICTED_CTR` (per model: champion / challenger), `SHADOW_QUEUE_DEPTH`.
"""

from __future__ import annotations

import math
import threading
from collections import Counter as TallyCounter
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

# ---------------------------------------------------------------------- metric names
REQUEST_LATENCY = "l3_api_request_duration_seconds"
REQUESTS = "l3_api_requests_total"
ERRORS = "l3_api_errors_total"
VALIDATION_ERRORS = "l3_api_client_errors_total"
RECOMMENDATION_LATENCY = "l3_recommendation_duration_seconds"
RECOMMENDATIONS = "l3_recommendations_total"
FALLBACKS = "l3_fallbacks_total"
COLD_STARTS = "l3_cold_starts_total"
MODEL_CALL_LATENCY = "l3_model_call_duration_seconds"
MODEL_CALL_FAILURES = "l3_model_call_failures_total"
BREAKER_STATE = "l3_breaker_state"
BREAKER_TRANSITIONS = "l3_breaker_transitions_total"
BATCH_AGE = "l3_batch_age_seconds"
BATCH_FRESH = "l3_batch_fresh"
FEEDBACK_EVENTS = "l3_feedback_events_total"
CTR = "l3_ctr"
PSI = "l3_psi"
SHADOW_REQUESTS = "l3_shadow_requests_total"
SHADOW_LATENCY = "l3_shadow_latency_seconds"
SHADOW_OVERLAP = "l3_shadow_overlap_at_k"
SHADOW_PREDICTED_CTR = "l3_shadow_predicted_ctr"
SHADOW_QUEUE_DEPTH = "l3_shadow_queue_depth"

ALL_METRICS = (
    REQUEST_LATENCY,
    REQUESTS,
    ERRORS,
    VALIDATION_ERRORS,
    RECOMMENDATION_LATENCY,
    RECOMMENDATIONS,
    FALLBACKS,
    COLD_STARTS,
    MODEL_CALL_LATENCY,
    MODEL_CALL_FAILURES,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    BATCH_AGE,
    BATCH_FRESH,
    FEEDBACK_EVENTS,
    CTR,
    PSI,
    SHADOW_REQUESTS,
    SHADOW_LATENCY,
    SHADOW_OVERLAP,
    SHADOW_PREDICTED_CTR,
    SHADOW_QUEUE_DEPTH,
)

# Breaker state as a number, so alerts can say `l3_breaker_state == 2`.
BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
# Answer sources of a recommendation.
SOURCES = ("batch", "model", "fallback")
PSI_FEATURES = ("device", "hour", "item_popularity")
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.2,
    0.5,
    1.0,
    2.5,
)
OVERLAP_BUCKETS = tuple(round(0.1 * i, 1) for i in range(11))
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PSI_EPS = 1e-4
UNKNOWN_VERSION = "unknown"


def psi(expected: Mapping[str, float], actual: Mapping[str, float], eps: float = PSI_EPS) -> float:
    """Population stability index of `actual` against `expected`.

    ``PSI = sum_b (a_b - e_b) * ln(a_b / e_b)`` over the union of bins, both sides normalised
    to proportions and floored at `eps` so an empty bin does not give infinity.

    Args:
        expected: Reference counts or proportions per bin.
        actual: Observed counts or proportions per bin.
        eps: Floor of a bin's proportion.

    Returns:
        0 for identical distributions, growing with the shift; NaN when either side is empty.
    """
    e_total = float(sum(expected.values()))
    a_total = float(sum(actual.values()))
    if e_total <= 0 or a_total <= 0:
        return math.nan
    value = 0.0
    for b in set(expected) | set(actual):
        e = max(expected.get(b, 0.0) / e_total, eps)
        a = max(actual.get(b, 0.0) / a_total, eps)
        value += (a - e) * math.log(a / e)
    return value


class SlidingDistribution:
    """Bin counts of the last `window` observations (O(1) per update, bounded memory).

    Bins are text labels, as in the serving reference (JSON, whose keys are text).

    Thread-safe: the API updates it on the event loop while a scrape may read it elsewhere.
    """

    def __init__(self, window: int) -> None:
        self._window: deque[str] = deque(maxlen=window)
        self._counts: TallyCounter[str] = TallyCounter()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        """Observe values (the oldest fall out of the window)."""
        with self._lock:
            for value in values:
                if len(self._window) == self._window.maxlen:
                    old = self._window[0]
                    self._counts[old] -= 1
                    if self._counts[old] <= 0:
                        del self._counts[old]
                self._window.append(value)
                self._counts[value] += 1

    def counts(self) -> dict[str, int]:
        """Current bin counts."""
        with self._lock:
            return dict(self._counts)

    def __len__(self) -> int:
        return len(self._window)


class DriftMonitor:
    """PSI of each monitored feature over a sliding window against reference proportions.

    Args:
        reference: Feature name -> {bin: proportion} (from the training data).
        window: Observations kept per feature.
        min_count: Fewer observations than this gives no PSI (too noisy to alert on).
    """

    def __init__(
        self, reference: Mapping[str, Mapping[str, float]], window: int, min_count: int = 50
    ) -> None:
        self.reference = {name: dict(dist) for name, dist in reference.items() if dist}
        self.windows = {name: SlidingDistribution(window) for name in self.reference}
        self.min_count = min_count

    def observe(self, feature: str, values: Iterable[str]) -> None:
        """Add observations of a feature (ignored when it has no reference)."""
        window = self.windows.get(feature)
        if window is not None:
            window.add(values)

    def values(self) -> dict[str, float]:
        """Current PSI per feature with enough observations."""
        out = {}
        for name, window in self.windows.items():
            if len(window) >= self.min_count:
                out[name] = psi(self.reference[name], window.counts())
        return out


class CTRWindow:
    """Click-through rate per model version over the last `window` impressions and clicks.

    CTR = clicks / impressions among the events in the window; the label ``all`` pools
    every version. Versions outside the first `max_versions` seen are pooled under
    ``unknown``, so a client cannot blow up the metric's cardinality.
    """

    def __init__(self, window: int, max_versions: int = 20) -> None:
        self._events: deque[tuple[str, bool]] = deque(maxlen=window)
        self._impressions: TallyCounter[str] = TallyCounter()
        self._clicks: TallyCounter[str] = TallyCounter()
        self._versions: set[str] = set()
        self._max_versions = max_versions
        self._lock = threading.Lock()

    def version_label(self, version: str | None) -> str:
        """The label a version is counted under (bounded set)."""
        if not version:
            return UNKNOWN_VERSION
        with self._lock:
            if version in self._versions:
                return version
            if len(self._versions) < self._max_versions:
                self._versions.add(version)
                return version
        return UNKNOWN_VERSION

    def add(self, version: str, clicked: bool) -> None:
        """Record one impression (`clicked` False) or click (True) under a version label."""
        with self._lock:
            if len(self._events) == self._events.maxlen:
                old_version, old_click = self._events[0]
                (self._clicks if old_click else self._impressions)[old_version] -= 1
            self._events.append((version, clicked))
            (self._clicks if clicked else self._impressions)[version] += 1

    def rates(self) -> dict[str, float]:
        """CTR per version with at least one impression, plus ``all``."""
        with self._lock:
            out = {v: self._clicks[v] / n for v, n in self._impressions.items() if n > 0}
            total = sum(self._impressions.values())
            if total > 0:
                out["all"] = sum(self._clicks.values()) / total
        return out


class _LiveCollector:
    """Gauges computed at scrape time: PSI, CTR and batch freshness."""

    def __init__(
        self,
        drift: DriftMonitor,
        ctr: CTRWindow,
        batch_age: Callable[[], float | None],
        freshness_s: float,
    ) -> None:
        self.drift = drift
        self.ctr = ctr
        self.batch_age = batch_age
        self.freshness_s = freshness_s

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(
            PSI, "PSI of a feature over the sliding window vs training", labels=["feature"]
        )
        for name, value in sorted(self.drift.values().items()):
            if math.isfinite(value):
                family.add_metric([name], value)
        yield family
        family = GaugeMetricFamily(
            CTR, "Clicks / impressions over the feedback window", labels=["model_version"]
        )
        for version, value in sorted(self.ctr.rates().items()):
            family.add_metric([version], value)
        yield family
        try:
            age = self.batch_age()
        except Exception:  # a store hiccup must not break the whole scrape
            age = None
        fresh = GaugeMetricFamily(BATCH_FRESH, "1 when the live batch is within the freshness window")
        fresh.add_metric([], 1.0 if age is not None and age <= self.freshness_s else 0.0)
        yield fresh
        if age is not None:
            yield GaugeMetricFamily(BATCH_AGE, "Seconds since the live batch was generated", value=age)


class Metrics:
    """Every metric of one API instance, registered on its own `CollectorRegistry`.

    Args:
        drift_reference: Feature -> {bin: proportion} for the PSI gauges (may be empty).
        drift_window: Requests in the PSI window.
        ctr_window: Feedback events in the CTR window.
        max_model_versions: Bound on distinct model-version labels.
        batch_age: Callable giving the live batch's age in seconds (None: no batch).
        freshness_s: Freshness window of the batch.
    """

    def __init__(
        self,
        *,
        drift_reference: Mapping[str, Mapping[str, float]] | None = None,
        drift_window: int = 2000,
        ctr_window: int = 10_000,
        max_model_versions: int = 20,
        batch_age: Callable[[], float | None] = lambda: None,
        freshness_s: float = 36 * 3600.0,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram(
            REQUEST_LATENCY, "API request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.requests = Counter(REQUESTS, "API requests", ["route", "method", "status"], registry=r)
        self.errors = Counter(
            ERRORS, "API responses with status >= 500 or unhandled errors", ["route"], registry=r
        )
        self.client_errors = Counter(
            VALIDATION_ERRORS, "API responses with a 4xx status", ["route", "status"], registry=r
        )
        self.recommendation_latency = Histogram(
            RECOMMENDATION_LATENCY,
            "Time to produce a recommendation list, per answer source",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.recommendations = Counter(
            RECOMMENDATIONS, "Recommendation lists served", ["source", "model_version"], registry=r
        )
        self.fallbacks = Counter(FALLBACKS, "Popularity fallbacks served, per reason", ["reason"], registry=r)
        self.cold_starts = Counter(COLD_STARTS, "Requests for users unknown to the model", registry=r)
        self.model_call_latency = Histogram(
            MODEL_CALL_LATENCY, "Model-service call latency", ["outcome"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.model_call_failures = Counter(
            MODEL_CALL_FAILURES, "Failed model-service calls, per reason", ["reason"], registry=r
        )
        self.breaker_state = Gauge(
            BREAKER_STATE, "Circuit breaker: 0 closed, 1 half-open, 2 open", ["breaker"], registry=r
        )
        self.breaker_transitions = Counter(
            BREAKER_TRANSITIONS, "Circuit breaker state changes", ["breaker", "to_state"], registry=r
        )
        self.feedback_events = Counter(
            FEEDBACK_EVENTS, "Feedback events", ["event", "model_version"], registry=r
        )
        self.shadow_requests = Counter(SHADOW_REQUESTS, "Shadow copies, per outcome", ["outcome"], registry=r)
        self.shadow_latency = Histogram(
            SHADOW_LATENCY, "Challenger latency", buckets=LATENCY_BUCKETS, registry=r
        )
        self.shadow_overlap = Histogram(
            SHADOW_OVERLAP, "Overlap@K of challenger and champion lists", buckets=OVERLAP_BUCKETS, registry=r
        )
        self.shadow_predicted_ctr = Gauge(
            SHADOW_PREDICTED_CTR, "Mean predicted CTR of shadowed lists", ["model"], registry=r
        )
        self.shadow_queue_depth = Gauge(SHADOW_QUEUE_DEPTH, "Shadow requests waiting", registry=r)
        self.drift = DriftMonitor(drift_reference or {}, drift_window)
        self.ctr = CTRWindow(ctr_window, max_model_versions)
        r.register(_LiveCollector(self.drift, self.ctr, batch_age, freshness_s))

    def set_breaker_state(self, breaker: str, state: str) -> None:
        """Export a breaker's state (called on every transition)."""
        self.breaker_state.labels(breaker).set(BREAKER_STATE_VALUES[state])
        self.breaker_transitions.labels(breaker, state).inc()

    def observe_feedback(self, event: str, model_version: str | None) -> str:
        """Count a feedback event and feed the CTR window; returns the version label used."""
        label = self.ctr.version_label(model_version)
        self.feedback_events.labels(event, label).inc()
        if event == "impression":
            self.ctr.add(label, False)
        elif event == "click":
            self.ctr.add(label, True)
        return label

    def exposition(self) -> bytes:
        """The registry in Prometheus text format 0.0.4."""
        return generate_latest(self.registry)
