"""Level-2 fixtures: small generated data, a tiny config and one modelling run shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from level2_churn.config import ChurnConfig
from level2_churn.splits import walk_forward
from level2_churn.tests.helpers import PANEL_FEATURES, synthetic_panel
from level2_churn.train import ModelData, run_modelling
from shared.config import load_config
from shared.runtime import mlflow_sqlite_uri
from shared.tracking import MlflowTracker

TINY = {
    "search": {"n_trials": 6, "n_startup_trials": 3, "n_estimators_max": 150, "n_jobs": 1},
    "selection": {"n_repeats": 2},
}


@pytest.fixture(scope="session")
def tiny_cfg() -> ChurnConfig:
    return load_config(ChurnConfig, profile="quick", overrides=TINY, environ={})


@pytest.fixture(scope="session")
def panel():
    return synthetic_panel()


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> tuple[str, str]:
    return mlflow_sqlite_uri(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="session")
def panel_run(panel, tiny_cfg, mlflow_store):
    """One modelling run on the synthetic panel, every trial logged to a temporary SQLite store."""
    frame, oracle = panel
    data = ModelData(frame, PANEL_FEATURES, id_col="customer_id", date_col="snapshot_date")
    plan = walk_forward(frame["snapshot_date"], n_folds=4, gap_periods=1, test_periods=1)
    tracker = MlflowTracker(mlflow_store[0], "panel-test", mlflow_store[1])
    with tracker.active():
        res = run_modelling(data, plan, tiny_cfg, tracker=tracker, oracle=oracle, show_progress=False)
    return res, tracker, data


@pytest.fixture(scope="session")
def telco_csv(tmp_path_factory) -> Path:
    from level2_churn.telco import synthetic_telco

    path = tmp_path_factory.mktemp("telco") / "telco.csv"
    synthetic_telco(1500, seed=3).to_csv(path, index=False)
    return path
