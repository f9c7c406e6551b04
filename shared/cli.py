"""Glue between Typer apps and `UserError`: one line on stderr, exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from shared.errors import UserError

P = ParamSpec("P")
R = TypeVar("R")


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
