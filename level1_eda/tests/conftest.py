"""Shared fixtures: small generated CSVs and one penguins run reused by many tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level1_eda.config import L1Config
from level1_eda.data import penguins_csv
from level1_eda.pipeline import RunResult, run


def small_cfg(**overrides: object) -> L1Config:
    """A config with small samples so tests stay fast."""
    values = {"plot_rows": 300, "pairplot_rows": 100, "max_plot_columns": 3, "cv_folds": 3, **overrides}
    return L1Config(**values)


@pytest.fixture(scope="session")
def penguins_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return penguins_csv(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def penguins_run(tmp_path_factory: pytest.TempPathFactory, penguins_path: Path) -> RunResult:
    """The level's default run (quick profile, 5-fold CV) on penguins, once per session."""
    # Level defaults (split, 5-fold CV, model); smaller figures to keep the suite quick.
    cfg = L1Config(plot_rows=400, pairplot_rows=150, max_plot_columns=3)
    return run(penguins_path, cfg, out=tmp_path_factory.mktemp("penguins-run"))


def make_mixed_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A frame with one column of every role and a learnable 2-class target."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, n)
    x2 = rng.normal(5, 2, n)
    colour = rng.choice(["red", "green", "blue"], n)
    label = np.where(x1 + (colour == "red") * 1.5 + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    return pd.DataFrame(
        {
            "row_id": np.arange(1, n + 1),
            "x1": np.round(x1, 3),
            "x2": np.round(x2, 3),
            "colour": colour,
            "flag": rng.choice(["true", "false"], n),
            "city": [f"c{i}" for i in rng.integers(0, 80, n)],  # 73 levels: most repeat
            "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "comment": [f"note number {i} about this row" for i in range(n)],
            "const": "same",
            "label": label,
        }
    )
