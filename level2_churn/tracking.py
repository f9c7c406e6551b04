"""MLflow tracking and registry with an explicit store (SQLite by default, PostgreSQL by URL).

MLflow keeps the tracking URI in process-global state; `Tracker` sets it on entry and restores the
previous one on exit, so two trackers (tests, the CLI) never write into each other's store.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from shared.errors import ConfigError
from shared.runtime import mlflow_experiment

# Written into the logged model instead of letting MLflow infer requirements (which imports and
# inspects the model in a subprocess: slow, and pointless for a model loaded by this package).
PIP_REQUIREMENTS = ["lightgbm", "scikit-learn", "pandas", "numpy", "joblib"]


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: loads the joblib `ChurnModel` and returns calibrated churn probabilities."""

    def load_context(self, context: Any) -> None:
        self.model = joblib.load(context.artifacts["churn_model"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self.model.predict_proba(model_input)


@dataclass
class Tracker:
    """An MLflow experiment in an explicit store.

    Args:
        tracking_uri: ``sqlite:///...`` or ``postgresql://...``.
        experiment: Experiment name (created with `artifact_location` when missing).
        artifact_location: Artifact root for a new experiment.
    """

    tracking_uri: str
    experiment: str
    artifact_location: str | None = None
    experiment_id: str = field(init=False, default="")

    @contextlib.contextmanager
    def active(self) -> Iterator[Tracker]:
        """Point MLflow at this store for the duration of the block."""
        previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        try:
            self.experiment_id = self._experiment_id()
            yield self
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            if previous is not None:
                mlflow.set_tracking_uri(previous)

    def _experiment_id(self) -> str:
        try:
            return mlflow_experiment(self.tracking_uri, self.experiment, self.artifact_location)
        except Exception as exc:  # unreachable database, bad URL: a user's configuration mistake
            if "sqlite" in self.tracking_uri or "postgres" in self.tracking_uri or "://" in self.tracking_uri:
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"cannot use MLflow store {self.tracking_uri}: {first}") from None
            raise

    def start_run(self, run_name: str, *, nested: bool = False, tags: dict[str, str] | None = None) -> Any:
        """Start a run in this experiment (use as a context manager)."""
        return mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name, nested=nested, tags=tags)

    def log_trial(self, number: int, params: dict[str, Any], metrics: dict[str, float], state: str) -> None:
        """One nested run per Optuna trial: its parameters, per-fold metrics and final state."""
        with self.start_run(f"trial-{number:03d}", nested=True, tags={"optuna_state": state}):
            mlflow.log_params(dict(params.items()))
            finite = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
            if finite:
                mlflow.log_metrics(finite)

    def register(
        self, model_path: Path, *, name: str, alias: str, metrics: dict[str, float], params: dict[str, Any]
    ) -> dict[str, Any]:
        """Log the joblib model as an MLflow pyfunc, register a new version and point `alias` at it.

        Returns:
            ``{"name", "version", "alias", "run_id", "uri"}``.
        """
        with self.start_run("register") as run:
            mlflow.log_params(dict(params.items()))
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ChurnPyfunc(),
                artifacts={"churn_model": str(model_path)},
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
        MlflowClient(self.tracking_uri).set_registered_model_alias(name, alias, version)
        return {
            "name": name,
            "version": version,
            "alias": alias,
            "run_id": run.info.run_id,
            "uri": f"models:/{name}@{alias}",
        }


def load_registered(tracking_uri: str, name: str, alias: str) -> Any:
    """Load the model version an alias points at (as an MLflow pyfunc)."""
    with Tracker(tracking_uri, "level2-churn-load").active():
        return mlflow.pyfunc.load_model(f"models:/{name}@{alias}")


def scratch_dir() -> Path:
    """A temporary folder for files that are logged to MLflow and then not needed."""
    return Path(tempfile.mkdtemp(prefix="l2-mlflow-"))
