"""Calibrators and the saved model wrapper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level2_churn.evaluate import classification_metrics, cumulative_gain, lift_at, pr_auc
from level2_churn.models import Calibrator, ChurnModel, category_levels, fit_estimator
from shared.errors import SchemaError


def test_calibrators_fix_overconfident_scores() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.3, 20000)
    y = (rng.random(len(p)) < p).astype(int)
    raw = np.sqrt(p)  # monotone but badly calibrated
    raw_brier = classification_metrics(y, raw)["brier"]
    for method in ("platt", "isotonic"):
        cal = Calibrator(method).fit(raw[:10000], y[:10000])
        out = cal.transform(raw[10000:])
        assert classification_metrics(y[10000:], out)["brier"] < 0.8 * raw_brier
        assert abs(out.mean() - y[10000:].mean()) < 0.01
    assert np.array_equal(Calibrator("none").fit(raw, y).transform(raw), raw)


def test_metric_functions_known_answers() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    perfect = np.array([0.9, 0.1, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert pr_auc(y, perfect) == 1.0
    assert lift_at(y, perfect, 0.1) == pytest.approx(1.0 / 0.2)  # top row is a churner: 1 / base rate
    share, caught = cumulative_gain(y, perfect)
    assert caught[2] == 1.0 and share[2] == pytest.approx(0.2)
    assert np.isnan(pr_auc(np.zeros(5), np.arange(5)))


def test_churn_model_types_new_data_like_training() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "plan": pd.Categorical(rng.choice(["x", "y"], 400))})
    y = ((X["a"] > 0.5) | (X["plan"] == "y") & (rng.random(400) < 0.3)).astype(int).to_numpy()
    est = fit_estimator("lgbm", X, y, params={"n_estimators": 20, "min_child_samples": 5}, n_jobs=1)
    model = ChurnModel(["a", "plan"], category_levels(X), est, Calibrator("none"))
    new = pd.DataFrame({"a": ["1.5", "-2"], "plan": ["y", "never-seen"], "extra": [1, 2]})
    probs = model.predict_proba(new)
    assert probs.shape == (2,) and probs[0] > probs[1]
    with pytest.raises(SchemaError, match="plan"):
        model.predict_proba(new.drop(columns="plan"))


def test_isotonic_keeps_the_model_ranking() -> None:
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 5000)
    y = (rng.random(5000) < scores**2).astype(int)
    cal = Calibrator("isotonic").fit(scores, y)
    probs = cal.transform(scores)
    assert len(np.unique(probs)) == len(np.unique(scores))  # no ties from the step function
    assert pr_auc(y, probs) == pytest.approx(pr_auc(y, scores))
    assert np.max(np.abs(probs - cal.model.predict(scores))) <= 1e-6
