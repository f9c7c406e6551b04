"""Environment defaults every run and test needs (offline, quiet, deterministic)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MPLBACKEND": "Agg",
    # Prefect's ephemeral server must start on a busy 2-core machine (its default is 20 s).
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Flow runs print their own summaries; Prefect's per-task INFO lines drown them.
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def configure_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set offline/quiet defaults without overriding what the user already set.

    Gives Prefect a private temporary home when none is set, so runs never
    touch ``~/.prefect``. Returns the variables that were set.
    """
    env = os.environ if environ is None else environ
    changed: dict[str, str] = {}
    for key, value in DEFAULTS.items():
        if key not in env:
            env[key] = value
            changed[key] = value
    if "PREFECT_HOME" not in env:
        env["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
        changed["PREFECT_HOME"] = env["PREFECT_HOME"]
    return changed


def mlflow_sqlite_uri(folder: Path) -> tuple[str, str]:
    """Tracking URI (SQLite file) and artifact root (folder) for an embedded MLflow store."""
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}", (folder / "mlartifacts").resolve().as_uri()
