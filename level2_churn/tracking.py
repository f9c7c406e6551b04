"""Level 2's part of MLflow tracking: the churn model as an MLflow pyfunc, logged and registered.

The store itself (explicit URI, restoring the previous one, finite metrics only, "register then set
the alias") is `shared.tracking.MlflowTracker`; this module only adds what is particular to the
churn model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from shared.tracking import MlflowTracker

# Written into the logged model instead of letting MLflow infer requirements (which imports and
# inspects the model in a subprocess: slow, and pointless for a model loaded by this package).
PIP_REQUIREMENTS = ["lightgbm", "scikit-learn", "pandas", "numpy", "joblib"]


# Subclassed from its own module: mypy sees `mlflow.pyfunc` as MLflow's lazy loader, not the module.
class ChurnPyfunc(PythonModel):
    """MLflow wrapper: loads the joblib `ChurnModel` and returns calibrated churn probabilities."""

    def load_context(self, context: Any) -> None:
        self.model = joblib.load(context.artifacts["churn_model"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.model.predict_proba(model_input)


def register_churn_model(
    tracker: MlflowTracker,
    model_path: Path,
    *,
    name: str,
    alias: str,
    metrics: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, str]:
    """Log a saved ``model.joblib`` as an MLflow pyfunc in a ``register`` run, register it, set `alias`.

    Call inside ``tracker.active()``.

    Args:
        tracker: The store to log and register in.
        model_path: The joblib `ChurnModel`.
        name: Registered model name.
        alias: Alias moved to the new version.
        metrics: Logged with the run (non-finite values left out).
        params: Logged with the run.

    Returns:
        ``{"name", "version", "alias", "uri", "run_id"}``.
    """
    with tracker.start_run("register"):
        tracker.log_params(params)
        tracker.log_metrics(metrics)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ChurnPyfunc(),
            artifacts={"churn_model": str(model_path)},
            pip_requirements=PIP_REQUIREMENTS,
        )
    # The new version's run_id is this "register" run's: the run that logged the model.
    return tracker.register(info.model_uri, name=name, alias=alias)


def load_registered(tracking_uri: str, name: str, alias: str) -> Any:
    """Load the model version an alias points at (as an MLflow pyfunc)."""
    with MlflowTracker(tracking_uri, "level2-churn-load").active():
        return mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
