"""User-facing error types.

A `UserError` is a mistake the user can fix (a missing file, a wrong column,
a bad option). CLIs print its message as one line on stderr and exit with
code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Base class for errors caused by user input; the message is shown as is."""

    exit_code: int = EXIT_USER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputFileError(UserError):
    """A file is missing, unreadable or in the wrong format."""


class DataError(UserError):
    """The data is readable but cannot be used as asked."""


class EmptyDataError(DataError):
    """The data has no rows (or no usable rows)."""


class SchemaError(DataError):
    """A column is missing or has the wrong type."""


class ConfigError(UserError):
    """A configuration file, profile, environment variable or option is invalid."""
