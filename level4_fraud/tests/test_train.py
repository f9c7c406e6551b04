"""Baselines, the ensemble and the training/evaluation stages (train.py).

The issue's target — the ensemble's AP beats every single model on the quick profile — is
`test_quick_profile_ensemble_beats_every_member` (slow: the whole quick simulation, two folds).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from level4_fraud import datasets, schema, train
from level4_fraud.baselines import BASELINES, BaselineModel, BaselinesConfig, class_weights
from level4_fraud.ensemble import Ensemble, EnsembleConfig
from level4_fraud.evaluate import average_precision
from level4_fraud.tests.integration_helpers import small_config, small_simulation


@pytest.fixture(scope="module")
def fold():
    tx, customers, terminals = small_simulation()
    cfg = small_config()
    (f,) = datasets.build_folds(
        tx, feature_cfg=cfg.features, eval_cfg=cfg.evaluation, customers=customers, terminals=terminals
    )
    return f


@pytest.fixture(scope="module")
def fold_run(fold):
    cfg = small_config()
    return train.run_fold(fold, cfg.models, cfg), cfg


def test_class_weights():
    y = np.array([0] * 99 + [1])
    assert class_weights("sqrt", y) == {0: 1.0, 1: pytest.approx(math.sqrt(99))}
    assert class_weights("balanced", y) == "balanced"
    assert class_weights(None, y) is None


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_ranks_frauds_far_above_chance(fold, name):
    cfg = small_config().baselines
    model = BaselineModel(name, fold.spec, cfg).fit(fold.X("train"), fold.y("train"))
    scores = model.predict_proba(fold.test_eval)
    y = fold.test_eval[schema.TX_FRAUD].to_numpy()
    assert scores.shape == (len(y),) and np.all((scores >= 0) & (scores <= 1))
    assert average_precision(y, scores) > 5 * y.mean()


def test_lightgbm_picks_its_rounds_on_validation(fold):
    cfg = BaselinesConfig(lightgbm={"round_grid": (10, 40)})
    model = BaselineModel("lightgbm", fold.spec, cfg).fit(
        fold.X("valid_train"), fold.y("valid_train"), valid=(fold.X("valid"), fold.y("valid"))
    )
    assert set(model.validation_ap_) == {10, 40}
    best = max(model.validation_ap_.values())
    assert model.validation_ap_[model.best_iteration_] == best
    final = BaselineModel("lightgbm", fold.spec, cfg, **model.refit_settings()).fit(
        fold.X("train"), fold.y("train")
    )
    assert final.estimator.n_estimators == model.best_iteration_


def test_baseline_rejects_one_class_and_unknown_names(fold):
    with pytest.raises(ValueError, match="one class"):
        BaselineModel("random_forest", fold.spec).fit(fold.X("train"), np.zeros(len(fold.train), dtype=int))
    with pytest.raises(ValueError, match="unknown baseline"):
        BaselineModel("svm", fold.spec)


def _synthetic(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.03).astype(int)
    signal = y * 2.0
    good_a = 1 / (1 + np.exp(-(signal + rng.normal(0, 1, n) - 3)))
    good_b = 1 / (1 + np.exp(-(signal + rng.normal(0, 1, n) - 3)))
    noise = rng.random(n)
    days = np.repeat(np.arange(6), n // 6)
    return y, {"a": good_a, "b": good_b, "noise": noise}, days


def test_ensemble_leaves_out_a_useless_member_and_beats_the_others():
    y, scores, days = _synthetic()
    ens = Ensemble.fit(scores, y, days)
    assert "noise" not in ens.members and set(ens.members) == {"a", "b"}
    assert ens.method in ("rank_mean", "stacking")
    y2, s2, _ = _synthetic(seed=1)  # fresh rows: the combination generalises
    p = ens.predict_proba(s2)
    assert average_precision(y2, p) > max(average_precision(y2, s2["a"]), average_precision(y2, s2["b"]))
    # every candidate (subsets of >= 2 members x methods) was scored on held-out blocks
    assert len(ens.candidates) == 4 * 2


def test_ensemble_calibration_is_monotone_and_a_probability():
    y, scores, days = _synthetic()
    ens = Ensemble.fit(scores, y, days, EnsembleConfig(methods=["rank_mean"]))
    c = ens.combined(scores)
    p = ens.predict_proba(scores)
    order = np.argsort(c)
    assert np.all(np.diff(p[order]) >= -1e-12)
    assert 0.5 * y.mean() < p.mean() < 2 * y.mean()  # calibrated on the validation rows
    assert ens.predict_proba({k: v[:0] for k, v in scores.items()}).shape == (0,)


def test_ensemble_needs_two_members_and_frauds():
    y, scores, days = _synthetic()
    with pytest.raises(ValueError, match="at least 2"):
        Ensemble.fit({"a": scores["a"]}, y, days)
    with pytest.raises(ValueError, match="no fraud"):
        Ensemble.fit(scores, np.zeros_like(y), days)


def test_run_fold_scores_every_model_and_the_ensemble(fold_run):
    run, cfg = fold_run
    assert run.models == [*cfg.models, train.ENSEMBLE]
    for m in run.models:
        assert len(run.valid[m]) == len(run.fold.index["valid"])
        assert len(run.test[m]) == len(run.fold.index["test"])
        assert set(run.metrics[m]) >= {"average_precision", "card_precision_at_k", "roc_auc", "recall_at_fpr"}
    assert run.ensemble is not None and set(run.ensemble.members) <= set(cfg.models)


def test_thresholds_come_from_validation_not_test(fold_run):
    run, cfg = fold_run
    before = {m: t.threshold for m, t in run.thresholds.items()}
    other = copy.copy(run)  # any change of the test scores and labels leaves the thresholds alone
    other.test = {m: np.random.default_rng(0).random(len(s)) for m, s in run.test.items()}
    other.thresholds = {}
    after = {m: t.threshold for m, t in train.choose_thresholds(other, cfg.evaluation).items()}
    assert before == after


def test_run_folder_files(fold_run, tmp_path):
    run, cfg = fold_run
    table = train.comparison_table([run])
    assert table.index[-1] == train.ENSEMBLE and (table["folds"] == 1).all()
    train.save_run(tmp_path, run, feature_cfg=cfg.features, dataset="simulated")
    train.write_scores(tmp_path, [run])
    train.write_comparison(tmp_path, table)
    path = train.write_run_metrics(tmp_path, table, dataset="simulated", runs=[run])
    metrics = json.loads(path.read_text())
    assert metrics["level"] == 4 and metrics["dataset"] == "simulated"
    assert metrics["headline_metric"] == "average_precision"
    assert metrics["headline_value"] == pytest.approx(table.loc["ensemble", "average_precision"])
    assert set(metrics["test"]) == set(table.index)
    assert metrics["threshold"] == pytest.approx(run.thresholds["ensemble"].threshold)
    scores = train.read_scores(tmp_path, run.fold.number)
    assert {"score_ensemble", "split", "evaluated"} <= set(scores.columns)
    assert (scores["split"] == "test").sum() == len(run.fold.index["test"])

    from level4_fraud.predict import load_run

    model = load_run(tmp_path)
    np.testing.assert_allclose(model.score(run.fold.frame, run.fold.index["test"]), run.test["ensemble"])


@pytest.mark.slow
def test_quick_profile_ensemble_beats_every_member():
    """The issue's target, on the quick profile's simulation and protocol (two folds)."""
    from level4_fraud.config import FraudConfig
    from level4_fraud.simulate import simulate

    cfg = FraudConfig()
    tx, customers, terminals = simulate(cfg.simulator_config())
    folds = datasets.build_folds(
        tx, feature_cfg=cfg.features, eval_cfg=cfg.evaluation, customers=customers, terminals=terminals
    )
    assert len(folds) == cfg.evaluation.n_folds
    runs = [train.run_fold(f, cfg.models, cfg) for f in folds]
    table = train.comparison_table(runs)
    ap = table["average_precision"]
    members = ap.drop(train.ENSEMBLE)
    assert ap[train.ENSEMBLE] > members.max(), table
