from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from shared.config import LevelConfig, deep_merge, env_overrides, load_config
from shared.errors import ConfigError


class Model(BaseModel):
    n_estimators: int = 100
    lr: float = 0.1


class Cfg(LevelConfig):
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"rows": 100, "model": {"n_estimators": 10}},
        "full": {"rows": 10_000},
    }
    ENV_PREFIX: ClassVar[str] = "TCFG"
    rows: int = 1
    name: str = "x"
    model: Model = Model()


def test_defaults_then_profile():
    cfg = load_config(Cfg, environ={})
    assert cfg.profile == "quick" and cfg.rows == 100 and cfg.model.n_estimators == 10 and cfg.seed == 42
    full = load_config(Cfg, profile="full", environ={})
    assert full.rows == 10_000 and full.model.n_estimators == 100


def test_precedence_file_env_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("rows: 5\nname: from-file\nmodel:\n  lr: 0.5\n")
    env = {"TCFG__NAME": "from-env", "TCFG__MODEL__N_ESTIMATORS": "7", "OTHER": "1"}
    cfg = load_config(Cfg, path=f, environ=env, overrides={"rows": 3, "seed": None})
    assert (cfg.rows, cfg.name, cfg.model.lr, cfg.model.n_estimators, cfg.seed) == (3, "from-env", 0.5, 7, 42)


def test_toml_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('profile = "full"\nseed = 9\n')
    cfg = load_config(Cfg, path=f, environ={})
    assert cfg.profile == "full" and cfg.seed == 9 and cfg.rows == 10_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "huge"}, "unknown profile 'huge'"),
        ({"overrides": {"rows": "many"}}, "rows"),
        ({"overrides": {"typo": 1}}, "typo"),
        ({"path": "/nope/c.yaml"}, "config file not found"),
    ],
)
def test_errors_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, environ={}, **kwargs)


def test_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("rows: [1,\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(Cfg, path=f, environ={})


def test_helpers():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    assert env_overrides("P", {"P__X": "[1, 2]", "P__Y__Z": "true"}) == {"x": [1, 2], "y": {"z": True}}


def test_env_sections_elsewhere_are_left_to_their_own_settings():
    class Cfg(LevelConfig):
        ENV_PREFIX: ClassVar[str] = "LZ"
        ENV_SECTIONS_ELSEWHERE: ClassVar[tuple[str, ...]] = ("serving",)

    env = {"LZ__SERVING__API_KEY": "k", "LZ__SEED": "3"}
    assert load_config(Cfg, environ=env).seed == 3
    with pytest.raises(ConfigError, match="other"):
        load_config(Cfg, environ={**env, "LZ__OTHER__X": "1"})
