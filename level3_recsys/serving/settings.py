"""Settings of the serving layer, read from the environment (pydantic-settings).

Two groups, one per process, named by the level's convention ``L3__SECTION__FIELD``:

* `ServingSettings` (``L3__SERVING__*``): the recommendation API.
* `ModelServiceSettings` (``L3__MODEL_SERVICE__*``): the model service (BentoML or `model_app`).

Every field can be set as an environment variable, e.g. ``L3__SERVING__API_KEY=secret`` or
``L3__SERVING__MODEL_TIMEOUT_S=0.2``; containers and compose files configure the services that
way. (The load test's traffic reads ``L3__LOAD__*``: `level3_recsys.loadtest.traffic`.) The
names before this convention (``L3_SERVING_*``, ``L3_MODEL_*``) are refused with the new name,
so a deployment still using them fails at start instead of running on defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

API_KEY_HEADER = "X-API-Key"
SERVING_ENV_PREFIX = "L3__SERVING__"
MODEL_ENV_PREFIX = "L3__MODEL_SERVICE__"
LOAD_ENV_PREFIX = "L3__LOAD__"
_RENAMED = {"L3_SERVING_": SERVING_ENV_PREFIX, "L3_MODEL_": MODEL_ENV_PREFIX, "L3_LOAD_": LOAD_ENV_PREFIX}


def renamed_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables set under a name from before the ``L3__SECTION__FIELD`` convention, with their new name."""
    environ = os.environ if environ is None else environ
    return {
        key: new + key[len(old) :]
        for key in environ
        for old, new in _RENAMED.items()
        if key.upper().startswith(old)
    }


def _refuse_renamed(prefix: str) -> None:
    old = {k: v for k, v in renamed_variables().items() if v.startswith(prefix)}
    if old:
        pairs = ", ".join(f"{k} -> {v}" for k, v in sorted(old.items()))
        raise ValueError(f"environment variables were renamed: {pairs}")


class ServingSettings(BaseSettings):
    """Everything the recommendation API needs.

    Attributes:
        api_key: Value clients send in the ``X-API-Key`` header (all routes but health/metrics).
        model_service_url: Base URL of the champion's model service.
        challenger_service_url: Base URL of the challenger's model service (None: no shadow).
        store_url: Batch store (``sqlite:///...`` or ``redis://...``); None: no batch results.
        reference_path: JSON written by `reference.build_reference` (popularity fallback and
            the training distributions for drift); None: fallback from the batch, no drift.
        model_timeout_s: Deadline of one model-service call, connection included.
        freshness_s: A batch older than this is stale and not served.
        store_cache_s: How long the store's current-batch pointer is cached.
        breaker_failure_rate: Failure share in the window that opens the breaker.
        breaker_window_s: Length of the breaker's sliding window of outcomes.
        breaker_min_calls: Calls needed in the window before the rate can open the breaker.
        breaker_open_s: Time the breaker stays open before letting a probe through.
        breaker_half_open_probes: Concurrent probes allowed while half-open.
        breaker_close_after: Successful probes in a row that close the breaker.
        shadow_queue_size: Bound of the shadow queue (full: the copy is dropped).
        shadow_timeout_s: Deadline of one challenger call.
        shadow_workers: Concurrent challenger calls.
        shadow_log_path: JSONL file of shadow comparisons (None: metrics and summary only).
        shadow_log_max_bytes: Size at which the shadow log rotates (one backup kept).
        shadow_window: Comparisons kept for the summary.
        drain_timeout_s: Bound on draining the shadow queue at shutdown.
        drift_window: Requests in the sliding window of the drift (PSI) gauges.
        ctr_window: Feedback events in the sliding window of the CTR gauges.
        max_model_versions: Distinct model-version label values tracked (bounds metric cardinality).
    """

    model_config = SettingsConfigDict(
        env_prefix=SERVING_ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    api_key: SecretStr = Field(SecretStr("change-me"), description="value of the X-API-Key header")
    model_service_url: str = "http://127.0.0.1:3000"
    challenger_service_url: str | None = None
    store_url: str | None = None
    reference_path: str | None = None
    model_timeout_s: float = Field(0.3, gt=0, le=30)
    freshness_s: float = Field(36 * 3600.0, gt=0)
    store_cache_s: float = Field(1.0, ge=0)
    breaker_failure_rate: float = Field(0.5, gt=0, le=1)
    breaker_window_s: float = Field(10.0, gt=0)
    breaker_min_calls: int = Field(5, ge=1)
    breaker_open_s: float = Field(5.0, gt=0)
    breaker_half_open_probes: int = Field(1, ge=1)
    breaker_close_after: int = Field(2, ge=1)
    shadow_queue_size: int = Field(256, ge=1)
    shadow_timeout_s: float = Field(1.0, gt=0)
    shadow_workers: int = Field(2, ge=1, le=64)
    shadow_log_path: str | None = None
    shadow_log_max_bytes: int = Field(50_000_000, ge=1000)
    shadow_window: int = Field(1000, ge=1)
    drain_timeout_s: float = Field(2.0, ge=0)
    drift_window: int = Field(2000, ge=10)
    ctr_window: int = Field(10_000, ge=10)
    max_model_versions: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _key_not_empty(self) -> ServingSettings:
        _refuse_renamed(SERVING_ENV_PREFIX)
        if not self.api_key.get_secret_value():
            raise ValueError("api_key must not be empty")
        return self


class ModelServiceSettings(BaseSettings):
    """Where the model service finds its model.

    Attributes:
        tracking_uri: MLflow tracking/registry URI (``sqlite:///.../mlflow.db``).
        artifact_location: MLflow artifact root (only used when the experiment must be created).
        model_uri: ``models:/<registered name>@<alias>`` (``champion`` or ``challenger``).
    """

    model_config = SettingsConfigDict(env_prefix=MODEL_ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    tracking_uri: str = ""
    artifact_location: str = ""
    model_uri: str = "models:/level3_recsys@champion"

    @model_validator(mode="after")
    def _no_renamed_variables(self) -> ModelServiceSettings:
        _refuse_renamed(MODEL_ENV_PREFIX)
        return self
