"""The grey zone's compiled ensemble (`serving.rows`) against the sklearn pipelines it replaces,
and the row explainer's occlusion (`serving.explain.RowExplainer`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level4_fraud.baselines import BaselinesConfig, make_baseline
from level4_fraud.datasets import FeatureSpec
from level4_fraud.ensemble import Ensemble
from level4_fraud.serving.explain import RowExplainer, logit
from level4_fraud.serving.rows import CompiledForest, RowEnsemble, probe_rows

SPEC = FeatureSpec(numeric=("amount", "count", "risk"), categorical=("channel", "country"))


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, n),
            "count": rng.poisson(3.0, n).astype(float),
            "risk": rng.random(n),
            "channel": rng.choice(["pos", "ecom", "atm"], n),
            "country": rng.choice(["FR", "DE", "IT", "US"], n),
        }
    )
    for c in SPEC.categorical:
        df[c] = df[c].astype("category")
    df.loc[rng.random(n) < 0.1, "risk"] = np.nan  # the forests learn where missing values go
    logit_p = 0.02 * df["amount"] + 2.0 * df["risk"].fillna(0.5) + (df["channel"] == "ecom") - 4.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit_p))).astype(int)
    return df, y


@pytest.fixture(scope="module")
def fitted():
    cfg = BaselinesConfig.model_validate(
        {"random_forest": {"n_estimators": 25}, "extra_trees": {"n_estimators": 30}}
    )
    x, y = _frame(2000, 0)
    models = {
        name: make_baseline(name, SPEC, cfg, seed=1).fit(x, y)
        for name in ("random_forest", "extra_trees", "lightgbm")
    }
    xv, yv = _frame(800, 1)
    scores = {m: model.predict_proba(xv) for m, model in models.items()}
    return models, Ensemble.fit(scores, yv)


def _rows(n: int, seed: int) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    x, _ = _frame(n, seed)
    cats = [tuple(r) for r in x[list(SPEC.categorical)].astype(str).itertuples(index=False)]
    cats[0] = ("phone", "JP")  # categories never seen in training: ordinal code -1
    return x[list(SPEC.numeric)].to_numpy(dtype=np.float64), cats


@pytest.mark.parametrize("name", ["random_forest", "extra_trees"])
def test_a_compiled_forest_gives_its_pipelines_probabilities_exactly(fitted, name):
    models, _ = fitted
    numeric, cats = _rows(300, 7)
    numeric[:20, 0] = np.nan  # missing amounts, routed as sklearn routes them
    compiled = CompiledForest(models[name].estimator, SPEC.numeric, SPEC.categorical)
    frame = pd.DataFrame(numeric, columns=list(SPEC.numeric))
    for j, c in enumerate(SPEC.categorical):
        frame[c] = pd.Categorical([r[j] for r in cats])
    np.testing.assert_array_equal(compiled.predict(numeric, cats), models[name].predict_proba(frame))


def test_a_model_that_is_not_a_forest_pipeline_is_not_compiled(fitted):
    models, _ = fitted
    with pytest.raises(ValueError, match="pipeline"):
        CompiledForest(models["lightgbm"].estimator, SPEC.numeric, SPEC.categorical)


def test_the_row_ensemble_scores_as_the_runs_ensemble_on_frames(fitted):
    models, ensemble = fitted
    # LightGBM is scored through its own pipeline on a frame, the forests compiled
    rows = RowEnsemble(SPEC.numeric, SPEC.categorical, models, ensemble)
    numeric, cats = _rows(200, 9)
    frame = rows.frame(numeric, cats)
    expected = ensemble.predict_proba({m: models[m].predict_proba(frame) for m in ensemble.members})
    np.testing.assert_allclose(rows.predict(numeric, cats), expected, rtol=0, atol=1e-12)
    assert set(rows.compiled) == {"random_forest", "extra_trees"}
    assert set(rows.member_scores(numeric, cats)) == set(models)


def test_verify_sends_a_compiled_member_that_disagrees_back_to_its_pipeline(fitted):
    models, ensemble = fitted
    members = {"random_forest": models["random_forest"], "extra_trees": models["extra_trees"]}
    rows = RowEnsemble(SPEC.numeric, SPEC.categorical, members, ensemble)
    rows.compiled["extra_trees"].leaf_p[0] = rows.compiled["extra_trees"].leaf_p[0] + 0.5  # corrupt
    numeric, cats = probe_rows(
        SPEC.numeric, SPEC.categorical, {"amount": 20.0, "count": 3.0, "risk": 0.5}, rows.compiled.values()
    )
    rows.verify(numeric, cats)
    assert set(rows.compiled) == {"random_forest"}


def test_row_explainer_contribution_is_the_log_odds_change_of_one_substitution(fitted):
    models, ensemble = fitted
    rows = RowEnsemble(SPEC.numeric, SPEC.categorical, {m: models[m] for m in ensemble.members}, ensemble)
    typical = {"amount": 20.0, "count": 3.0, "risk": 0.2, "channel": "pos", "country": "FR"}
    explainer = RowExplainer(SPEC.numeric, SPEC.categorical, typical, rows.predict)
    values = {"amount": 400.0, "count": 9.0, "risk": None, "channel": "ecom", "country": "IT"}
    p, reasons = explainer.score_and_explain(values, 5, alert_at=0.0)
    assert p == pytest.approx(float(rows.predict(*explainer.rows(values))[0]))
    for reason in reasons:
        changed = {**values, reason.feature: typical[reason.feature]}
        q = float(rows.predict(*explainer.rows(changed))[0])
        assert reason.contribution == pytest.approx(float(logit(p) - logit(q)), abs=1e-9)
    # the missing numeric value is shown as unknown, never invented
    assert all(r.value is None for r in reasons if r.feature == "risk")
