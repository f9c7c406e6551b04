"""Utilities shared by every ML Levels project.

`shared` is a library: it has no entry points and never imports a level.
Each module does one thing (config, errors, io, paths, seeding, timing,
progress, plotting, report, metrics, logging, runtime environment).
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
