"""Ray Tune searches: Optuna proposes, ASHA stops a hopeless trial early, MLflow records every trial."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from ray import tune

from level4_fraud.distributed.cluster import RayConfig, RaySession, ray_session
from level4_fraud.distributed.tune import (
    LightGBMSearch,
    TabularMLPFactory,
    TorchSearch,
    TuneOutcome,
    TuneSettings,
    tune_lightgbm,
    tune_torch,
)
from level4_fraud.models.torch_models import TabularPreprocessor
from shared.tracking import MlflowTracker

pytestmark = pytest.mark.slow  # a Ray start and two searches: about a minute and a half on 2 busy cores

N_TRAIN = 600
# Sequential trials make ASHA's decisions deterministic: the first trial sets every rung's bar.
SETTINGS = TuneSettings(num_samples=4, max_concurrent_trials=1, grace_period=1, reduction_factor=2, seed=5)


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "night": rng.integers(0, 2, n).astype(float),
            "risk": rng.random(n),
            "channel": pd.Categorical(
                rng.choice(["pos", "ecom", "atm"], n), categories=["pos", "ecom", "atm"]
            ),
        }
    )
    logit = (
        1.5 * np.log(x["amount"])
        - 6
        + 3 * x["risk"]
        + 1.5 * (x["channel"] == "ecom")
        + 0.5 * rng.normal(size=n)
    )
    return x, (logit > 3.0).to_numpy(dtype=np.float32)


@pytest.fixture(scope="module")
def session() -> Iterator[RaySession]:
    with ray_session(RayConfig(num_cpus=2)) as s:
        yield s


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> MlflowTracker:
    folder = tmp_path_factory.mktemp("mlflow")
    return MlflowTracker(f"sqlite:///{folder / 'mlflow.db'}", "l4-tune-test")


@pytest.fixture(scope="module")
def lgb_outcome(session: RaySession, tracker: MlflowTracker) -> TuneOutcome:
    x, y = _frame(N_TRAIN, 1)
    xv, yv = _frame(400, 2)
    space = {
        "learning_rate": tune.loguniform(0.02, 0.3),
        "num_leaves": tune.lograndint(4, 32),
        # Up to more rows than the training set: a tree that cannot split scores every row alike.
        "min_child_samples": tune.lograndint(5, 2 * N_TRAIN),
    }
    good = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 10}
    hopeless = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 2 * N_TRAIN - 1}
    return tune_lightgbm(
        x, y, xv, yv, session, SETTINGS, LightGBMSearch(max_rounds=80, rounds_per_report=20),
        space=space, points_to_evaluate=[good, hopeless], tracker=tracker, run_name="tune-lgb",
    )  # fmt: skip


def test_lightgbm_search_returns_the_best_trial_and_its_rounds(lgb_outcome: TuneOutcome) -> None:
    res = lgb_outcome.results
    assert len(res) == SETTINGS.num_samples
    assert res["val_ap"].is_monotonic_decreasing, "best first"
    assert lgb_outcome.best_score == res["val_ap"].max()
    best = res.iloc[0]
    assert lgb_outcome.best_config["num_boost_round"] == best["best_step"]
    assert {k: lgb_outcome.best_config[k] for k in ("learning_rate", "num_leaves")} == {
        "learning_rate": best["learning_rate"],
        "num_leaves": best["num_leaves"],
    }
    # Reports every 20 rounds, so rounds are multiples of 20 up to max_rounds.
    assert set(lgb_outcome.history["step"]) <= {20, 40, 60, 80}
    assert lgb_outcome.best_score > 0.8  # prevalence about 0.1


def test_optuna_samples_new_configurations_inside_the_space(lgb_outcome: TuneOutcome) -> None:
    res = lgb_outcome.results
    sampled = res[~res["min_child_samples"].isin([10, 2 * N_TRAIN - 1])]
    assert len(sampled) == SETTINGS.num_samples - 2
    assert sampled["learning_rate"].between(0.02, 0.3).all()
    assert sampled["num_leaves"].between(4, 31).all()
    assert sampled["min_child_samples"].between(5, 2 * N_TRAIN - 1).all()


def test_asha_stops_the_hopeless_trial_at_the_first_rung(lgb_outcome: TuneOutcome) -> None:
    res = lgb_outcome.results.set_index("min_child_samples")
    hopeless, good = res.loc[2 * N_TRAIN - 1], res.loc[10]
    assert good["steps"] == 80 and not good["stopped_early"]
    assert hopeless["steps"] == 20 and hopeless["stopped_early"]
    assert hopeless["val_ap"] < good["val_ap"]


def test_every_trial_is_logged_to_mlflow_as_a_nested_run(
    lgb_outcome: TuneOutcome, tracker: MlflowTracker
) -> None:
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    exp = client.get_experiment_by_name(tracker.experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.mlflow.runName LIKE 'tune-lgb%'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.metrics["best_val_ap"] == pytest.approx(lgb_outcome.best_score)
    assert parent.data.params["best.num_boost_round"] == str(lgb_outcome.best_config["num_boost_round"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == SETTINGS.num_samples
    for child in children:
        assert set(child.data.params) == {"learning_rate", "num_leaves", "min_child_samples"}
        trial_id = child.info.run_name.removeprefix("tune-lgb-")
        steps = lgb_outcome.history[lgb_outcome.history["trial_id"] == trial_id]
        logged = client.get_metric_history(child.info.run_id, "val_ap_by_rounds")
        assert sorted(m.step for m in logged) == sorted(steps["step"].tolist())
        assert child.data.metrics["stopped_early"] == float(child.data.metrics["steps"] < 80)


def test_torch_search_uses_epochs_as_asha_time(session: RaySession) -> None:
    x, y = _frame(N_TRAIN, 3)
    xv, yv = _frame(400, 4)
    pre = TabularPreprocessor(["log_amount", "night", "risk"], ["channel"])
    x_num, x_cat = pre.fit_transform(x.assign(log_amount=np.log(x["amount"])))
    v_num, v_cat = pre.transform(xv.assign(log_amount=np.log(xv["amount"])))
    space = {
        "learning_rate": tune.loguniform(1e-7, 3e-2),
        "width": tune.choice([8, 16]),
        "depth": 1,
        "dropout": 0.0,
        "batch_size": 64,
    }
    good = {"learning_rate": 2e-2, "width": 16}
    frozen = {"learning_rate": 1e-7, "width": 16}  # cannot move from its random start
    out = tune_torch(
        [x_num, x_cat], y, [v_num, v_cat], yv, session, TabularMLPFactory(3, pre.cardinalities),
        TuneSettings(num_samples=3, max_concurrent_trials=1, seed=1), TorchSearch(max_epochs=4),
        space=space, points_to_evaluate=[good, frozen],
    )  # fmt: skip
    assert out.time_attr == "epoch" and out.model == "TabularMLPFactory"
    assert len(out.results) == 3
    res = out.results.set_index("learning_rate")
    assert res.loc[2e-2, "steps"] == 4 and not res.loc[2e-2, "stopped_early"]
    assert res.loc[1e-7, "steps"] == 1 and res.loc[1e-7, "stopped_early"]
    assert out.best_score == out.results["val_ap"].max() > 0.8
    assert 1 <= out.best_config["epochs"] <= 4
    assert {"step", "val_ap", "train_loss"} <= set(out.history.columns)


def test_rejects_validation_labels_of_one_class(session: RaySession) -> None:
    x, y = _frame(50, 1)
    with pytest.raises(ValueError, match="both classes"):
        tune_lightgbm(x, y, x, np.zeros(len(x)), session)


def test_factory_builds_hidden_layers_from_width_and_depth() -> None:
    model = TabularMLPFactory(n_numeric=3, cardinalities=[4])({"width": 32, "depth": 3, "dropout": 0.0})
    assert model.config.hidden == [32, 16, 8]
    assert model.config.n_numeric == 3 and model.config.cardinalities == [4]
