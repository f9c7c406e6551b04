"""Quality targets on the quick profile, run exactly as `make level2` runs it (slow: a few minutes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_metrics(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("quick")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "level2_churn",
            "run",
            "--profile",
            "quick",
            "--root",
            str(root),
            "--out",
            str(root / "artifacts" / "q"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "test PR-AUC (oracle)" in proc.stdout and "campaign profit" in proc.stdout and "report" in proc.stdout
    )
    return json.loads((root / "artifacts" / "q" / "metrics.json").read_text())


def test_lightgbm_beats_logistic_walk_forward(quick_metrics) -> None:
    cv = quick_metrics["cv"]
    assert cv["lgbm"]["pr_auc_mean"] > cv["logistic"]["pr_auc_mean"]


def test_test_pr_auc_reaches_80_percent_of_oracle(quick_metrics) -> None:
    assert quick_metrics["pr_auc"] >= 0.8 * quick_metrics["oracle_pr_auc"]


def test_campaign_beats_everybody_and_random_k(quick_metrics) -> None:
    m = quick_metrics
    assert m["campaign_profit"] > m["profit_everybody"]
    assert m["campaign_profit"] > m["profit_random_k"]
