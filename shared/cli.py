"""The CLI toolkit every level uses: option names, one printer, typed config, error handling.

Every level's Typer app speaks the same words: verbs ``generate``, ``train``, ``evaluate``,
``report``, ``predict``, ``register``, ``serve``, ``run``, and the options below: ``--out`` for
where a command writes (a run folder or a file), ``--run`` for the run folder it reads a model
from, ``--profile``, ``--seed`` and ``--config``. A `UserError` becomes one line on stderr and
exit code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from shared.config import LevelConfig, load_config
from shared.errors import UserError
from shared.logs import setup_logging
from shared.runtime import configure_environment

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=LevelConfig)

ProfileOpt = Annotated[str, typer.Option("--profile", help="Config profile: quick (CI, make all) or full.")]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Seed for every generator and model (overrides config).")
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML/TOML file overriding config values (params.yaml is one)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Where the command writes: a run folder or a file (default: a new one)."),
]
RunOpt = Annotated[
    Path | None, typer.Option("--run", help="Run folder to read the model from (default: the newest run).")
]


def format_value(value: object) -> str:
    """A result value as the CLIs print it: floats to 4 decimals (large ones with separators)."""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def say(label: str, value: object, *, width: int = 24) -> None:
    """Print one ``label  value`` result line on stdout: the one printer of every level's CLI.

    Args:
        label: What the value is (``run``, ``report``, ``roc_auc``).
        value: The value; floats are rounded by `format_value`.
        width: Column the values line up at.
    """
    typer.echo(f"{label:<{width}} {format_value(value)}")


def load_level_config(
    cls: type[C],
    profile: str | None,
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    log_level: str = "WARNING",
) -> C:
    """Set up a CLI command's runtime and return the level's typed config.

    Sets the offline/quiet environment defaults (`shared.runtime.configure_environment`, the one
    place they are set) and logging, then loads ``cls`` with the profile, the config file, the
    ``L<N>__SECTION__FIELD`` environment variables and the CLI `overrides` (``None`` values skipped).

    Args:
        cls: The level's config class.
        profile: ``quick`` or ``full``.
        path: Optional config file.
        overrides: Values from CLI options, nested like the config (``{"search": {"n_trials": 5}}``).
        log_level: Root logging level.

    Raises:
        ConfigError: Unknown profile, unreadable file or invalid values.
    """
    configure_environment()
    setup_logging(log_level)
    return load_config(cls, profile=profile, path=path, overrides=drop_unset(overrides or {}))


def drop_unset(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` without the options the user left out: ``None`` values and empty sections."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            value = drop_unset(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def print_user_error(exc: UserError) -> None:
    """Print a user error the same way in every level."""
    typer.echo(f"error: {exc.message}", err=True)


def handle_user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a Typer command: a `UserError` becomes one line on stderr and exit code 2.

    Other exceptions are bugs and propagate with their traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            print_user_error(exc)
            raise typer.Exit(code=exc.exit_code) from None

    return wrapper


def new_app(name: str, help_text: str) -> typer.Typer:
    """A Typer app with the settings every level uses (no locals in tracebacks)."""
    return typer.Typer(
        name=name,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
        rich_markup_mode="rich",
    )


def run(app: typer.Typer) -> None:
    """Entry point for ``__main__``: run the app, mapping stray `UserError`s to exit 2."""
    try:
        app()
    except UserError as exc:  # raised outside a decorated command (e.g. in a callback)
        print_user_error(exc)
        sys.exit(exc.exit_code)
