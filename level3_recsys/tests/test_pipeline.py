"""The end-to-end Prefect flow on a tiny world, and the DVC pipeline in a temporary copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from level3_recsys.config import PATHS, RecsysConfig
from level3_recsys.store import open_store
from shared.config import load_config
from shared.metrics import read_metrics

TINY = {
    "simulator": {
        "n_users": 150,
        "n_items": 120,
        "new_items_per_day": 4,
        "days": 12,
        "n_creators": 30,
    },
    "split": {"test_days": 3.0},
    "models": ["popularity", "itemknn", "als"],
    "show_progress": False,
}


def test_flow_runs_every_stage_locally(tmp_path: Path) -> None:
    from level3_recsys.pipeline import level3_flow

    cfg = load_config(
        RecsysConfig,
        profile="quick",
        overrides={
            **TINY,
            "seed": 3,
            "artifacts_dir": str(tmp_path / "art"),
            "data_dir": str(tmp_path / "data"),
        },
    )
    summary = level3_flow(cfg, out=tmp_path / "art" / "e2e")

    # every stage left its output where the config says
    for rel in (
        "raw/impressions.parquet",
        "raw/world.pkl",
        "interim/train.parquet",
        "processed/item_features.npz",
    ):
        assert (tmp_path / "data" / rel).is_file(), rel
    assert summary.run_dir == tmp_path / "art" / "e2e"
    assert set(summary.table.index) == {"popularity", "itemknn", "als"}

    metrics = read_metrics(summary.metrics)
    best = summary.table["ndcg@10"].idxmax()
    assert metrics["headline_metric"] == "ndcg@10"
    assert metrics["headline_value"] == pytest.approx(summary.table.loc[best, "ndcg@10"])
    assert metrics["best_model"] == best
    assert set(metrics["models"]) == {"popularity", "itemknn", "als"}
    html = summary.report.read_text(encoding="utf-8")
    assert "Comparison" in html and html.count("data:image/png;base64") >= 4

    # the registry's champion is the best model, and the batch used it
    client = cfg.tracking_settings().client()
    champion = client.get_model_version_by_alias(cfg.tracking.registered_model, "champion")
    assert champion.tags["model_name"] == best
    assert summary.aliases["champion"] == str(champion.version)
    run = client.get_run(champion.run_id)
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(summary.table.loc[best, "ndcg@10"])
    logged = {a.path for a in client.list_artifacts(champion.run_id, "evaluation")}
    assert {"evaluation/comparison.csv", "evaluation/report.html"} <= logged
    # the run's metrics.json is the only one under the artifacts folder (the level runner picks the newest)
    assert list((tmp_path / "art").rglob("metrics.json")) == [summary.metrics]
    store = open_store(cfg.store_url())
    live = store.current()
    assert live is not None and live.model_version == str(champion.version)
    assert live.n_users == summary.batch["n_users"] > 0
    store.close()


def test_params_yaml_is_a_valid_config_and_dvc_yaml_names_real_params() -> None:
    params_path = PATHS.root / "params.yaml"
    cfg = load_config(RecsysConfig, path=params_path)
    assert cfg.models and cfg.k == 10
    stages = yaml.safe_load((PATHS.root / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["simulate", "split", "features", "train", "evaluate"]
    params = yaml.safe_load(params_path.read_text())
    for name, stage in stages.items():
        assert stage["cmd"].startswith("python -m level3_recsys "), name
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} names param {key!r} missing from params.yaml"
                node = node[part]
    # each stage reads what the previous one wrote
    assert "data/raw" in stages["split"]["deps"]
    assert "data/interim" in stages["features"]["deps"]
    assert "data/processed" in stages["train"]["deps"]
    assert "artifacts/dvc/train" in stages["evaluate"]["deps"]


def _dvc(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    dvc = str(Path(sys.executable).parent / "dvc")
    proc = subprocess.run([dvc, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_dvc_repro_push_and_metrics_diff(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(PATHS.root / name, work / name)
    # the code deps the stages list, so DVC can hash them (the stage outputs are made by repro)
    stages = yaml.safe_load((PATHS.root / "dvc.yaml").read_text())["stages"]
    code = {d for stage in stages.values() for d in stage.get("deps", [])}
    code -= {d for d in code if d.startswith(("data/", "artifacts/"))}
    assert {"features.py", "train.py", "models"} <= code
    for rel in sorted(code):
        if (PATHS.root / rel).is_dir():
            shutil.copytree(
                PATHS.root / rel, work / rel, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
            )
        elif not (work / rel).exists():  # models/content.py arrives with models/
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PATHS.root / rel, work / rel)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params.update(json.loads(json.dumps(TINY)))
    (work / "params.yaml").write_text(yaml.safe_dump(params))

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(PATHS.root.parent)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "config", "user.email", "t@example.com"], cwd=work, check=True)
    subprocess.run(["git", "config", "user.name", "test"], cwd=work, check=True)
    _dvc(["init", "-q"], work, env)
    _dvc(["config", "core.analytics", "false"], work, env)
    remote = tmp_path / "remote"
    _dvc(["remote", "add", "-d", "local", str(remote)], work, env)

    _dvc(["repro"], work, env)
    metrics = read_metrics(work / "artifacts" / "dvc" / "eval" / "metrics.json")
    assert metrics["headline_metric"] == "ndcg@10"
    # the learned winner beats the popularity baseline by a clear margin (about 2x on this world)
    baseline = metrics["models"]["popularity"]["ndcg@10"]
    assert metrics["best_model"] != "popularity"
    assert metrics["headline_value"] >= 1.5 * baseline and metrics["headline_value"] - baseline >= 0.05
    assert (work / "dvc.lock").is_file()
    status = _dvc(["status"], work, env)
    assert "up to date" in status.stdout.lower()

    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=work, check=True)
    _dvc(["push"], work, env)
    assert any(p.is_file() for p in remote.rglob("*"))
    # what was pushed comes back into an empty cache and workspace
    train_rows = pd.read_parquet(work / "data" / "interim" / "train.parquet").shape[0]
    shutil.rmtree(work / ".dvc" / "cache")
    shutil.rmtree(work / "data")
    shutil.rmtree(work / "artifacts" / "dvc")
    _dvc(["pull"], work, env)
    assert pd.read_parquet(work / "data" / "interim" / "train.parquet").shape[0] == train_rows
    assert read_metrics(work / "artifacts" / "dvc" / "eval" / "metrics.json") == metrics
    assert "up to date" in _dvc(["status"], work, env).stdout.lower()

    # a new seed changes the data and so the metrics; only the diff against HEAD is asked for
    params["seed"] = 11
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    _dvc(["repro"], work, env)
    diff = json.loads(_dvc(["metrics", "diff", "--json"], work, env).stdout)
    changes = next(iter(diff.values()))
    assert "ndcg@10" in changes
    assert changes["ndcg@10"]["old"] != changes["ndcg@10"]["new"]
    assert changes["ndcg@10"]["new"] == pytest.approx(
        read_metrics(work / "artifacts" / "dvc" / "eval" / "metrics.json")["headline_value"]
    )
