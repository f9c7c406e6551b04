"""Settings of the event stream (the ``stream`` section of the level's config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StreamConfig(BaseModel):
    """How transactions are replayed and how the consumer group reads them.

    Attributes:
        tps: Offered load, transactions per second.
        broker: ``redis://host:port/db`` of the Redis Stream; None calls the API directly.
        url: Base URL of the scoring API (direct mode).
        api_key: Its key, sent as ``X-API-Key`` (None: the ``serving`` section's ``api_key``).
        concurrency: Requests in flight at most (direct mode); beyond it the replay waits, and
            the wait counts in the latency (measured from each transaction's scheduled time).
        timeout_s: Per-request timeout (direct mode).
        key: The Redis Stream's key.
        group: The consumer group's name.
        consumers: Scorer processes the ``stream`` command starts (0: they run elsewhere).
        maxlen: Approximate cap on the stream's length (``XADD MAXLEN ~``); None keeps all.
        read_count: Entries one ``XREADGROUP`` returns at most.
        block_ms: How long ``XREADGROUP`` waits for new entries.
        claim_min_idle_ms: A pending entry idle this long belongs to a dead (or stuck)
            consumer and is claimed by another (``XAUTOCLAIM``).
        claim_every_s: How often a consumer looks for such entries.
        push_features: Push each scored card's activity to the online store (Feast push source).
        flush_every_s: A consumer pushes card activity and acknowledges what it decided at most
            this often (and whenever the stream is idle): a push has a fixed cost of several ms
            whatever its size (tens of ms through ``FeatureStore.push``, which re-reads the
            registry each time), so pushing per entry would cap a consumer's rate.
            0: after every read.
        drain_timeout_s: How long the ``stream`` command waits for the group to finish.
        ready_timeout_s: How long it waits for its consumers to load the model and join.
        metrics_port: The consumers serve Prometheus metrics on 127.0.0.1 from this port on
            (consumer i of the ``stream`` command on ``metrics_port + i``); None: not served.
    """

    model_config = ConfigDict(extra="forbid")

    tps: float = Field(500.0, gt=0)
    broker: str | None = None
    url: str = "http://127.0.0.1:8400"
    api_key: str | None = None
    concurrency: int = Field(64, ge=1)
    timeout_s: float = Field(10.0, gt=0)
    key: str = Field("l4:transactions", min_length=1)
    group: str = Field("scorers", min_length=1)
    consumers: int = Field(2, ge=0)
    maxlen: int | None = Field(1_000_000, gt=0)
    read_count: int = Field(32, ge=1)
    block_ms: int = Field(200, ge=1)
    claim_min_idle_ms: int = Field(10_000, ge=0)
    claim_every_s: float = Field(1.0, gt=0)
    push_features: bool = True
    flush_every_s: float = Field(0.25, ge=0)
    drain_timeout_s: float = Field(120.0, gt=0)
    ready_timeout_s: float = Field(180.0, gt=0)
    metrics_port: int | None = Field(None, ge=1, le=65535)

    @field_validator("broker")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"broker must be a redis:// URL, got {value!r}")
        return value
