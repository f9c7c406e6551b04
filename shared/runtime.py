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
    # MLflow resets its logger's level when imported; this is the setting it reads.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
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


def sqlite_artifact_root(tracking_uri: str) -> Path | None:
    """``mlartifacts`` beside a SQLite store's file (None for any other store).

    Where an experiment of that store keeps its artifacts when no root is given: MLflow's own
    default is ``./mlruns`` in whatever the working directory is.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts"


def mlflow_experiment(tracking_uri: str, name: str, artifact_location: str | None = None) -> str:
    """Point MLflow (tracking and registry) at `tracking_uri` and return the id of experiment `name`.

    The experiment is created when missing, with `artifact_location` as its artifact root
    (a plain path is created and turned into a ``file://`` URI), so no run lands in ``./mlruns``.
    Without one, a SQLite store's experiment keeps its artifacts beside the database file
    (`sqlite_artifact_root`).
    MLflow is imported here, not at module level: only the levels that track runs install it.
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = artifact_location
    if location is None and (root := sqlite_artifact_root(tracking_uri)) is not None:
        location = str(root)
    if location is not None and "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))
