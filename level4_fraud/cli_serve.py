"""The ``serve`` command: ``python -m level4_fraud serve [--run RUN] [--port P] [--api-key KEY]
[--engine uvicorn|ray] [--workers N]`` (see `level4_fraud.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import ConfigOpt, ProfileOpt, handle_user_errors, load_level_config

ServeRunOpt = Annotated[
    Path | None,
    typer.Option("--run", help="Run folder to serve (default: the registered champion's run folder)."),
]
PortOpt = Annotated[int | None, typer.Option("--port", help="TCP port (default: serving.port, 8400).")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="Key clients send in X-API-Key (default: serving.api_key, else a new one)."
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="uvicorn worker processes (default: serving.workers, 1); more than one needs "
        "serving.ledger_url, the card state in Redis.",
    ),
]
EngineOpt = Annotated[str, typer.Option("--engine", help="uvicorn (latency path) or ray (Ray Serve).")]


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the level's CLI."""

    @app.command("serve")
    @handle_user_errors
    def serve_command(
        run: ServeRunOpt = None,
        port: PortOpt = None,
        api_key: ApiKeyOpt = None,
        engine: EngineOpt = "uvicorn",
        workers: WorkersOpt = None,
        profile: ProfileOpt = "quick",
        config: ConfigOpt = None,
    ) -> None:
        """Serve real-time fraud decisions on 127.0.0.1 (trains the quick profile first when no
        champion is registered); prints the URL and the API key."""
        from level4_fraud.config import FraudConfig
        from level4_fraud.serve import serve

        cfg = load_level_config(FraudConfig, profile, config, log_level="WARNING")
        serve(cfg, run=run, port=port, api_key=api_key, engine=engine, workers=workers)
