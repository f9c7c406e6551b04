"""The serving commands: mountable as ``serve`` in the level's CLI, one-line errors, settings names."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from level3_recsys.serving.cli import _level_config, app
from level3_recsys.serving.processes import REPO_ROOT
from level3_recsys.serving.settings import ModelServiceSettings, ServingSettings
from shared.cli import new_app


def test_serving_app_mounts_as_serve_in_a_level_cli():
    level = new_app("level3_recsys", "a level CLI")

    @level.command()
    def train() -> None:
        """A stage of the level."""

    level.add_typer(app, name="serve")
    runner = CliRunner()
    help_text = runner.invoke(level, ["serve", "--help"]).output
    for command in ("all", "api", "model", "reference"):
        assert f"│ {command} " in help_text, command
    assert "│ serve " not in help_text  # the pre-mount name stays a hidden alias
    bad = runner.invoke(level, ["serve", "all", "--engine", "docker"])
    assert bad.exit_code == 2 and "--engine must be one of bentoml, uvicorn" in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["all", "--engine", "docker"], "--engine must be one of"),
        (["all", "--api-port", "3000"], "--api-port and --model-port and --challenger-port must differ"),
        (["all", "--model-port", "80"], "--model-port must be between 1024 and 65535"),
        (["serve", "--engine", "docker"], "--engine must be one of"),  # the hidden pre-mount name
        (["api", "--port", "80"], "--port must be between 1024 and 65535"),
        (["model", "--engine", "docker"], "--engine must be one of"),
        (["model", "--port", "70000"], "--port must be between 1024 and 65535"),
    ],
)
def test_serve_commands_reject_bad_options_with_one_line(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_serving_module_runs_the_same_app():
    result = subprocess.run(
        [sys.executable, "-m", "level3_recsys.serving", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "reference" in result.stdout and "model" in result.stdout


def test_settings_read_the_l3_section_field_variables(monkeypatch):
    monkeypatch.setenv("L3__SERVING__API_KEY", "from-env")
    monkeypatch.setenv("L3__SERVING__MODEL_TIMEOUT_S", "0.7")
    monkeypatch.setenv("L3__MODEL_SERVICE__MODEL_URI", "models:/reg@challenger")
    serving = ServingSettings()
    assert serving.api_key.get_secret_value() == "from-env" and serving.model_timeout_s == 0.7
    assert ModelServiceSettings().model_uri == "models:/reg@challenger"


@pytest.mark.parametrize(
    ("old", "new", "settings_cls"),
    [
        ("L3_SERVING_API_KEY", "L3__SERVING__API_KEY", ServingSettings),
        ("L3_MODEL_TRACKING_URI", "L3__MODEL_SERVICE__TRACKING_URI", ModelServiceSettings),
    ],
)
def test_old_variable_names_are_refused_with_their_new_name(monkeypatch, old, new, settings_cls):
    monkeypatch.setenv(old, "value")
    with pytest.raises(ValidationError, match=f"{old} -> {new}"):
        settings_cls()


def test_level_config_ignores_the_serving_processes_variables(monkeypatch):
    # the processes' sections share the level's L3__ prefix; the level's own variables still count
    monkeypatch.setenv("L3__SERVING__API_KEY", "secret")
    monkeypatch.setenv("L3__MODEL_SERVICE__MODEL_URI", "models:/reg@champion")
    monkeypatch.setenv("L3__LOAD__K", "5")
    monkeypatch.setenv("L3__SEED", "7")
    assert _level_config("quick", None).seed == 7
    from level3_recsys.config import RecsysConfig
    from shared.cli import load_level_config

    assert load_level_config(RecsysConfig, "quick").seed == 7  # the level CLI's own loader too
