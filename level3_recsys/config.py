"""Level 3 configuration: one typed object, a ``quick`` profile for CI and a ``full`` one.

Precedence (see `shared.config`): defaults < profile < ``--config`` file
(``params.yaml`` for DVC) < ``L3__...`` environment variables < CLI options.
Every output hangs off ``artifacts_dir`` and ``data_dir`` (the level's own
folders by default), so a test or a DVC workspace can redirect all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from level3_recsys.models import (
    ALSConfig,
    EASEConfig,
    ItemKNNConfig,
    PopularityConfig,
    TwoStageConfig,
    TwoTowerConfig,
)
from level3_recsys.simulate import SimulatorConfig
from shared.config import LevelConfig
from shared.paths import LevelPaths, RedirectedPaths
from shared.runtime import mlflow_sqlite_uri

if TYPE_CHECKING:  # tracking imports MLflow helpers lazily; the config stays light to import
    from level3_recsys.tracking import Tracking

PATHS = LevelPaths.for_package(__file__)
ALL_MODELS = ("popularity", "itemknn", "als", "ease", "two_tower", "two_stage")


class SplitConfig(BaseModel):
    """How the simulator's interactions are cut into past (train) and next period (test)."""

    model_config = ConfigDict(extra="forbid")

    test_days: float = Field(7.0, gt=0, description="the last days of the log form the test period")
    test_users: str = Field("warm", pattern="^(warm|all)$", description="test only users seen in training")


class TrackingConfig(BaseModel):
    """MLflow: where runs go and which registered model holds the champion."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(None, description="default: SQLite file under artifacts/mlflow")
    artifact_location: str | None = Field(None, description="default: artifacts/mlflow/mlartifacts")
    experiment: str = "level3_recsys"
    registered_model: str = "level3_recsys"
    selection_metric: str = "ndcg@10"


class BatchConfig(BaseModel):
    """The nightly batch: who is scored, how many items, where the lists go."""

    model_config = ConfigDict(extra="forbid")

    store_url: str | None = Field(None, description="sqlite:///PATH or redis://HOST:PORT/DB; default SQLite")
    k: int = Field(10, ge=1, le=100)
    active_days: float | None = Field(14.0, gt=0, description="users active in the last N days (None: all)")
    chunk_size: int = Field(4096, ge=1, description="users per scoring block")
    cron: str = "0 2 * * *"


class ModelConfigs(BaseModel):
    """Hyper-parameters of every model (each model's own config class)."""

    model_config = ConfigDict(extra="forbid")

    popularity: PopularityConfig = Field(default_factory=PopularityConfig)
    itemknn: ItemKNNConfig = Field(default_factory=ItemKNNConfig)
    als: ALSConfig = Field(default_factory=ALSConfig)
    ease: EASEConfig = Field(default_factory=EASEConfig)
    two_tower: TwoTowerConfig = Field(default_factory=TwoTowerConfig)
    two_stage: TwoStageConfig = Field(default_factory=TwoStageConfig)

    def for_model(self, name: str) -> BaseModel | None:
        """The config of model `name` (None for a name without one; `build_model` then rejects it)."""
        return getattr(self, name, None) if name in type(self).model_fields else None


class RecsysConfig(LevelConfig):
    """Everything a level-3 run needs.

    Attributes:
        simulator: The simulated media platform (its seed is taken from ``seed``).
        models: Models to train and compare.
        model_configs: Each model's hyper-parameters.
        k: Cut-off of the offline metrics and of the recommendation lists.
        split: Time split of the simulator's log.
        tracking: MLflow settings.
        batch: Nightly batch settings.
        data_dir: Root of ``raw/``, ``interim/``, ``processed/`` (default: the level's ``data/``).
        artifacts_dir: Root of run folders, MLflow and the store (default: the level's ``artifacts/``).
        show_progress: Draw progress bars.
    """

    ENV_PREFIX: ClassVar[str] = "L3"
    # L3__SERVING__*, L3__MODEL_SERVICE__*, L3__LOAD__* configure the serving processes
    # (pydantic-settings in serving/settings.py), not this config.
    ENV_SECTIONS_ELSEWHERE: ClassVar[tuple[str, ...]] = ("serving", "model_service", "load")
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {},
        "full": {
            "simulator": {"n_users": 20000, "n_items": 8000, "days": 60, "new_items_per_day": 60},
            "split": {"test_days": 7.0},
        },
    }

    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    models: list[str] = Field(default_factory=lambda: list(ALL_MODELS))
    model_configs: ModelConfigs = Field(default_factory=ModelConfigs)
    k: int = Field(10, ge=1, le=100)
    split: SplitConfig = Field(default_factory=SplitConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    data_dir: str | None = None
    artifacts_dir: str | None = None
    show_progress: bool = True

    # ------------------------------------------------------------------ resolved locations
    def paths(self) -> LevelPaths:
        """Level paths, with ``data_dir``/``artifacts_dir`` redirected when set."""
        return RedirectedPaths(
            PATHS.root,
            Path(self.data_dir) if self.data_dir else None,
            Path(self.artifacts_dir) if self.artifacts_dir else None,
        )

    def simulator_config(self) -> SimulatorConfig:
        """The simulator config seeded by the level's one seed."""
        return self.simulator.model_copy(update={"seed": self.seed, "show_progress": self.show_progress})

    def tracking_settings(self) -> Tracking:
        """A `tracking.Tracking` with defaults resolved under the artifacts folder."""
        from level3_recsys.tracking import Tracking

        uri, root = mlflow_sqlite_uri(self.paths().artifacts / "mlflow")
        return Tracking(
            tracking_uri=self.tracking.tracking_uri or uri,
            artifact_location=self.tracking.artifact_location or root,
            experiment=self.tracking.experiment,
            registered_model=self.tracking.registered_model,
        )

    def store_url(self) -> str:
        """The batch store URL (SQLite under the artifacts folder by default)."""
        if self.batch.store_url:
            return self.batch.store_url
        return f"sqlite:///{(self.paths().artifacts / 'store' / 'recs.db').resolve()}"
