"""The answer logic of the recommendation API: the nightly batch, else the model, else popularity.

`Recommender` owns every part one API instance needs (the batch store, the model-service
client behind its circuit breaker, the popularity fallback, the metrics and the shadow
mirror) and turns one request into the JSON answer; the FastAPI routes and the ASGI fast path
(`api`, `asgi`) only parse requests and call `Recommender.answer`.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic_core import to_json

from level3_recsys.serving.breaker import BreakerOpenError, CircuitBreaker
from level3_recsys.serving.model_client import ModelCallError, ModelClient
from level3_recsys.serving.monitoring import Metrics
from level3_recsys.serving.reference import ServingReference
from level3_recsys.serving.schemas import DEFAULT_DEVICE
from level3_recsys.serving.settings import ServingSettings
from level3_recsys.serving.shadow import ItemCTREstimator, ShadowJob, ShadowRunner

logger = logging.getLogger(__name__)

FALLBACK_MODEL = "popularity-fallback"


def load_reference(path: str | None) -> ServingReference | None:
    """The serving reference at `path`, or None when unset or not written yet.

    A missing file is not an error: the API starts (``/readyz`` answers 503 until it exists),
    so a container does not crash-loop while the nightly job has not run.
    """
    if not path:
        return None
    if not Path(path).is_file():
        logger.warning("serving reference %s not found: no popularity fallback, no drift gauges", path)
        return None
    return ServingReference.load(path)


def open_store(url: str | None) -> Any | None:
    """The batch store at `url` (None: no batch results)."""
    if not url:
        return None
    from level3_recsys.store import open_store as open_batch_store

    return open_batch_store(url)


# Answers are plain dicts in `RecommendationResponse` field order, serialised once by
# pydantic-core's `to_json` (the serialiser response models use): re-validating a model built
# a line earlier would cost more than the answer itself.
def _payload(
    user_id: str,
    items: list[dict[str, Any]],
    k: int,
    model_name: str,
    model_version: str,
    source: str,
    *,
    fallback_reason: str | None = None,
    cold_start: bool = False,
    batch_generated_at: str | None = None,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "items": items,
        "k": k,
        "model_name": model_name,
        "model_version": model_version,
        "source": source,
        "fallback": source == "fallback",
        "fallback_reason": fallback_reason,
        "cold_start": cold_start,
        "batch_generated_at": batch_generated_at,
        "request_id": uuid.uuid4().hex,
    }


def _ranked(item_ids: list[Any], scores: list[Any]) -> list[dict[str, Any]]:
    return [
        {"item_id": i, "score": float(s), "rank": r}
        for r, (i, s) in enumerate(zip(item_ids, scores, strict=True), 1)
    ]


class Recommender:
    """Answers recommendation requests: the batch when fresh, else the model, else popularity.

    Args:
        settings: API settings (timeouts, freshness, breaker, shadow, windows).
        store: A batch store to use instead of opening ``settings.store_url``.
        model_transport: httpx transport for the model service (tests; default: network).
        challenger_transport: httpx transport for the challenger (tests).

    Attributes:
        metrics: The instance's own Prometheus registry and gauges.
        breaker: Circuit breaker in front of the model service.
        model: Client of the champion's model service.
        reference: Popularity fallback and drift reference (None: not written yet).
        store: Batch store (None: every list comes from the model).
        ctr: Per-item click-rate estimate fed by feedback (predicted CTR of shadow lists).
        challenger: Client of the challenger's model service (None: no shadow).
        shadow: The mirror to the challenger (None: no shadow).
    """

    def __init__(
        self,
        settings: ServingSettings,
        *,
        store: Any | None = None,
        model_transport: httpx.AsyncBaseTransport | None = None,
        challenger_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.reference = load_reference(settings.reference_path)
        self.store = store if store is not None else open_store(settings.store_url)
        self._batch_cache: tuple[float, Any] = (-1e18, None)
        self.metrics = Metrics(
            drift_reference=self.reference.features if self.reference else None,
            drift_window=settings.drift_window,
            ctr_window=settings.ctr_window,
            max_model_versions=settings.max_model_versions,
            batch_age=self.batch_age,
            freshness_s=settings.freshness_s,
        )
        self.breaker = CircuitBreaker(
            "model",
            failure_rate=settings.breaker_failure_rate,
            window_s=settings.breaker_window_s,
            min_calls=settings.breaker_min_calls,
            open_s=settings.breaker_open_s,
            half_open_probes=settings.breaker_half_open_probes,
            close_after=settings.breaker_close_after,
            timeout_s=settings.model_timeout_s,
            on_change=lambda old, new: self.metrics.set_breaker_state("model", new),
        )
        self.metrics.breaker_state.labels("model").set(0)
        self.model = ModelClient(
            settings.model_service_url, settings.model_timeout_s, transport=model_transport
        )
        self.ctr = ItemCTREstimator()
        self.challenger: ModelClient | None = None
        self.shadow: ShadowRunner | None = None
        if settings.challenger_service_url:
            self.challenger = ModelClient(
                settings.challenger_service_url, settings.shadow_timeout_s, transport=challenger_transport
            )
            self.shadow = ShadowRunner(
                self._call_challenger,
                metrics=self.metrics,
                ctr=self.ctr,
                queue_size=settings.shadow_queue_size,
                workers=settings.shadow_workers,
                timeout_s=settings.shadow_timeout_s,
                window=settings.shadow_window,
                log_path=settings.shadow_log_path,
                log_max_bytes=settings.shadow_log_max_bytes,
            )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the shadow workers (inside the running event loop)."""
        if self.shadow is not None:
            self.shadow.start()

    async def aclose(self) -> None:
        """Drain the shadow queue within ``drain_timeout_s``, then close the clients and the store."""
        if self.shadow is not None:
            drain_s = self.settings.drain_timeout_s
            left = await self.shadow.aclose(drain_s)
            if left:
                logger.warning("shutdown: %d shadow copies dropped after %.1fs", left, drain_s)
        await self.model.aclose()
        if self.challenger is not None:
            await self.challenger.aclose()
        if self.store is not None:
            self.store.close()

    # ------------------------------------------------------------------ the batch
    def current_batch(self) -> Any | None:
        """The store's live batch info, cached for ``store_cache_s``."""
        if self.store is None:
            return None
        now = time.monotonic()
        stamp, info = self._batch_cache
        if now - stamp > self.settings.store_cache_s:
            info = self.store.current()
            self._batch_cache = (now, info)
        return info

    def batch_age(self) -> float | None:
        """Seconds since the live batch was generated (None: no batch)."""
        info = self.current_batch()
        return None if info is None else info.age_seconds()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the API can answer (a fallback list at least), and the state of each source."""
        try:
            info = self.current_batch()
        except Exception:  # report the store as unavailable
            info = None
        ready = bool(self.reference and self.reference.popular_items)
        return ready, {
            "ready": ready,
            "breaker": self.breaker.state,
            "fallback_items": len(self.reference.popular_items) if self.reference else 0,
            "batch": None
            if info is None
            else {
                "model_version": info.model_version,
                "generated_at": info.generated_at,
                "fresh": info.age_seconds() <= self.settings.freshness_s,
            },
            "shadow": self.shadow is not None,
        }

    # ------------------------------------------------------------------ the three sources
    def from_batch(self, user_id: str, k: int) -> dict[str, Any] | None:
        """The batch's list for `user_id` (its cold-start list for a user the model never saw);
        None when there is no fresh batch, no list, or a list shorter than `k`."""
        store = self.store
        if store is None:
            return None
        freshness_s = self.settings.freshness_s
        try:
            info = self.current_batch()
            if info is None or info.age_seconds() > freshness_s:
                return None
            recs = store.get(user_id)
            cold = recs is None and (recs := store.get_cold_start(user_id)) is not None
        except Exception:  # a store outage means "no batch", not an error
            logger.warning("batch store read failed; using the model service", exc_info=True)
            return None
        if recs is None or len(recs.item_ids) < k or recs.batch.age_seconds() > freshness_s:
            return None
        if cold:
            self.metrics.cold_starts.inc()
        batch = recs.batch
        return _payload(
            user_id,
            _ranked(recs.item_ids[:k], recs.scores[:k]),
            k,
            batch.model_name,
            batch.model_version,
            "batch",
            cold_start=cold,
            batch_generated_at=batch.generated_at,
        )

    async def from_model(self, user_id: str, k: int, device: str, hour: int) -> dict[str, Any]:
        """The model service's list, or the fallback when the call fails or the breaker is open."""
        metrics = self.metrics
        start = time.perf_counter()
        try:
            answer = await self.breaker.call(lambda: self.model.recommend(user_id, k, device, hour))
        except BreakerOpenError:
            return self.fallback(user_id, k, "breaker_open")
        except TimeoutError:
            metrics.model_call_latency.labels("timeout").observe(time.perf_counter() - start)
            metrics.model_call_failures.labels("timeout").inc()
            return self.fallback(user_id, k, "timeout")
        except ModelCallError as exc:
            metrics.model_call_latency.labels("error").observe(time.perf_counter() - start)
            metrics.model_call_failures.labels(exc.reason).inc()
            return self.fallback(user_id, k, exc.reason)
        metrics.model_call_latency.labels("ok").observe(time.perf_counter() - start)
        if not answer.known_user:
            metrics.cold_starts.inc()
        return _payload(
            user_id,
            [{"item_id": i.item_id, "score": i.score, "rank": i.rank} for i in answer.items[:k]],
            k,
            answer.model_name,
            answer.model_version,
            "model",
            cold_start=not answer.known_user,
        )

    def fallback(self, user_id: str, k: int, reason: str) -> dict[str, Any]:
        """The reference's popularity list (empty before a reference exists), flagged with `reason`."""
        ref = self.reference
        items = ref.popular_items[:k] if ref else []
        scores = ref.popular_scores[:k] if ref else []
        self.metrics.fallbacks.labels(reason).inc()
        return _payload(
            user_id,
            _ranked(items, scores),
            k,
            FALLBACK_MODEL,
            f"{FALLBACK_MODEL}@{ref.model_version}" if ref else FALLBACK_MODEL,
            "fallback",
            fallback_reason=reason,
        )

    # ------------------------------------------------------------------ one request
    async def answer(self, user_id: str, k: int, device: str, hour: int | None) -> bytes:
        """The JSON answer to one recommendation request (the route and the fast path call it).

        Records the answer's latency, source, version and context for the metrics and the
        drift gauges, and mirrors a non-fallback answer to the challenger.

        Args:
            user_id: A user id (valid by `schemas.USER_ID_PATTERN`).
            k: List length.
            device: Client device (``unknown`` when not given).
            hour: Hour of day in UTC (None: now).
        """
        start = time.perf_counter()
        hour = datetime.now(UTC).hour if hour is None else hour
        response = self.from_batch(user_id, k) or await self.from_model(user_id, k, device, hour)
        latency = time.perf_counter() - start
        source, version, items = response["source"], response["model_version"], response["items"]
        metrics = self.metrics
        metrics.recommendation_latency.labels(source).observe(latency)
        metrics.recommendations.labels(source, metrics.ctr.version_label(version)).inc()
        drift = metrics.drift
        if device != DEFAULT_DEVICE:  # an absent context is not a shift of the device mix
            drift.observe("device", [device])
        drift.observe("hour", [str(hour)])
        item_ids = [i["item_id"] for i in items]
        if self.reference is not None:
            drift.observe("item_popularity", [self.reference.bucket_of(i) for i in item_ids])
        if self.shadow is not None and not response["fallback"]:
            self.shadow.submit(
                ShadowJob(
                    user_id=user_id,
                    k=k,
                    device=device,
                    hour=hour,
                    champion_items=item_ids,
                    champion_version=version,
                    champion_latency_s=latency,
                )
            )
        return to_json(response)

    async def _call_challenger(self, job: ShadowJob) -> tuple[list[Any], str]:
        assert self.challenger is not None  # only called when a challenger is configured
        answer = await self.challenger.recommend(job.user_id, job.k, job.device, job.hour)
        return [i.item_id for i in answer.items], answer.model_version
