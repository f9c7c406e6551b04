"""Repository-wide pytest setup: offline, quiet, isolated runtime for every test.

Set before any test module imports prefect, mlflow or transformers, so no
test touches ~/.prefect, ./mlruns or the network.
"""

from __future__ import annotations

import pytest

from shared.process import free_port as _free_port
from shared.runtime import configure_environment

configure_environment()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()
