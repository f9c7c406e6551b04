"""Serving commands of level 3: ``python -m level3_recsys serve <command>``.

The level's CLI mounts this app with ``app.add_typer(serving_app, name="serve")``;
``python -m level3_recsys.serving <command>`` runs the same app on its own.

* ``serve all`` — the champion's model service, the challenger's (shadow) and the API, on
  127.0.0.1, until Ctrl-C;
* ``serve api`` — the API alone, against a model service already running;
* ``serve model`` — one model service (champion or challenger) alone;
* ``serve reference`` — write the API's serving reference (popularity fallback, drift reference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.cli import ConfigOpt, OutOpt, ProfileOpt, handle_user_errors, new_app, say
from shared.errors import ConfigError

if TYPE_CHECKING:  # the config imports the models; the CLI loads it only when a command runs
    from level3_recsys.config import RecsysConfig

app = new_app("serve", "Level 3 serving: model service, recommendation API, shadow, metrics.")
serving_app = app  # the name the level's CLI mounts it under

EngineOpt = Annotated[str, typer.Option(help="Model service engine: bentoml or uvicorn.")]


@app.callback()
def _group() -> None:
    """Level 3 serving: model service, recommendation API, shadow, metrics."""


def _level_config(profile: str, config: Any) -> RecsysConfig:
    """The level config (the serving processes' ``L3__SERVING__``-style variables are not
    sections of it: `RecsysConfig.ENV_SECTIONS_ELSEWHERE`)."""
    from level3_recsys.config import RecsysConfig
    from shared.cli import load_level_config

    return load_level_config(RecsysConfig, profile, config)


def _check_engine(engine: str) -> None:
    from level3_recsys.serving.processes import ENGINES

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def _check_ports(**ports: int) -> None:
    for name, port in ports.items():
        if not 1024 <= port <= 65535:
            raise ConfigError(f"--{name.replace('_', '-')} must be between 1024 and 65535, got {port}")
    if len(set(ports.values())) < len(ports):
        raise ConfigError(" and ".join(f"--{n.replace('_', '-')}" for n in ports) + " must differ")


@app.command("all")
@handle_user_errors
def serve_all(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    api_port: Annotated[int, typer.Option(help="Port of the recommendation API on 127.0.0.1.")] = 8080,
    model_port: Annotated[int, typer.Option(help="Port of the champion's model service.")] = 3000,
    challenger_port: Annotated[int, typer.Option(help="Port of the challenger's model service.")] = 3001,
    engine: EngineOpt = "bentoml",
    api_key: Annotated[
        str | None, typer.Option(help="API key (default: L3__SERVING__API_KEY or a random one, printed).")
    ] = None,
    shadow: Annotated[bool, typer.Option(help="Mirror traffic to the registry's challenger.")] = True,
) -> None:
    """Start the model service(s) and the API on 127.0.0.1 (Ctrl-C stops everything)."""
    from level3_recsys.serving.serve import main

    _check_engine(engine)
    _check_ports(api_port=api_port, model_port=model_port, challenger_port=challenger_port)
    main(
        _level_config(profile, config),
        api_port=api_port,
        model_port=model_port,
        challenger_port=challenger_port,
        engine=engine,
        api_key=api_key,
        shadow=shadow,
    )


# `python -m level3_recsys.serving serve` before the app was mounted as `serve`: same command
app.command("serve", hidden=True)(serve_all)


@app.command("api")
@handle_user_errors
def serve_api(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    port: Annotated[int, typer.Option(help="Port of the recommendation API on 127.0.0.1.")] = 8080,
) -> None:
    """Run the recommendation API alone, against a model service already running.

    Settings come from the L3__SERVING__* variables; the batch store and the serving reference
    default to the level's own artifacts.
    """
    from level3_recsys.serving.serve import run_api

    _check_ports(port=port)
    run_api(_level_config(profile, config), port=port)


@app.command("model")
@handle_user_errors
def serve_model(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    alias: Annotated[str, typer.Option(help="Registry alias to serve: champion or challenger.")] = "champion",
    port: Annotated[int, typer.Option(help="Port of the model service on 127.0.0.1.")] = 3000,
    engine: EngineOpt = "bentoml",
) -> None:
    """Run one model service alone: the registry's model under --alias (Ctrl-C stops it)."""
    from level3_recsys.serving.serve import run_model_service

    _check_engine(engine)
    _check_ports(port=port)
    run_model_service(_level_config(profile, config), alias=alias, port=port, engine=engine)


@app.command("reference")
@handle_user_errors
def reference(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    out: OutOpt = None,
    alias: Annotated[
        str, typer.Option(help="Registry alias whose model defines the reference.")
    ] = "champion",
) -> None:
    """Write the API's serving reference (popularity fallback + drift reference) from the registry."""
    from level3_recsys.serving.serve import write_reference
    from level3_recsys.serving.settings import SERVING_ENV_PREFIX

    cfg = _level_config(profile, config)
    target = out or cfg.paths().artifacts / "serving" / "reference.json"
    ref = write_reference(cfg, target, alias=alias)
    say("reference", target)
    say("model", f"{ref.model_name} v{ref.model_version}")
    features = ", ".join(sorted(ref.features))
    say("fallback", f"{len(ref.popular_items)} items; drift features: {features}")
    say("use it with", f"{SERVING_ENV_PREFIX}REFERENCE_PATH={target}")
