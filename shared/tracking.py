"""One MLflow tracker for every level: an explicit store, runs, finite metrics, the registry.

MLflow's fluent API is process-global. `MlflowTracker.active` points it at one store for the
length of a block and puts the previous tracking and registry URIs back afterwards, so a test or
a second level in the same process never writes into the wrong store (or into ``./mlruns``).
MLflow is imported inside the methods: only the levels that track runs install it.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConfigError
from shared.runtime import mlflow_experiment


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics MLflow can store: numbers that are finite (NaN, infinities and None dropped).

    Booleans, strings and nested values are left out too: MLflow metrics are floats.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


@dataclass
class MlflowTracker:
    """An MLflow experiment in an explicit store.

    Args:
        tracking_uri: ``sqlite:///...``, ``postgresql://...`` or ``http://...``; also the registry.
        experiment: Experiment name (created when missing).
        artifact_location: Artifact root for a new experiment (default: beside a SQLite file).
    """

    tracking_uri: str
    experiment: str
    artifact_location: str | None = None
    experiment_id: str = field(init=False, default="")

    @contextlib.contextmanager
    def active(self) -> Iterator[MlflowTracker]:
        """Point MLflow (tracking and registry) at this store for the block, then restore.

        Raises:
            ConfigError: The store cannot be opened (unreachable database, bad URL).
        """
        import mlflow

        was_set = mlflow.is_tracking_uri_set()  # type: ignore[no-untyped-call]
        previous_tracking = mlflow.get_tracking_uri() if was_set else None
        previous_registry = mlflow.get_registry_uri() if previous_tracking is not None else None
        try:
            self.experiment_id = self._experiment_id()
            mlflow.set_experiment(experiment_id=self.experiment_id)
            yield self
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            if previous_tracking is not None:
                mlflow.set_tracking_uri(previous_tracking)
                mlflow.set_registry_uri(previous_registry or previous_tracking)

    def _experiment_id(self) -> str:
        try:
            return mlflow_experiment(self.tracking_uri, self.experiment, self.artifact_location)
        except Exception as exc:  # an unreachable database or a bad URL is the user's configuration
            text = str(exc).strip()
            first = text.splitlines()[0][:200] if text else type(exc).__name__
            raise ConfigError(f"cannot use MLflow store {self.tracking_uri}: {first}") from None

    def client(self) -> Any:
        """An ``MlflowClient`` bound to this store (registry included)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def start_run(self, run_name: str, *, nested: bool = False, tags: Mapping[str, str] | None = None) -> Any:
        """Start a run in this experiment; use it as a context manager inside `active`."""
        import mlflow

        if not self.experiment_id:
            self.experiment_id = self._experiment_id()
        return mlflow.start_run(
            experiment_id=self.experiment_id, run_name=run_name, nested=nested, tags=dict(tags or {})
        )

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
        """Log the finite metrics of `metrics` to the active run and return what was logged."""
        import mlflow

        finite = finite_metrics(metrics)
        if finite:
            mlflow.log_metrics(finite, step=step)
        return finite

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters to the active run (values turned into strings by MLflow)."""
        import mlflow

        if params:
            mlflow.log_params(dict(params))

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point registry alias `alias` of model `name` at `version`."""
        self.client().set_registered_model_alias(name, alias, str(version))

    def register(self, model_uri: str, *, name: str, alias: str) -> dict[str, str]:
        """Register a logged model as a new version of `name` and point `alias` at it.

        Args:
            model_uri: A logged model (``runs:/<id>/model`` or ``models:/m-...``).
            name: Registered model name (created when missing).
            alias: Alias to move to the new version (``champion``, ``challenger``).

        Returns:
            ``{"name", "version", "alias", "uri", "run_id"}`` with ``uri`` = ``models:/<name>@<alias>``.
        """
        import mlflow

        with _quiet_registry():
            version = mlflow.register_model(model_uri, name)
        self.set_alias(name, alias, version.version)
        return {
            "name": name,
            "version": str(version.version),
            "alias": alias,
            "uri": f"models:/{name}@{alias}",
            "run_id": str(version.run_id or ""),
        }


@contextlib.contextmanager
def _quiet_registry() -> Iterator[None]:
    # register_model prints "Successfully registered ..." and "Created version ..." with
    # MLflow's eprint, which writes to whatever sys.stderr is at the time; a CLI prints its own
    # one-line summary instead. Errors still raise.
    with contextlib.redirect_stderr(io.StringIO()):
        yield
