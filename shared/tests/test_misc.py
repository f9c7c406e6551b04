import json
import logging
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.atomic import json_safe
from shared.logs import get_logger, setup_logging
from shared.metrics import read_metrics, write_metrics
from shared.paths import LevelPaths
from shared.progress import track
from shared.runtime import configure_environment, mlflow_sqlite_uri, sqlite_artifact_root
from shared.seeding import child_seeds, seed_everything
from shared.timing import Timer, peak_rss_mib


def test_level_paths_and_run_dirs(tmp_path):
    paths = LevelPaths(tmp_path)
    assert paths.raw == tmp_path / "data" / "raw" and paths.artifacts == tmp_path / "artifacts"
    first = paths.run_dir("my run/1")
    assert first.name == "my-run-1" and first.is_dir()
    (first / "x").write_text("1")
    second = paths.run_dir("my run/1")
    assert second.name == "my-run-1-2"
    assert LevelPaths.for_package(tmp_path / "pkg" / "__init__.py").root == tmp_path / "pkg"


def test_seeding_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from shared.seeding import seed_everything; "
        "seed_everything(1); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_seeding_is_reproducible():
    a = seed_everything(3).normal(size=3)
    b = seed_everything(3).normal(size=3)
    np.testing.assert_array_equal(a, b)
    assert child_seeds(1, 3) == child_seeds(1, 3) and len(set(child_seeds(1, 3))) == 3


def test_timer_and_memory():
    with Timer() as t:
        time.sleep(0.01)
    assert 0.009 < t.seconds < 1.0


def test_peak_rss_of_children_sees_a_child_that_touched_200_mib():
    before = peak_rss_mib(children=True)
    code = "import numpy as np; a = np.ones(200 * 2**20 // 8); print(a.sum())"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    after = peak_rss_mib(children=True)
    assert after >= 200 and after >= before


def test_track_yields_everything():
    assert list(track(range(5), "x", disable=True)) == [0, 1, 2, 3, 4]
    assert list(track(iter("ab"), "x", total=2, disable=True)) == ["a", "b"]


def test_metrics_roundtrip(tmp_path):
    p = write_metrics(
        tmp_path / "metrics.json",
        level=1,
        dataset="penguins",
        headline_metric="accuracy",
        headline_value=np.float64(0.97),
        test={"accuracy": 0.97, "r2": float("nan")},
    )
    data = read_metrics(p)
    assert data["headline_value"] == 0.97 and data["test"]["r2"] is None
    with pytest.raises(ValueError, match="lower-case"):
        write_metrics(tmp_path / "m.json", level=1, dataset="d", headline_metric="a", headline_value=1, ROC=1)
    (tmp_path / "bad.json").write_text(json.dumps({"level": 1}))
    with pytest.raises(ValueError, match="missing keys"):
        read_metrics(tmp_path / "bad.json")


def test_environment_defaults_do_not_override_user():
    env = {"OPENBLAS_NUM_THREADS": "4"}
    changed = configure_environment(env)
    assert env["OPENBLAS_NUM_THREADS"] == "4" and "OPENBLAS_NUM_THREADS" not in changed
    assert env["HF_HUB_OFFLINE"] == "1" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_HOME"]


def test_mlflow_uri(tmp_path):
    uri, root = mlflow_sqlite_uri(tmp_path / "ml")
    assert uri.startswith("sqlite:///") and uri.endswith("mlflow.db") and root.startswith("file://")


def test_logging_setup_is_idempotent():
    root = setup_logging("DEBUG")
    setup_logging("INFO")
    ours = [h for h in root.handlers if getattr(h, "_ml_levels", False)]
    assert len(ours) == 1 and root.level == logging.INFO
    assert get_logger("x").name == "x"


def test_mlflow_experiment_is_created_once_in_the_given_store(tmp_path):
    from shared.runtime import mlflow_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id = mlflow_experiment(uri, "exp", str(tmp_path / "arts"))
    assert mlflow_experiment(uri, "exp", str(tmp_path / "other")) == exp_id
    from mlflow import MlflowClient

    exp = MlflowClient(uri).get_experiment(exp_id)
    assert exp.artifact_location == (tmp_path / "arts").resolve().as_uri()
    assert (tmp_path / "arts").is_dir() and not (tmp_path / "other").exists()
    # no artifact root given: beside the SQLite file, never ./mlruns in the working directory
    bare = MlflowClient(uri).get_experiment(mlflow_experiment(uri, "bare"))
    assert bare.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()
    assert sqlite_artifact_root(uri) == tmp_path / "mlartifacts"
    assert sqlite_artifact_root("postgresql://127.0.0.1/test") is None


def test_json_safe_writes_unmeasured_figures_as_null():
    # results.json of the level 3 load test and metrics.json: strict JSON has no NaN
    assert json_safe({"a": [float("nan"), 1.0], "b": (2, {"c": float("nan")})}) == {
        "a": [None, 1.0],
        "b": [2, {"c": None}],
    }
    assert json_safe({1: np.float64(float("inf")), "n": np.int64(3)}) == {"1": None, "n": 3}
