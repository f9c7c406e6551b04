"""Level 4 configuration: one typed object composed of each module's own settings.

Precedence (see `shared.config`): defaults < profile < ``--config`` file < ``L4__SECTION__FIELD``
environment variables (``L4__EVALUATION__N_FOLDS=3``) < CLI options.

Profiles:

* ``quick`` (``make level4``, CI; a few minutes on two busy cores): 1,500 customers and 3,000
  terminals over 60 days with every scenario and a drift event on day 40; two prequential folds;
  small models.
* ``full`` (``make bench``): the Fraud Detection Handbook's setup — 5,000 customers, 10,000
  terminals, 183 days from 2018-04-01, its three scenarios and 9 columns — evaluated on its
  protocol (four weekly test folds, the oldest training from 2018-07-25 as in its chapter 5), with
  larger models (and the card's spending habit among the features: its 183 days fill the habit
  window, the quick world's 60 do not; `features.habit`). Its published baselines (XGBoost AP
  0.687, CP@100 0.303) are measured so.

Every module keeps its own settings class next to its code (`simulate.SimulatorConfig`,
`evaluate.EvaluationConfig`, `baselines.BaselinesConfig`, ...). Sections whose modules pull in
heavy libraries when imported (Feast; the PyTorch models of the deep stage) are kept here as
plain mappings and validated by their own class when used (`FraudConfig.feature_store_config`,
`FraudConfig.deep_config`), so ``predict`` does not import Feast or torch to read its config.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from level4_fraud.baselines import BASELINES, BaselinesConfig
from level4_fraud.datasets import FeatureConfig
from level4_fraud.distributed.cluster import RayConfig
from level4_fraud.ensemble import EnsembleConfig
from level4_fraud.evaluate import EvaluationConfig
from level4_fraud.simulate import SimulatorConfig
from shared.config import LevelConfig, validation_problems
from shared.errors import ConfigError
from shared.paths import LevelPaths, RedirectedPaths
from shared.runtime import mlflow_sqlite_uri

PATHS = LevelPaths.for_package(__file__)
M = TypeVar("M", bound=BaseModel)
# The Handbook's test folds (chapter 5): fold 0 trains from here, the oldest from 2018-07-25.
HANDBOOK_TEST_START = date(2018, 8, 15)


class TrackingConfig(BaseModel):
    """MLflow: where runs go and which registered model holds the champion."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Log runs to MLflow (off: the run folder only)")
    tracking_uri: str | None = Field(None, description="Default: a SQLite file under artifacts/mlflow")
    artifact_location: str | None = Field(None, description="Default: artifacts/mlflow/mlartifacts")
    experiment: str = "level4_fraud"
    registered_model: str = "level4_fraud"
    alias: str = "champion"


class StagesConfig(BaseModel):
    """Optional stages of the ``run`` flow (each can be switched off to go faster)."""

    model_config = ConfigDict(extra="forbid")

    feature_store: bool = Field(True, description="Materialise the features into the Feast store")
    deep: bool = Field(True, description="PyTorch models, distillation, quantization, LoRA, Ray")
    deep_all_folds: bool = Field(
        False, description="PyTorch models on every fold (off: fold 0 only; their rows show folds=1)"
    )
    registry: bool = Field(True, description="Register the ensemble in MLflow as the champion")
    report: bool = True


class FraudConfig(LevelConfig):
    """Everything a level-4 run needs.

    Attributes:
        simulator: The transaction simulator (its seed is the level's ``seed``).
        features: Windows, label delay and feature set.
        evaluation: The prequential protocol and metric settings.
        start_date_training: Training start of fold 0 (the latest fold); None: the latest fold's
            test week ends on the last simulated day.
        models: Baselines to train (the ensemble chooses among them).
        baselines: Their settings.
        ensemble: How the ensemble is chosen and calibrated.
        deep_in_ensemble: The deep stage's models are ensemble candidates too.
        deep: Settings of the deep stage (`level4_fraud.deep`), validated by its ``DeepConfig``.
        feature_store: `feature_store.FeatureStoreConfig` values (validated when used).
        ray: Where Ray runs (local by default; an address joins a cluster).
        stages: Optional stages of the flow.
        tracking: MLflow settings.
        serving: The real-time scoring service (`serving.config.ServingConfig` values).
        stream: The event stream and its consumers (`stream.StreamConfig` values).
        monitoring: Drift and label-delayed performance monitoring (`monitoring` settings).
        retrain: The drift-triggered retraining flow (`retrain.RetrainConfig` values).
        abtest: Sequential A/B tests (`abtest.ABTestConfig` values).
        compliance: Model card, fairness check and audit retention (`compliance` settings).
        data_dir: Root of ``raw/`` (default: the level's ``data/``).
        artifacts_dir: Root of run folders and MLflow (default: the level's ``artifacts/``).
        show_progress: Draw progress bars.
    """

    ENV_PREFIX: ClassVar[str] = "L4"
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {},
        "full": {
            "simulator": {
                "handbook": True,
                # The published dataset itself, so its baselines compare like for like.
                "handbook_exact": True,
                "n_customers": 5000,
                "n_terminals": 10000,
                "nb_days": 183,
                "start_date": "2018-04-01",
                "radius": 5.0,
            },
            "evaluation": {"n_folds": 4},
            "start_date_training": HANDBOOK_TEST_START.isoformat(),
            "baselines": {
                "random_forest": {"n_estimators": 300, "n_jobs": 2},
                "extra_trees": {"n_estimators": 400, "n_jobs": 2},
                "lightgbm": {"round_grid": [100, 200, 400, 800, 1200], "n_jobs": 2},
            },
            "ray": {"num_cpus": None},
            "stages": {"deep_all_folds": True},
        },
    }

    simulator: SimulatorConfig = Field(
        default_factory=lambda: SimulatorConfig(n_customers=1500, n_terminals=3000, nb_days=60, drift_day=40)
    )
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    start_date_training: date | None = None
    models: list[str] = Field(default_factory=lambda: list(BASELINES), min_length=2)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    deep_in_ensemble: bool = Field(
        False,
        description="Let the ensemble combine the deep stage's PyTorch models too (see the README: "
        "on the quick profile they looked as good as the trees on validation, before the drift "
        "event, and fell apart on the test week after it)",
    )
    deep: dict[str, Any] = Field(default_factory=dict)
    feature_store: dict[str, Any] = Field(default_factory=dict)
    ray: RayConfig = Field(default_factory=RayConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    # Production sections (issue 4b): plain mappings validated by their module's class when used
    # (`section`), so training never imports the serving stack and each module owns its settings.
    serving: dict[str, Any] = Field(default_factory=dict)
    stream: dict[str, Any] = Field(default_factory=dict)
    monitoring: dict[str, Any] = Field(default_factory=dict)
    retrain: dict[str, Any] = Field(default_factory=dict)
    abtest: dict[str, Any] = Field(default_factory=dict)
    compliance: dict[str, Any] = Field(default_factory=dict)
    data_dir: str | None = None
    artifacts_dir: str | None = None
    show_progress: bool = True

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in BASELINES]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(BASELINES)}")
        if len(set(value)) != len(value):
            raise ValueError("models are listed more than once")
        return value

    # ------------------------------------------------------------------ resolved settings
    def paths(self) -> LevelPaths:
        """Level paths, with ``data_dir``/``artifacts_dir`` redirected when set."""
        return RedirectedPaths(
            PATHS.root,
            Path(self.data_dir) if self.data_dir else None,
            Path(self.artifacts_dir) if self.artifacts_dir else None,
        )

    def simulator_config(self) -> SimulatorConfig:
        """The simulator config seeded by the level's one seed."""
        return self.simulator.model_copy(update={"seed": self.seed})

    def mlflow_store(self) -> tuple[str, str]:
        """``(tracking_uri, artifact_location)`` with the SQLite default under the artifacts."""
        if self.tracking.tracking_uri:
            return self.tracking.tracking_uri, self.tracking.artifact_location or ""
        uri, root = mlflow_sqlite_uri(self.paths().artifacts / "mlflow")
        return uri, self.tracking.artifact_location or root

    def section(self, name: str, cls: type[M]) -> M:
        """One plain-mapping section (``serving``, ``stream``, ...) validated by its module's class.

        Args:
            name: The section's field name.
            cls: The pydantic settings class of the module that owns it.

        Raises:
            ConfigError: A value is invalid (one line naming each problem).
        """
        try:
            return cls.model_validate(getattr(self, name))
        except ValidationError as exc:
            raise ConfigError(f"invalid {name} settings: {validation_problems(exc)}") from None

    def feature_store_config(self) -> Any:
        """The ``feature_store`` section as a `feature_store.FeatureStoreConfig` (imports Feast).

        Raises:
            ConfigError: A value is invalid.
        """

        from level4_fraud.feature_store import FeatureStoreConfig

        try:
            return FeatureStoreConfig.model_validate(self.feature_store)
        except ValidationError as exc:
            raise ConfigError(f"invalid feature_store settings: {validation_problems(exc)}") from None

    def deep_config(self) -> Any:
        """The ``deep`` section validated by ``level4_fraud.deep.DeepConfig`` when that module
        exists (None otherwise: the deep stage is not built).

        Raises:
            ConfigError: A value is invalid.
        """
        import importlib.util

        if importlib.util.find_spec("level4_fraud.deep") is None:
            return None

        from level4_fraud import deep  # type: ignore[attr-defined]

        cls = getattr(deep, "DeepConfig", None)
        if cls is None:
            return dict(self.deep)
        try:
            return cls.model_validate(self.deep)
        except ValidationError as exc:
            raise ConfigError(f"invalid deep settings: {validation_problems(exc)}") from None
