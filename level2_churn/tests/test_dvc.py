"""The DVC pipeline: stages match the CLI and config; `dvc repro` on a tiny business (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert list(stages) == ["generate", "ingest", "features", "train", "evaluate", "score"]
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    cfg = load_config(ChurnConfig, path=LEVEL / "params.yaml", environ={})  # params.yaml is a valid config
    for name, stage in stages.items():
        words = stage["cmd"].split()
        assert words[:3] == ["python", "-m", "level2_churn"] and words[3] in commands, name
        assert "--config" in words and "params.yaml" in words
        for param in stage.get("params", []):
            assert param in ChurnConfig.model_fields, (name, param)
    assert cfg.search.n_trials >= 1
    assert "artifacts/dvc/metrics.json" in json.dumps(stages["evaluate"]["metrics"])


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
    assert values["level"] == 2 and 0 < values["pr_auc"] <= 1
    assert (work / "artifacts" / "dvc" / "retention_list.csv").is_file()
    assert "up to date" in dvc("repro").lower() or "didn't change" in dvc("status").lower()
