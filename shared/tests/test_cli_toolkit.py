from pathlib import Path
from typing import ClassVar

from typer.testing import CliRunner

from shared.cli import (
    ConfigOpt,
    OutOpt,
    ProfileOpt,
    RunOpt,
    SeedOpt,
    drop_unset,
    load_level_config,
    new_app,
    say,
)
from shared.config import LevelConfig


class _Search(LevelConfig):
    n_trials: int = 10


class _Cfg(LevelConfig):
    ENV_PREFIX: ClassVar[str] = "LX"
    PROFILES: ClassVar[dict] = {"quick": {"seed": 1}, "full": {"seed": 2}}
    profile: str = "quick"
    seed: int = 0
    search: _Search = _Search()


def test_say_aligns_labels_and_rounds_floats(capsys):
    say("roc_auc", 0.876543)
    say("rows", 12)
    say("profit", 12345.678)
    assert capsys.readouterr().out.splitlines() == [
        f"{'roc_auc':<24} 0.8765",
        f"{'rows':<24} 12",
        f"{'profit':<24} 12,346",
    ]


def test_drop_unset_removes_none_and_empty_sections():
    assert drop_unset({"seed": None, "search": {"n_trials": None}, "profile": "full", "a": {"b": 3}}) == {
        "profile": "full",
        "a": {"b": 3},
    }


def test_load_level_config_is_typed_and_cli_beats_env(monkeypatch):
    monkeypatch.setenv("LX__SEARCH__N_TRIALS", "7")
    monkeypatch.setenv("LX__SEED", "5")
    cfg = load_level_config(_Cfg, "full", None, {"seed": 9, "search": {"n_trials": None}})
    assert isinstance(cfg, _Cfg)
    assert (cfg.profile, cfg.seed, cfg.search.n_trials) == ("full", 9, 7)


def test_shared_options_give_every_level_the_same_flags(tmp_path):
    app = new_app("t", "t")
    seen: dict = {}

    @app.command()
    def train(
        profile: ProfileOpt = "quick", seed: SeedOpt = None, config: ConfigOpt = None, out: OutOpt = None
    ):
        seen.update(profile=profile, seed=seed, config=config, out=out)

    @app.command()
    def predict(run: RunOpt = None) -> None:
        seen.update(run=run)

    runner = CliRunner()
    args = ["train", "--profile", "full", "--seed", "3", "--config", "c.yaml", "--out", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, ["predict", "--run", "runs/a"]).exit_code == 0
    assert seen == {
        "profile": "full",
        "seed": 3,
        "config": Path("c.yaml"),
        "out": tmp_path,
        "run": Path("runs/a"),
    }
    bad = runner.invoke(app, ["train", "--seed", "x"])
    assert bad.exit_code == 2
