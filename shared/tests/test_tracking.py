import math

import mlflow
import numpy as np
import pytest

from shared.errors import ConfigError
from shared.tracking import MlflowTracker, finite_metrics


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [1] * len(model_input)


def test_finite_metrics_drops_nan_inf_none_bool_and_text():
    got = finite_metrics(
        {
            "auc": np.float64(0.8),
            "nan": math.nan,
            "inf": math.inf,
            "none": None,
            "flag": True,
            "s": "x",
            "n": 3,
        }
    )
    assert got == {"auc": 0.8, "n": 3.0}


def test_active_restores_previous_tracking_uri(tmp_path):
    before = f"sqlite:///{tmp_path / 'before.db'}"
    mlflow.set_tracking_uri(before)
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'store.db'}", "exp")
    with tracker.active():
        assert mlflow.get_tracking_uri() == tracker.tracking_uri
        with tracker.start_run("r"):
            logged = tracker.log_metrics({"auc": 0.7, "bad": math.nan})
    assert logged == {"auc": 0.7}
    assert mlflow.get_tracking_uri() == before
    runs = tracker.client().search_runs([tracker.experiment_id])
    assert [r.data.metrics for r in runs] == [{"auc": 0.7}]


def test_register_creates_versions_and_moves_alias(tmp_path, capfd):
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'store.db'}", "exp")
    with tracker.active():
        uris = []
        for i in range(2):
            with tracker.start_run(f"r{i}"):
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=_Constant(), pip_requirements=["mlflow"]
                )
            uris.append(info.model_uri)
        first = tracker.register(uris[0], name="m", alias="champion")
        second = tracker.register(uris[1], name="m", alias="champion")
    assert "Created version" not in capfd.readouterr().err  # the CLI prints its own summary
    assert (first["version"], second["version"]) == ("1", "2")
    assert second["uri"] == "models:/m@champion"
    assert str(tracker.client().get_model_version_by_alias("m", "champion").version) == "2"


def test_unusable_store_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with (
        pytest.raises(ConfigError, match="cannot use MLflow store"),
        MlflowTracker(f"sqlite:///{blocker / 'sub' / 'x.db'}", "exp").active(),
    ):
        pass
