"""FraudConfig: profiles, precedence (file < env < CLI), composed module configs, lazy sections."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from level4_fraud.baselines import BASELINES
from level4_fraud.config import HANDBOOK_TEST_START, FraudConfig
from shared.config import load_config
from shared.errors import ConfigError


def test_quick_profile_is_small_with_every_scenario():
    cfg = load_config(FraudConfig, profile="quick", environ={})
    assert cfg.simulator.n_customers == 1500 and cfg.simulator.nb_days == 60
    assert not cfg.simulator.handbook and cfg.simulator.drift_active
    assert cfg.evaluation.n_folds == 2
    assert cfg.models == list(BASELINES)
    assert cfg.start_date_training is None


def test_full_profile_is_the_handbook_setup_and_protocol():
    cfg = load_config(FraudConfig, profile="full", environ={})
    sim = cfg.simulator
    assert sim.handbook and (sim.n_customers, sim.n_terminals, sim.nb_days) == (5000, 10000, 183)
    assert sim.handbook_exact  # the published dataset itself, row for row
    assert sim.start_date == date(2018, 4, 1)
    assert cfg.evaluation.n_folds == 4 and cfg.evaluation.delta_train == 7
    assert cfg.start_date_training == HANDBOOK_TEST_START
    # the oldest test fold trains from the Handbook's 2018-07-25
    oldest = HANDBOOK_TEST_START.toordinal() - (cfg.evaluation.n_folds - 1) * cfg.evaluation.delta_test
    assert date.fromordinal(oldest) == date(2018, 7, 25)


def test_env_overrides_file_and_cli_overrides_env(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("evaluation:\n  n_folds: 3\nseed: 5\n")
    environ = {"L4__EVALUATION__N_FOLDS": "4", "L4__BASELINES__RANDOM_FOREST__N_ESTIMATORS": "17"}
    cfg = load_config(FraudConfig, path=path, environ=environ, overrides={"seed": 9})
    assert cfg.evaluation.n_folds == 4
    assert cfg.baselines.random_forest.n_estimators == 17
    assert cfg.seed == 9
    assert cfg.simulator_config().seed == 9


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"models": ["random_forest", "xgboost"]}, "unknown model"),
        ({"models": ["random_forest"]}, "at least 2"),
        ({"evaluation": {"n_folds": 0}}, "n_folds"),
        ({"ensemble": {"methods": ["median"]}}, "methods"),
        ({"typo_section": 1}, "typo_section"),
    ],
)
def test_invalid_values_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        load_config(FraudConfig, overrides=values, environ={})


def test_paths_redirect_and_mlflow_default_under_artifacts(tmp_path):
    cfg = FraudConfig(artifacts_dir=str(tmp_path / "a"), data_dir=str(tmp_path / "d"))
    assert cfg.paths().artifacts == tmp_path / "a" and cfg.paths().raw == tmp_path / "d" / "raw"
    uri, root = cfg.mlflow_store()
    assert uri == f"sqlite:///{(tmp_path / 'a' / 'mlflow' / 'mlflow.db').resolve()}"
    assert root.endswith("mlflow/mlartifacts")
    default = FraudConfig()
    assert default.paths().artifacts == Path(__file__).resolve().parents[1] / "artifacts"


def test_feature_store_section_is_validated_when_used():
    cfg = FraudConfig(feature_store={"online_store": "redis"})  # accepted here, checked when used
    with pytest.raises(ConfigError, match="redis_url"):
        cfg.feature_store_config()
    assert FraudConfig().feature_store_config().online_store == "sqlite"


def test_deep_section_is_validated_by_the_deep_stage():
    import importlib.util

    if importlib.util.find_spec("level4_fraud.deep") is None:
        assert FraudConfig(deep={"x": 1}).deep_config() is None
        return
    with pytest.raises(ConfigError, match="deep"):
        FraudConfig(deep={"no_such_setting": 1}).deep_config()
    assert FraudConfig().deep_config() is not None
