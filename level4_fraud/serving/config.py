"""Settings of the real-time scoring service (the ``serving`` section of the level's config).

Read with ``cfg.section("serving", ServingConfig)``; environment variables override as for every
section (``L4__SERVING__API_KEY=...``, ``L4__SERVING__PORT=8500``). Paths that default to the
run folder (the audit log, its hash key) are resolved by `ServingPaths`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from shared.errors import ConfigError

SERVING_DIR = "serving"
AUDIT_DB = "audit.db"
AUDIT_KEY_FILE = "audit.key"


class RulesConfig(BaseModel):
    """The rules that score a transaction when the model cannot (`serving.rules`).

    Each rule that fires gives a score; the transaction gets the highest one (``base`` when none
    fires). Defaults follow the simulator's fraud scenarios: amounts above 220, bursts of small
    amounts (card testing), many transactions in an hour, an amount far above the card's mean.
    """

    model_config = ConfigDict(extra="forbid")

    base: float = Field(0.01, ge=0, le=1, description="Score when no rule fires")
    high_amount: float = Field(220.0, gt=0, description="An amount above this is suspicious")
    high_amount_score: float = Field(0.9, ge=0, le=1)
    burst_small: int = Field(3, ge=1, description="Small amounts (< 5) in one hour from this count on")
    burst_small_score: float = Field(0.8, ge=0, le=1)
    velocity_1h: int = Field(6, ge=1, description="Transactions of the card in one hour from this count on")
    velocity_1h_score: float = Field(0.6, ge=0, le=1)
    amount_ratio: float = Field(
        5.0, gt=1, description="Amount over the card's 30-day mean from this ratio on"
    )
    amount_ratio_score: float = Field(0.5, ge=0, le=1)


class RayServeSettings(BaseModel):
    """Replicas and autoscaling of the Ray Serve deployment (``serving.ray``; `serving.ray_app`).

    ``max_ongoing_requests`` is a replica's admission limit, not the scaling target
    (``target_ongoing_requests``). When every replica is at its limit, Ray Serve's router holds
    each further request and retries it with a back-off, and throughput collapses: measured here
    with Ray 2.60 on one replica and 64 clients with keep-alive connections, 30 decisions/s at a
    limit of 16 against 97/s at 128 (101-116/s with 4 clients either way). The replica queues what it
    admits on its own event loop at no such cost; the autoscaler still sees every request in
    flight and adds replicas from ``target_ongoing_requests`` on.
    """

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(4.0, gt=0)
    max_ongoing_requests: int = Field(128, ge=1)
    upscale_delay_s: float = Field(2.0, ge=0)
    downscale_delay_s: float = Field(10.0, ge=0)
    replica_cpus: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _check(self) -> RayServeSettings:
        if self.max_ongoing_requests < self.target_ongoing_requests:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be at least "
                f"target_ongoing_requests ({self.target_ongoing_requests:g}): replicas would never "
                "reach the load the autoscaler waits for"
            )
        return self

    def autoscaling_config(self) -> dict[str, Any]:
        """Ray Serve's ``autoscaling_config``."""
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": self.min_replicas,
            "max_replicas": max(self.max_replicas, self.min_replicas),
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
        }


class ServingConfig(BaseModel):
    """The scoring service.

    Attributes:
        host: Interface uvicorn binds (only the loopback by default).
        port: TCP port.
        api_key: Value clients send in ``X-API-Key`` (None: one is generated at start and printed).
        audit_url: ``sqlite:///path`` or ``postgresql://...`` (None: ``RUN/serving/audit.db``).
        audit_hash_key: Secret of the card/terminal hashes in the audit log (None: generated once
            and kept in ``RUN/serving/audit.key``, mode 0600).
        fast_path: The champion's fast model: the ONNX student or its int8 (PyTorch) copy.
        grey_zone: ``[low, high]`` of fast-path scores for which the full ensemble decides.
        decline_precision: Decline (rather than review) from the lowest validation threshold at
            which at least this share of the alerts above it were frauds.
        decline_min_alerts: Validation alerts needed above a decline threshold for it to count.
        reasons: Reason codes returned per decision.
        history: Folder of daily transaction files the card state starts from (None: the run's
            ``data/transactions``, or the folder ``train`` read).
        history_days: Days of history kept per card for the windows (the longest window + 1;
            the ledger keeps the run's habit window too, when it reaches further back).
        workers: uvicorn worker processes (``--workers``); more than one needs ``ledger_url``, as
            each process would otherwise keep its own copy of every card's recent payments.
        ledger_url: ``redis://...``: keep the card state in Redis, shared by every worker
            process, Ray replica and stream consumer and kept across restarts
            (`serving.redis_ledger`); None: in each process.
        onnx_threads: onnxruntime intra-op threads.
        decide_on_loop: Decide on the API's event loop, awaiting only the audit commit (SQLite
            audit log; `serving.fast_route.Decider`).
        decide_threads: Worker threads deciding at once in the API otherwise.
        rules: The fallback rules.
        ray: Ray Serve replicas and autoscaling (``--engine ray``).
        drift_watch: Set the drift gauges from recent decisions (`serving.drift_watch`).
        drift_window: Recent decisions the drift gauges compare with the reference.
        drift_every: Recompute the drift gauges after this many new decisions (never per request).
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8400, ge=0, le=65535)
    api_key: SecretStr | None = None
    audit_url: str | None = None
    audit_hash_key: SecretStr | None = None
    fast_path: Literal["onnx", "int8"] = "onnx"
    grey_zone: tuple[float, float] = (0.1, 0.6)
    decline_precision: float = Field(0.8, gt=0, le=1)
    decline_min_alerts: int = Field(5, ge=1)
    reasons: int = Field(3, ge=0, le=20)
    history: str | None = None
    history_days: int = Field(31, ge=1)
    workers: int = Field(1, ge=1, le=64)
    ledger_url: str | None = None
    onnx_threads: int = Field(1, ge=1)
    decide_on_loop: bool = True
    decide_threads: int = Field(2, ge=1, le=64)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    ray: RayServeSettings = Field(default_factory=RayServeSettings)
    drift_watch: bool = True
    drift_window: int = Field(2000, ge=1)
    drift_every: int = Field(500, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ServingConfig:
        low, high = self.grey_zone
        if not 0 <= low <= high <= 1:
            raise ValueError(f"grey_zone must be 0 <= low <= high <= 1, got {list(self.grey_zone)}")
        if self.api_key is not None and not self.api_key.get_secret_value():
            raise ValueError("api_key must not be empty")
        return self


class ServingPaths:
    """Files the service keeps in a run folder (``RUN/serving/``)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = Path(run_dir).resolve() / SERVING_DIR
        self.audit_db = self.root / AUDIT_DB
        self.audit_key = self.root / AUDIT_KEY_FILE

    def audit_url(self, cfg: ServingConfig) -> str:
        """The configured audit URL, or the run's SQLite file."""
        return cfg.audit_url or f"sqlite:///{self.audit_db}"

    def hash_key(self, cfg: ServingConfig) -> bytes:
        """The configured hash key, or the run's own (created once, readable by its owner only).

        Raises:
            ConfigError: The key file exists but cannot be read or is empty.
        """
        if cfg.audit_hash_key is not None:
            return cfg.audit_hash_key.get_secret_value().encode("utf-8")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting together agree on the first key written.
            fd = os.open(self.audit_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
        try:
            key = self.audit_key.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise ConfigError(f"{self.audit_key}: cannot read the audit hash key ({exc.strerror})") from None
        if not key:
            raise ConfigError(f"{self.audit_key}: empty audit hash key (delete it to make a new one)")
        return key.encode("ascii")


def plain_values(cfg: ServingConfig) -> dict[str, Any]:
    """`cfg` as JSON values with its secrets in clear, for a process that rebuilds it (a Ray
    replica, a uvicorn worker): ``model_dump`` masks them."""
    values = cfg.model_dump(mode="json")
    for secret in ("api_key", "audit_hash_key"):
        value = getattr(cfg, secret)
        if value is not None:
            values[secret] = value.get_secret_value()
    return values


def resolve_api_key(cfg: ServingConfig, given: str | None = None) -> str:
    """The API key: `given` (a CLI option), else the configured one, else a new random one."""
    if given:
        return given
    if cfg.api_key is not None:
        return cfg.api_key.get_secret_value()
    return secrets.token_urlsafe(24)
