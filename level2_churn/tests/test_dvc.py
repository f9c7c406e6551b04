"""The DVC pipeline: stages match the CLI and config; `dvc repro` on a tiny business (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
import yaml

from level2_churn.cli import app
from level2_churn.config import ChurnConfig
from shared.config import load_config

LEVEL = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).parent / "dvc"


def _stages() -> dict:
    return yaml.safe_load((LEVEL / "dvc.yaml").read_text())["stages"]


def test_stages_call_real_commands_with_real_params() -> None:
    stages = _stages()
    assert list(stages) == ["generate", "ingest", "features", "train", "evaluate", "report", "predict"]
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if not c.hidden}
    for name, stage in stages.items():
        words = stage["cmd"].split()
        assert words[:3] == ["python", "-m", "level2_churn"] and words[3] == name in commands, name
        assert "--config" in words and "params.yaml" in words
        for param in stage.get("params", []):
            assert param in ChurnConfig.model_fields, (name, param)
    assert "artifacts/dvc/metrics.json" in json.dumps(stages["evaluate"]["metrics"])


def _leaves(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    out: dict[tuple[str, ...], object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _leaves(value, (*prefix, key))
        else:
            out[(*prefix, key)] = value
    return out


def test_every_value_in_params_yaml_reaches_the_config() -> None:
    """Loaded over the full profile, each value of params.yaml wins (none is misspelt or ignored)."""
    params = yaml.safe_load((LEVEL / "params.yaml").read_text())
    full = load_config(ChurnConfig, profile="full", environ={}).model_dump(mode="json")
    cfg = load_config(ChurnConfig, profile="full", path=LEVEL / "params.yaml", environ={}).model_dump(
        mode="json"
    )
    changed = 0
    for path, value in _leaves(params).items():
        got, profile_value = cfg, full
        for key in path:
            got, profile_value = got[key], profile_value[key]
        assert got == value, (path, got, value)
        changed += got != profile_value
    # The file really overrides the profile (8,000 customers, not the full profile's 50,000; ...).
    assert changed >= 5


@pytest.mark.skipif(not DVC.exists(), reason="dvc not installed in the venv")
def test_dvc_sees_the_pipeline() -> None:
    out = subprocess.run([str(DVC), "stage", "list"], cwd=LEVEL, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(stage in out.stdout for stage in _stages())


@pytest.mark.slow
def test_dvc_repro_and_metrics_show(tmp_path: Path) -> None:
    work = tmp_path / "level2"
    work.mkdir()
    shutil.copy(LEVEL / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((LEVEL / "params.yaml").read_text())
    params["simulator"] = {"customers": 1500, "months": 13}
    params["splits"]["test_periods"] = 1
    params["search"] = {"n_trials": 3, "n_startup_trials": 2, "n_estimators_max": 100}
    params["selection"]["n_repeats"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "L2__MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }

    def dvc(*args: str) -> str:
        proc = subprocess.run(
            [str(DVC), *args], cwd=work, env=env, capture_output=True, text=True, timeout=1500
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    dvc("init", "--no-scm", "-q")
    dvc("repro")
    metrics = json.loads(dvc("metrics", "show", "--json"))
    values = next(iter(metrics.values()))["data"]["artifacts/dvc/metrics.json"]["data"]
    assert values["level"] == 2
    # A real model, not a coin: well above the no-skill PR-AUC (the churn rate) on the test window.
    assert values["pr_auc"] > 2 * values["test"]["base_rate"]
    # params.yaml reached the run: the edited business size, search budget and test window.
    summary = json.loads((work / "data" / "raw" / "_truth" / "summary.json").read_text())
    assert (summary["customers"], summary["months"]) == (1500, 13)
    result = joblib.load(work / "artifacts" / "dvc" / "modelling.joblib")
    assert len(result.trials) == 3 and len(result.plan.test.valid_periods) == 1
    assert (work / "artifacts" / "dvc" / "retention_list.csv").is_file()
    assert "up to date" in dvc("repro").lower() or "didn't change" in dvc("status").lower()
