"""Small simulations and configs shared by the integration tests (config, train, predict, cli,
pipeline): a 40-day population of 300 cards with every fraud intensity raised, so one
prequential fold (with its validation fold) fits and every split holds frauds."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from level4_fraud.simulate import SimulatorConfig, simulate, simulate_to_folder

SMALL_SIM: dict[str, Any] = {
    "n_customers": 300,
    "n_terminals": 600,
    "nb_days": 40,
    "drift_day": 25,
    "compromised_terminals_per_day": 10.0,
    "compromised_cards_per_day": 20.0,
    "card_testing_per_day": 15.0,
    "takeover_per_day": 15.0,
    "collusion_tx_per_day": 40.0,
    "drift_cards_per_day": 30.0,
}

# Overrides of FraudConfig for the tests: the small simulation, one fold, small models, no
# optional stage unless a test switches it on.
SMALL_CONFIG: dict[str, Any] = {
    "simulator": SMALL_SIM,
    "seed": 7,
    "evaluation": {"n_folds": 1},
    "baselines": {
        "random_forest": {"n_estimators": 30},
        "extra_trees": {"n_estimators": 30},
        "lightgbm": {"round_grid": [25, 50]},
        "logistic_regression": {"spline_knots": 4},
    },
    "stages": {"feature_store": False, "deep": False},
    "tracking": {"enabled": False},
    "show_progress": False,
}


def small_config(**overrides: Any):
    """A `FraudConfig` with `SMALL_CONFIG` and `overrides` (deep-merged)."""
    from level4_fraud.config import FraudConfig
    from shared.config import deep_merge

    return FraudConfig.model_validate(deep_merge(SMALL_CONFIG, overrides))


@functools.lru_cache(maxsize=1)
def small_simulation() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(transactions, customers, terminals)`` of the small simulation (computed once)."""
    return simulate(SimulatorConfig(seed=7, **SMALL_SIM))


@functools.lru_cache(maxsize=1)
def small_folder() -> Path:
    """A `simulate_to_folder` output of the small simulation (made once per session; callers copy
    it before changing anything)."""
    root = Path(tempfile.mkdtemp(prefix="l4-small-"))
    simulate_to_folder(SimulatorConfig(seed=7, **SMALL_SIM), root / "sim")
    return root / "sim"


def split_folder(tmp: Path, test_days: int = 3) -> tuple[Path, Path, Path]:
    """Copy the small simulation's daily files into ``history/`` (all but the last days) and
    ``test/`` (the last `test_days`), with the side tables next to both; returns
    ``(all_days, history, test)`` folders."""
    src = small_folder()
    days = sorted((src / "transactions").glob("*.parquet"))
    all_dir, hist, test = tmp / "all" / "transactions", tmp / "split" / "history", tmp / "split" / "test"
    for d in (all_dir, hist, test):
        d.mkdir(parents=True)
    for i, f in enumerate(days):
        shutil.copy2(f, all_dir / f.name)
        shutil.copy2(f, (test if i >= len(days) - test_days else hist) / f.name)
    for table in ("customers.parquet", "terminals.parquet"):
        shutil.copy2(src / table, tmp / "all" / table)
        shutil.copy2(src / table, tmp / "split" / table)
    return all_dir, hist, test
