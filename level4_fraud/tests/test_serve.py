"""``python -m level4_fraud serve``: which run it serves (the registered champion's), and its
user errors (exit 2, one line)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from level4_fraud.cli import app
from level4_fraud.tests.integration_helpers import small_config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "gunicorn"], "--engine must be one of"),
        (["--run", "/no/such/run"], "not a level-4 run folder"),
    ],
)
def test_serve_user_errors_exit_2_with_one_line(args, message):
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_no_champion_without_an_mlflow_store(tmp_path):
    from level4_fraud.serve import champion

    cfg = small_config(artifacts_dir=str(tmp_path / "artifacts"), tracking={"enabled": True})
    assert champion(cfg) is None
    assert not (tmp_path / "artifacts" / "mlflow" / "mlflow.db").exists()  # looking created nothing


@pytest.mark.slow
def test_serve_resolves_the_registered_champions_run_folder(tmp_path):
    import pandas as pd

    from level4_fraud.pipeline import log_and_register
    from level4_fraud.serve import champion, resolve_run
    from level4_fraud.tests.serving_helpers import serving_run

    cfg = small_config(artifacts_dir=str(tmp_path / "artifacts"), tracking={"enabled": True})
    first = serving_run().copy(tmp_path / "artifacts" / "run-a")
    second = serving_run().copy(tmp_path / "artifacts" / "run-b")
    table = pd.read_csv(first / "comparison.csv", index_col=0)
    log_and_register(cfg, first, table)
    assert champion(cfg) == (first, "level4_fraud/v1 (run-a)")
    log_and_register(cfg, second, table)  # the newer version takes the alias
    run_dir, version = resolve_run(cfg, None)
    assert run_dir == second and version == "level4_fraud/v2 (run-b)"
    assert resolve_run(cfg, first) == (first, None)  # --run wins
