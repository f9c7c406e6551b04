"""The level's one typed config: every knob in one place, with `quick` and `full` profiles."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from shared.config import LevelConfig

Task = Literal["auto", "classification", "regression"]


class L1Config(LevelConfig):
    """Settings for a Level 1 run.

    Override them with a profile (`--profile full`), a YAML/TOML file (`--config`),
    environment variables (``L1__TEST_SIZE=0.3``) or CLI options, in that order.
    """

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        # quick: what CI and `make level1` run; figures on small samples.
        "quick": {"plot_rows": 5_000, "pairplot_rows": 400, "max_plot_columns": 6, "max_train_rows": 100_000},
        # full: bigger samples, more columns in the figures, more rows for training.
        "full": {
            "plot_rows": 50_000,
            "pairplot_rows": 2_000,
            "max_plot_columns": 10,
            "max_train_rows": 500_000,
            "stats_rows": 1_000_000,
        },
    }
    ENV_PREFIX: ClassVar[str] = "L1"

    target: str = "species"
    task: Task = "auto"

    # Splitting and validation.
    test_size: float = Field(0.25, gt=0.0, lt=1.0)
    cv_folds: int = Field(5, ge=2, le=20)
    max_train_rows: int = Field(100_000, ge=100, description="larger training sets are sampled down")

    # Column-role thresholds (see schema.py for how each is used).
    max_categories: int = Field(20, ge=2, description="one-hot keeps at most this many levels per column")
    high_cardinality: int = Field(50, ge=2, description="more distinct values than this is high-cardinality")
    id_unique_ratio: float = Field(0.95, gt=0.0, le=1.0, description="share of unique values of an ID column")
    near_unique_ratio: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="text with at least this share of distinct values (and more than max_categories) "
        "is dropped like an ID",
    )
    mostly_missing: float = Field(0.5, gt=0.0, le=1.0, description="warn when a column is missing this often")
    max_classes: int = Field(20, ge=2, description="numeric target with at most this many values: classes")

    # Figures and association matrices: computed on samples so a million-row file takes seconds.
    stats_rows: int = Field(100_000, ge=100, description="rows sampled for correlations and Cramér's V")
    plot_rows: int = Field(5_000, ge=100)
    pairplot_rows: int = Field(400, ge=50)
    max_plot_columns: int = Field(6, ge=2)
