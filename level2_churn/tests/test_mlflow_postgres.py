"""Optuna trials and the registry against PostgreSQL (127.0.0.1:5432, user postgres; runs in CI)."""

from __future__ import annotations

import uuid

import joblib
import mlflow
import pytest

from level2_churn.splits import walk_forward
from level2_churn.tests.helpers import PANEL_FEATURES, synthetic_panel
from level2_churn.tracking import load_registered, register_churn_model
from level2_churn.train import ModelData, run_modelling
from shared.tracking import MlflowTracker

pytestmark = pytest.mark.services


@pytest.fixture
def pg_uri():
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"l2_mlflow_{uuid.uuid4().hex[:10]}"  # a fresh database per run: nothing shared, nothing left
    try:
        conn = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=5
        )
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        # the driver named explicitly: SQLAlchemy/MLflow would otherwise look for psycopg 3
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def test_trials_and_registry_on_postgres(pg_uri, tiny_cfg, tmp_path) -> None:
    frame, _ = synthetic_panel(n_customers=600, n_months=10, seed=4)
    data = ModelData(frame, PANEL_FEATURES, id_col="customer_id", date_col="snapshot_date")
    plan = walk_forward(frame["snapshot_date"], n_folds=4)
    cfg = tiny_cfg.model_copy(
        update={
            "imbalance": tiny_cfg.imbalance.model_copy(update={"methods": ["none"]}),
            "selection": tiny_cfg.selection.model_copy(update={"enabled": False}),
            "search": tiny_cfg.search.model_copy(update={"n_trials": 3, "n_startup_trials": 2}),
        }
    )
    tracker = MlflowTracker(pg_uri, "pg-test", (tmp_path / "artifacts").as_uri())
    with tracker.active():
        res = run_modelling(data, plan, cfg, tracker=tracker, show_progress=False)
        runs = mlflow.search_runs(experiment_ids=[tracker.experiment_id])
        path = tmp_path / "model.joblib"
        joblib.dump(res.model, path)
        info = register_churn_model(tracker, path, name="pg-churn", alias="champion", metrics={}, params={})
    assert (runs["tags.mlflow.runName"].str.startswith("trial-")).sum() == cfg.search.n_trials
    loaded = load_registered(pg_uri, "pg-churn", "champion")
    assert loaded.metadata.run_id == info["run_id"]
