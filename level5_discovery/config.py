"""Level 5 configuration: one typed object composed of each module's own settings.

Precedence (see `shared.config`): defaults < profile < ``--config`` file < ``L5__SECTION__FIELD``
environment variables (``L5__INVESTIGATE__BUDGET=40``) < CLI options.

Profiles:

* ``quick`` (``make level5``, CI; a few minutes on two cores): a 20-gene world, 400 abstracts,
  a two-layer language model pretrained for a few hundred steps, a budget of 30 experiments.
* ``full`` (``make bench``): a 50-gene world, 4,000 abstracts, a larger model trained longer,
  a budget of 80.

Every module keeps its settings class next to its code (`simulate.WorldConfig`,
`literature.LiteratureConfig`, `investigate.InvestigateConfig`, ...). Sections whose
modules import torch, transformers, RDKit or the retrieval stack are plain mappings here,
validated by their class when used (`DiscoveryConfig.section`), so reading the config imports
none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from level5_discovery.experiments import CostConfig
from level5_discovery.literature import LiteratureConfig
from level5_discovery.simulate import WorldConfig
from shared.config import LevelConfig, validation_problems
from shared.errors import ConfigError
from shared.paths import LevelPaths, RedirectedPaths
from shared.runtime import mlflow_sqlite_uri

PATHS = LevelPaths.for_package(__file__)
M = TypeVar("M", bound=BaseModel)


class LabConfig(BaseModel):
    """The simulated laboratory: what experiments cost and how noisy they are."""

    model_config = ConfigDict(extra="forbid")

    costs: CostConfig = Field(default_factory=CostConfig)
    n_replicates: int = Field(4, ge=2, description="Treated and control wells per experiment")
    batch_sd: float = Field(0.1, ge=0.0, description="Per-experiment batch offset (sd)")
    measurement_sd: float = Field(0.1, ge=0.0, description="Per-well measurement noise (sd)")


class TrackingConfig(BaseModel):
    """MLflow: where runs go and which registered model holds the hypothesis model."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Log runs to MLflow (off: the run folder only)")
    tracking_uri: str | None = Field(None, description="Default: a SQLite file under artifacts/mlflow")
    artifact_location: str | None = Field(None, description="Default: artifacts/mlflow/mlartifacts")
    experiment: str = "level5_discovery"
    registered_model: str = "level5_hypothesis_lm"
    alias: str = "champion"


class DiscoveryConfig(LevelConfig):
    """Everything a level-5 run needs.

    Attributes:
        world: The hidden gene-regulatory world (its seed is the level's ``seed``).
        literature: The generated corpus.
        lab: Experiment costs and noise.
        retrieval: `retrieval.RetrievalConfig` values.
        lm: `lm.config.LMConfig` values (the hypothesis language model).
        discover: `discover.DiscoverConfig` values (causal discovery from data).
        investigate: `investigate.InvestigateConfig` values (the loop and its baselines; its
            ``stats``, ``design``, ``beliefs`` and ``estimate`` subsections tune the per-experiment
            tests, the information-gain designer, the edge beliefs and parent selection).
        tracking: MLflow settings.
        data_dir: Root of generated data (default: the level's ``data/``).
        artifacts_dir: Root of run folders and MLflow (default: the level's ``artifacts/``).
        show_progress: Draw progress bars.
    """

    ENV_PREFIX: ClassVar[str] = "L5"
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {},
        "full": {
            "world": {"n_genes": 50},
            "literature": {"n_papers": 4000},
            "lm": {"n_layer": 4, "n_embd": 192, "pretrain_steps": 1500, "lora_steps": 600},
            "investigate": {"budget": 80.0},
            "campaign": {"budget": 200.0, "rl_timesteps": 60_000, "design_rounds": 80},
        },
    }

    world: WorldConfig = Field(default_factory=WorldConfig)
    literature: LiteratureConfig = Field(default_factory=LiteratureConfig)
    lab: LabConfig = Field(default_factory=LabConfig)
    retrieval: dict[str, Any] = Field(default_factory=dict)
    lm: dict[str, Any] = Field(default_factory=dict)
    discover: dict[str, Any] = Field(default_factory=dict)
    investigate: dict[str, Any] = Field(default_factory=dict)
    campaign: dict[str, Any] = Field(default_factory=dict)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    data_dir: str | None = None
    artifacts_dir: str | None = None
    show_progress: bool = True

    def paths(self) -> LevelPaths:
        """Level paths, with ``data_dir``/``artifacts_dir`` redirected when set."""
        return RedirectedPaths(
            PATHS.root,
            Path(self.data_dir) if self.data_dir else None,
            Path(self.artifacts_dir) if self.artifacts_dir else None,
        )

    def mlflow_store(self) -> tuple[str, str]:
        """``(tracking_uri, artifact_location)`` with the SQLite default under the artifacts."""
        if self.tracking.tracking_uri:
            return self.tracking.tracking_uri, self.tracking.artifact_location or ""
        uri, root = mlflow_sqlite_uri(self.paths().artifacts / "mlflow")
        return uri, self.tracking.artifact_location or root

    def section(self, name: str, cls: type[M]) -> M:
        """One plain-mapping section validated by its module's settings class.

        Args:
            name: The section's field name (``lm``, ``retrieval``, ...).
            cls: The pydantic settings class of the module that owns it.

        Raises:
            ConfigError: A value is invalid (one line naming each problem).
        """
        try:
            return cls.model_validate(getattr(self, name))
        except ValidationError as exc:
            raise ConfigError(f"invalid {name} settings: {validation_problems(exc)}") from None
