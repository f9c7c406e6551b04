"""The result types the steps hand to each other, the report and the CLI.

They live in their own module so `pipeline.py` (which builds them) and
`report.py` (which reads them) each import this one, not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from level1_eda.data import LoadedCSV
from level1_eda.profile import Profile
from level1_eda.schema import Schema


@dataclass
class Explored:
    """A loaded, typed and profiled data set."""

    dataset: str
    loaded: LoadedCSV
    frame: pd.DataFrame
    schema: Schema
    profile: Profile
    warnings: list[str]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Test-set results of the model and the baseline."""

    test: dict[str, float]
    baseline_test: dict[str, float]
    y_test: pd.Series
    y_pred: np.ndarray
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    coefficients: pd.DataFrame


@dataclass
class RunResult:
    """Where a run wrote its outputs and its headline number."""

    run_dir: Path
    report: Path
    metrics: dict[str, Any]
    model: Path | None = None
    warnings: list[str] = field(default_factory=list)
