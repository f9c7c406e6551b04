"""Prometheus metrics of the scoring service (names shared with the alert rules and dashboards).

Each `ServiceMetrics` owns its registry, so several services (tests, FastAPI and a stream
consumer in one process) never collide in the global one.

Alert rate = ``rate(fraud_decisions_total{decision=~"review|decline"}) / rate(fraud_decisions_total)``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from level4_fraud.serving.schemas import (
    ONLINE_STORE_UNAVAILABLE,
    UNKNOWN_CARD,
    UNKNOWN_TERMINAL,
    DecisionOut,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
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


class ServiceMetrics:
    """The service's Prometheus collectors in a registry of their own.

    Args:
        registry: Registry to use (default: a new one).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
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
        self.freshness = Gauge(
            "fraud_feature_freshness_seconds", "Age of the newest online feature row used", registry=r
        )
        self.drift_psi = Gauge(
            "fraud_drift_psi", "Population stability index against training", ["feature"], registry=r
        )
        self.drift_ks = Gauge(
            "fraud_drift_ks", "Kolmogorov-Smirnov statistic against training", ["feature"], registry=r
        )
        self.audit_records = Counter(
            "fraud_audit_records_total", "Decisions written to the audit log", registry=r
        )
        self.model_info = Gauge(
            "fraud_model_info", "The model that decides (value 1)", ["version"], registry=r
        )
        self._version: str | None = None
        for d in ("approve", "review", "decline"):
            self.decisions.labels(d)
        for kind in FALLBACK_KINDS.values():
            self.fallbacks.labels(kind)

    def set_model(self, version: str) -> None:
        """Point ``fraud_model_info`` at `version` (the only series at 1)."""
        if self._version is not None and self._version != version:
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
        """The text exposition format."""
        return generate_latest(self.registry)
