"""The stages of pipeline.py and the Prefect flow behind ``python -m level4_fraud run``."""

from __future__ import annotations

import json

import pytest

from level4_fraud import pipeline, train
from level4_fraud.tests.integration_helpers import small_config, small_folder


def test_stages_write_a_complete_run_folder(tmp_path):
    cfg = small_config()
    tx, customers, terminals = pipeline.read_simulation(small_folder())
    assert customers is not None and terminals is not None
    folds = pipeline.features(cfg, tx, customers, terminals)
    runs = [pipeline.train_fold(cfg, f) for f in folds]
    table, metrics_path = pipeline.finish_run(cfg, runs, tmp_path)
    assert table.index[-1] == "ensemble"
    for name in ("run.json", "comparison.csv", "metrics.json"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "scores" / "fold0.parquet").is_file()
    metrics = json.loads(metrics_path.read_text())
    assert metrics["headline_model"] == "ensemble"
    assert set(metrics["test"]) == {*cfg.models, "ensemble"}

    from level4_fraud.report import build_report

    report = build_report(tmp_path)
    html = report.read_text()
    sections = (
        "Precision-recall and ROC",
        "Recall per fraud scenario",
        "Score distributions",
        "The ensemble",
    )
    assert all(title in html for title in sections)
    for png in ("pr_roc", "recall_by_scenario", "score_distributions"):
        assert (tmp_path / "figures" / f"{png}.png").stat().st_size > 10_000


def test_read_simulation_of_a_missing_folder_is_a_user_error(tmp_path):
    from shared.errors import InputFileError

    with pytest.raises(InputFileError):
        pipeline.read_simulation(tmp_path / "none")


@pytest.mark.slow
def test_flow_runs_every_stage_and_registers_the_champion(tmp_path):
    """The whole flow on the small simulation: Feast, the deep stage when built, MLflow."""
    cfg = small_config(
        stages={"feature_store": True, "deep": True},
        tracking={"enabled": True},
        artifacts_dir=str(tmp_path / "artifacts"),
    )
    summary = pipeline.level4_flow(cfg, out=tmp_path / "run")
    run = summary.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["level"] == 4 and metrics["headline_metric"] == "average_precision"
    assert metrics["headline_value"] == pytest.approx(summary.headline_value)
    assert metrics["feature_store"]["materialize_seconds"] > 0
    assert (run / "feature_store").is_dir()
    assert summary.report is not None and summary.report.is_file()
    assert summary.registered is not None and summary.registered["alias"] == "champion"
    if pipeline.deep_available():
        assert summary.deep is not None
        assert len(summary.table) > len(cfg.models) + 1  # the PyTorch models joined the comparison
        assert (run / "deep" / "models").is_dir()

    import mlflow

    from shared.tracking import MlflowTracker

    uri, root = cfg.mlflow_store()
    with MlflowTracker(uri, cfg.tracking.experiment, root).active():
        model = mlflow.pyfunc.load_model(f"models:/{cfg.tracking.registered_model}@champion")
    from level4_fraud.predict import load_run

    fold_scores = train.read_scores(run, 0)
    loaded = load_run(run)
    assert model is not None and loaded.ensemble.members
    assert len(fold_scores) > 0
