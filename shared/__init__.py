"""Utilities shared by every ML Levels project.

`shared` is a library: it has no entry points and never imports a level.
Each module does one thing: ``atomic`` (atomic files and folders), ``cli`` (the Typer toolkit),
``config`` (typed configs with profiles), ``errors`` (user errors), ``logs``, ``metrics``,
``paths``, ``plotting``, ``process`` (starting and stopping servers), ``progress``, ``report``
(HTML reports), ``runtime`` (environment defaults), ``seeding``, ``timing`` and ``tracking``
(MLflow).
"""

from shared.errors import (
    ConfigError,
    DataError,
    EmptyDataError,
    InputFileError,
    SchemaError,
    UserError,
)

__all__ = [
    "ConfigError",
    "DataError",
    "EmptyDataError",
    "InputFileError",
    "SchemaError",
    "UserError",
]
