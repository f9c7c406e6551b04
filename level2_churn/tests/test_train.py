"""Modelling stages on a panel with a known hazard: quality targets, choices by evidence, MLflow logging."""

from __future__ import annotations

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest

from level2_churn.tracking import load_registered, register_churn_model
from level2_churn.train import FoldRun, choose_imbalance, summary_metrics


def test_lightgbm_beats_logistic_on_walk_forward_pr_auc(panel_run) -> None:
    res, _, _ = panel_run
    # the hazard has thresholds and an interaction a linear logit cannot represent
    assert res.tuned.mean() > res.baseline.mean() + 0.02
    assert len(res.tuned.per_fold) == len(res.baseline.per_fold) == 4


def test_test_window_reaches_80_percent_of_oracle(panel_run) -> None:
    res, _, _ = panel_run
    assert res.test_metrics["pr_auc"] >= 0.8 * res.oracle_test["pr_auc"]
    assert res.test_metrics["pr_auc"] > res.test_metrics["base_rate"] * 3


def test_campaign_beats_everybody_and_random_k(panel_run) -> None:
    res, _, _ = panel_run
    c = res.campaign
    assert c["profit"] > c["profit_everybody"]
    assert c["profit"] > c["profit_random_k"]
    assert c["profit"] > 0 and 0 < c["k"] < c["n"]
    assert c["profit"] <= c["profit_hindsight_best"]


def test_calibrated_probabilities_match_the_churn_rate(panel_run) -> None:
    res, _, _ = panel_run
    assert res.calibration_method in ("platt", "isotonic")
    table = res.calibration_table
    assert table.loc[res.calibration_method, "log_loss"] <= table.loc["none", "log_loss"]
    assert abs(res.test_probs.mean() - res.y_test.mean()) < 0.02


def test_metrics_have_every_fold_and_its_spread(panel_run) -> None:
    res, _, _ = panel_run
    m = summary_metrics(res)
    cv = m["cv"]["lgbm"]
    assert len(cv["per_fold"]) == 4
    assert cv["pr_auc_mean"] == pytest.approx(np.mean([f["pr_auc"] for f in cv["per_fold"]]))
    assert cv["pr_auc_std"] == pytest.approx(np.std([f["pr_auc"] for f in cv["per_fold"]], ddof=1))
    assert {"roc_auc_std", "top_decile_lift_mean", "brier_std"} <= set(cv)
    assert m["oracle_pr_auc"] == res.oracle_test["pr_auc"]
    assert {r["method"] for r in m["cv"]["imbalance"]} == {"none", "class_weight", "undersample", "smote"}


def test_imbalance_choice_follows_the_evidence() -> None:
    def run(values):
        return FoldRun(pd.DataFrame({"pr_auc": values}), pd.DataFrame(), 0.0)

    runs = {"none": run([0.30, 0.32]), "smote": run([0.35, 0.37]), "undersample": run([0.3005, 0.3205])}
    assert choose_imbalance(runs, tolerance=0.002) == "smote"
    runs["smote"] = run([0.301, 0.321])  # better by less than the tolerance: keep the simple option
    assert choose_imbalance(runs, tolerance=0.002) == "none"
    runs["none"] = run([0.28, 0.30])  # now undersampling is the simplest close to the best
    assert choose_imbalance(runs, tolerance=0.002) == "undersample"


def test_selection_was_fitted_per_fold_and_reported(panel_run) -> None:
    res, _, _ = panel_run
    tab = res.selection_table
    assert list(tab["fold"]) == ["fold1", "fold2", "fold3", "fold4"]
    assert (tab["n_selected"] < tab["n_all"]).all()  # the constant and the duplicate always go
    gain = tab["pr_auc_selected"].mean() - tab["pr_auc_all"].mean()
    assert res.selection_used == (gain >= -0.005)


def test_every_trial_is_an_mlflow_run(panel_run) -> None:
    res, tracker, _ = panel_run
    with tracker.active():
        runs = mlflow.search_runs(experiment_ids=[tracker.experiment_id])
    trials = runs[runs["tags.mlflow.runName"].str.startswith("trial-")]
    assert len(trials) == len(res.trials)
    states = dict(zip(trials["tags.mlflow.runName"], trials["tags.optuna_state"], strict=True))
    for _, row in res.trials.iterrows():
        assert states[f"trial-{int(row['trial']):03d}"] == row["state"]
    complete = trials[trials["tags.optuna_state"] == "complete"]
    assert complete["metrics.pr_auc_mean"].max() == pytest.approx(res.trials["pr_auc_mean"].max())
    assert (runs["tags.mlflow.runName"] == "search").sum() == 1


def test_registry_alias_round_trip(panel_run, tmp_path) -> None:
    res, tracker, data = panel_run
    path = tmp_path / "model.joblib"
    joblib.dump(res.model, path)
    with tracker.active():
        info = register_churn_model(
            tracker, path, name="panel-churn", alias="champion", metrics={"pr_auc": 0.5}, params={}
        )
        again = register_churn_model(
            tracker, path, name="panel-churn", alias="champion", metrics={}, params={}
        )
    assert int(again["version"]) == int(info["version"]) + 1
    loaded = load_registered(tracker.tracking_uri, "panel-churn", "champion")
    assert loaded.metadata.run_id == again["run_id"]
    sample = data.frame.iloc[res.test_index[:50]]
    assert np.allclose(np.asarray(loaded.predict(sample)), res.model.predict_proba(sample))
