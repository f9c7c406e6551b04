"""Logging with rich formatting on stderr, configured once by each CLI."""

from __future__ import annotations

import logging as _logging

from rich.console import Console
from rich.logging import RichHandler

_NOISY = ("matplotlib", "PIL", "urllib3", "httpx", "asyncio", "numexpr", "fontTools")


def setup_logging(level: str | int = "INFO") -> _logging.Logger:
    """Route the root logger through a `RichHandler` on stderr and quiet chatty libraries.

    Calling it twice replaces the handler instead of adding a second one.
    """
    root = _logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ml_levels", False):
            root.removeHandler(handler)
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    handler._ml_levels = True  # type: ignore[attr-defined]
    handler.setFormatter(_logging.Formatter("%(message)s", datefmt="[%X]"))
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in _NOISY:
        _logging.getLogger(name).setLevel(_logging.WARNING)
    return root


def get_logger(name: str) -> _logging.Logger:
    """A module logger; use ``get_logger(__name__)``."""
    return _logging.getLogger(name)
