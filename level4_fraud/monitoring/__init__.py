"""Production monitoring of level 4's deployed model: input and score drift, delayed performance.

* `drift`: PSI and Kolmogorov–Smirnov per window of traffic against the training reference.
* `performance`: AP and CP@100 per window, once the window's fraud labels have arrived.

Settings are the level config's ``monitoring`` section, read with
``cfg.section("monitoring", MonitoringConfig)`` (``L4__MONITORING__DRIFT__PSI_THRESHOLD=0.1``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from level4_fraud.monitoring.drift import DriftConfig
from level4_fraud.monitoring.performance import PerformanceConfig


class MonitoringConfig(BaseModel):
    """The ``monitoring`` section: drift thresholds and label-delayed performance settings."""

    model_config = ConfigDict(extra="forbid")

    drift: DriftConfig = Field(default_factory=DriftConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)


__all__ = ["DriftConfig", "MonitoringConfig", "PerformanceConfig"]
