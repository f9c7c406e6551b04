"""One typed config for level 2: simulator, features, splits, imbalance, selection, search, MLflow, campaign.

Profiles: ``quick`` (CI and ``make level2``: a few thousand customers, a small search budget)
and ``full`` (50,000 customers, a bigger search). Override with a YAML/TOML file (``--config``;
``params.yaml`` is one) or environment variables ``L2__SEARCH__N_TRIALS=40``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from level2_churn.features import FeatureConfig
from level2_churn.simulate import SimulatorConfig
from shared.config import LevelConfig
from shared.runtime import mlflow_sqlite_uri, sqlite_artifact_root

IMBALANCE_METHODS = ("none", "class_weight", "undersample", "smote")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Section):
    """Walk-forward (expanding window) validation over monthly snapshots.

    Attributes:
        n_folds: Validation windows before the test window (at least 4).
        gap_periods: Snapshot months left out between the end of training and each validation window,
            so no training label (churn in the 30 days after its snapshot) is still open at validation.
        valid_periods: Snapshot months per validation window.
        test_periods: Latest snapshot months held out as the final test.
        min_train_periods: Fewest snapshot months the first fold may train on.
    """

    n_folds: int = Field(4, ge=2)
    gap_periods: int = Field(1, ge=0)
    valid_periods: int = Field(1, ge=1)
    test_periods: int = Field(1, ge=1)
    min_train_periods: int = Field(2, ge=1)


class ImbalanceConfig(_Section):
    """Which class-imbalance treatments to compare on walk-forward PR-AUC.

    Attributes:
        methods: Subset of ``none``, ``class_weight``, ``undersample``, ``smote``.
        undersample_ratio: Minority/majority ratio after random undersampling.
        smote_ratio: Minority/majority ratio after SMOTE.
        tolerance: The simplest treatment within this of the best mean PR-AUC is chosen.
        max_train_rows: Cap on the rows of each fold's training window the comparison trains on: a sample
            stratified by label (the churn rate is kept exactly). The comparison only decides which
            treatment to use; at 50,000 customers a fold holds close to a million rows, and SMOTE's
            neighbour search on all of them cost minutes while 50,000 rows take seconds and rank the
            treatments the same way. ``None``: every row.
    """

    methods: list[str] = Field(default_factory=lambda: list(IMBALANCE_METHODS))
    undersample_ratio: float = Field(0.5, gt=0, le=1)
    smote_ratio: float = Field(0.5, gt=0, le=1)
    tolerance: float = Field(0.005, ge=0)
    max_train_rows: int | None = Field(50_000, ge=1000)

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in IMBALANCE_METHODS]
        if bad or not v:
            raise ValueError(f"methods must be a non-empty subset of {IMBALANCE_METHODS}, got {v}")
        return v


class SelectionConfig(_Section):
    """Feature selection, fitted inside each training window only.

    Attributes:
        enabled: Run selection at all.
        corr_threshold: |Pearson r| above which the later of two numeric features is dropped.
        n_repeats: Permutation-importance repeats.
        min_importance: Keep features whose mean PR-AUC drop under permutation exceeds this.
        min_features: Never keep fewer than this many (the top ones by importance).
        sample_rows: Rows used for the correlation screen (the rest adds nothing but time).
        tolerance: Selection is used when its walk-forward PR-AUC is within this of all features.
        max_train_rows: Cap on the training-window rows selection (and its all-vs-selected comparison)
            uses, a label-stratified sample as for the imbalance comparison; the final window's
            selection uses the same cap. ``None``: every row.
    """

    enabled: bool = True
    corr_threshold: float = Field(0.98, gt=0, le=1)
    n_repeats: int = Field(2, ge=1)
    min_importance: float = 0.0
    min_features: int = Field(5, ge=1)
    sample_rows: int = Field(20000, ge=100)
    tolerance: float = Field(0.005, ge=0)
    max_train_rows: int | None = Field(50_000, ge=1000)


class SearchConfig(_Section):
    """Optuna TPE search over LightGBM hyperparameters, pruned fold by fold.

    Attributes:
        n_trials: Trials in the study.
        timeout_s: Stop starting new trials after this many seconds (``None``: no limit).
        n_startup_trials: Random trials before TPE takes over (also the pruner's warm-up).
        n_estimators_max: Upper bound of the number of trees.
        max_train_rows: Cap on the rows each fold's search model (and the logistic baseline) trains on: a
            sample stratified by label, so the churn rate is unchanged; the final LightGBM model always
            uses every row. Keeps the search affordable at 50,000+ customers, where a fold holds close
            to a million snapshot rows.
        n_jobs: LightGBM threads. 1 by default: on a busy 2-core machine OpenMP threads spin-wait
            for each other and two threads train 10x slower than one.
    """

    n_trials: int = Field(20, ge=1)
    timeout_s: float | None = None
    n_startup_trials: int = Field(5, ge=1)
    n_estimators_max: int = Field(500, ge=20)
    max_train_rows: int | None = Field(100_000, ge=1000)
    n_jobs: int = Field(1, ge=1)


class MlflowConfig(_Section):
    """MLflow tracking and registry.

    Attributes:
        tracking_uri: ``None`` means a SQLite store under the level's artifacts
            (``artifacts/mlflow/mlflow.db``); a PostgreSQL URL also works:
            ``postgresql+psycopg2://user@host:port/db`` (name the driver: plain ``postgresql://``
            makes SQLAlchemy look for psycopg 3, which is not installed).
        artifact_location: Where run artifacts go (``None``: next to a SQLite store, else under the
            level's ``artifacts/mlflow/mlartifacts``; never the working directory).
        experiment: Experiment name.
        registered_model: Registry name of the churn model.
        alias: Alias set on the newly registered best version.
    """

    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "level2-churn"
    registered_model: str = "level2-churn"
    alias: str = "champion"

    def resolve(self, artifacts_dir: Path) -> tuple[str, str | None]:
        """Tracking URI and artifact location, defaulting to SQLite under `artifacts_dir`."""
        if self.tracking_uri:
            # Keep a SQLite store's artifacts next to its file, never in the working directory.
            if self.artifact_location is None and (store_root := sqlite_artifact_root(self.tracking_uri)):
                return self.tracking_uri, store_root.resolve().as_uri()
            default_root = (artifacts_dir / "mlflow" / "mlartifacts").resolve().as_uri()
            return self.tracking_uri, self.artifact_location or default_root
        uri, root = mlflow_sqlite_uri(artifacts_dir / "mlflow")
        return uri, self.artifact_location or root


class CampaignConfig(_Section):
    """Economics of a retention campaign (Verbraken et al.'s EMP, with fixed parameters).

    A contacted customer costs `contact_cost`; a contacted would-be churner is saved with
    probability `save_rate`, which recovers `clv` (the value of the customer's remaining lifetime).

    Attributes:
        contact_cost: Cost of one contact (call, voucher handling).
        save_rate: Probability that a contacted churner stays.
        clv: Value recovered by keeping a churner.
    """

    contact_cost: float = Field(10.0, ge=0)
    save_rate: float = Field(0.3, gt=0, le=1)
    clv: float = Field(300.0, gt=0)


class ChurnConfig(LevelConfig):
    """Level 2 config: every stage's settings and the one seed."""

    ENV_PREFIX: ClassVar[str] = "L2"
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {
            "simulator": {"customers": 8000, "months": 18},
            "search": {"n_trials": 10, "n_startup_trials": 4, "n_estimators_max": 600},
            "splits": {"n_folds": 4, "test_periods": 2},
        },
        "full": {
            "simulator": {"customers": 50000, "months": 24},
            "search": {"n_trials": 40, "n_startup_trials": 10, "n_estimators_max": 1000},
            "splits": {"n_folds": 6, "test_periods": 2},
        },
    }

    seed: int = 7
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    splits: SplitConfig = Field(default_factory=SplitConfig)
    imbalance: ImbalanceConfig = Field(default_factory=ImbalanceConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    campaign: CampaignConfig = Field(default_factory=CampaignConfig)
    telco_test_size: float = Field(0.2, gt=0, lt=0.5)
    max_quarantine_share: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _one_seed(self) -> ChurnConfig:
        # One seed drives everything: the simulator follows the level's seed unless set on its own.
        if "seed" not in self.simulator.model_fields_set and self.simulator.seed != self.seed:
            self.simulator = self.simulator.model_copy(update={"seed": self.seed})
        return self

    report_name: Literal["report.html"] = "report.html"
