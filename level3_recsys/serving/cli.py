"""Serving commands: ``python -m level3_recsys.serving serve`` (mountable in the level's CLI).

The level's main CLI can mount it with ``app.add_typer(serving_app, name="serving")`` or add
the command directly with ``app.command("serve")(serve)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import handle_user_errors, new_app
from shared.errors import ConfigError

serving_app = new_app("serving", "Level 3 serving: model service, recommendation API, shadow, metrics.")


@serving_app.callback()
def _group() -> None:
    """Level 3 serving commands."""  # keeps `serve` a sub-command even while it is the only one


@serving_app.command("serve")
@handle_user_errors
def serve(
    profile: Annotated[str, typer.Option("--profile", help="Config profile: quick (CI) or full.")] = "quick",
    config: Annotated[Path | None, typer.Option("--config", help="YAML/TOML/JSON config overrides.")] = None,
    api_port: Annotated[int, typer.Option(help="Port of the recommendation API on 127.0.0.1.")] = 8080,
    model_port: Annotated[int, typer.Option(help="Port of the champion's model service.")] = 3000,
    challenger_port: Annotated[int, typer.Option(help="Port of the challenger's model service.")] = 3001,
    engine: Annotated[str, typer.Option(help="Model service engine: bentoml or uvicorn.")] = "bentoml",
    api_key: Annotated[
        str | None, typer.Option(help="API key (default: L3_SERVING_API_KEY or a random one, printed).")
    ] = None,
    shadow: Annotated[bool, typer.Option(help="Mirror traffic to the registry's challenger.")] = True,
) -> None:
    """Start the model service(s) and the API on 127.0.0.1 (Ctrl-C stops everything)."""
    from level3_recsys.config import RecsysConfig
    from level3_recsys.serving.processes import ENGINES
    from level3_recsys.serving.serve import main
    from shared.config import load_config
    from shared.runtime import configure_environment

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    for name, port in (
        ("--api-port", api_port),
        ("--model-port", model_port),
        ("--challenger-port", challenger_port),
    ):
        if not 1024 <= port <= 65535:
            raise ConfigError(f"{name} must be between 1024 and 65535, got {port}")
    if len({api_port, model_port, challenger_port}) < 3:
        raise ConfigError("--api-port, --model-port and --challenger-port must differ")
    configure_environment()
    cfg = load_config(RecsysConfig, profile=profile, path=config)
    main(
        cfg,
        api_port=api_port,
        model_port=model_port,
        challenger_port=challenger_port,
        engine=engine,
        api_key=api_key,
        shadow=shadow,
    )


@serving_app.command("reference")
@handle_user_errors
def reference(
    profile: Annotated[str, typer.Option("--profile", help="Config profile: quick (CI) or full.")] = "quick",
    config: Annotated[Path | None, typer.Option("--config", help="YAML/TOML/JSON config overrides.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Reference JSON (default: artifacts/serving/reference.json).")
    ] = None,
    alias: Annotated[
        str, typer.Option(help="Registry alias whose model defines the reference.")
    ] = "champion",
) -> None:
    """Write the API's serving reference (popularity fallback + drift reference) from the registry."""
    from level3_recsys.config import RecsysConfig
    from level3_recsys.serving.serve import write_reference
    from shared.config import load_config
    from shared.runtime import configure_environment

    configure_environment()
    cfg = load_config(RecsysConfig, profile=profile, path=config)
    target = out or cfg.paths().artifacts / "serving" / "reference.json"
    ref = write_reference(cfg, target, alias=alias)
    typer.echo(f"reference    {target}")
    typer.echo(f"model        {ref.model_name} v{ref.model_version}")
    typer.echo(
        f"fallback     {len(ref.popular_items)} items; drift features: {', '.join(sorted(ref.features))}"
    )
    typer.echo(f"use it with  L3_SERVING_REFERENCE_PATH={target}")
