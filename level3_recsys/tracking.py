"""MLflow tracking and registry: every training run logged, the winner registered with aliases.

A trained `Recommender` is logged as an MLflow *pyfunc* model: its own
``save(dir)`` output travels as an artefact and `RecommenderModel` (a
``mlflow.pyfunc.PythonModel``) loads it back with the class's ``load(dir)``.
Anyone can then score with ``mlflow.pyfunc.load_model("models:/<name>@champion")``
and a DataFrame of ``user_id``; Python code that wants the recommender itself
calls `load_recommender` (the nightly batch and the level-3b services do).

Aliases: after a training round, the best run by the selection metric becomes
``champion`` and the runner-up ``challenger`` (the model that the level-3b
shadow deployment compares against the champion).

The store itself is handled by `shared.tracking.MlflowTracker` (the one tracker of every
level): it points MLflow at the store only for the length of a block and restores the
previous tracking URI, logs only finite metrics, and registers a version then moves its
alias. This module adds what is level 3's own: the pyfunc wrapper, MLflow's spelling of
metric names, the champion/challenger rule and loading a recommender back.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from shared.errors import ConfigError, InputFileError
from shared.tracking import MlflowTracker, finite_metrics

RECOMMENDER_ARTIFACT = "recommender"
CLASS_FILE = "recommender_class.json"
CHAMPION = "champion"
CHALLENGER = "challenger"
# The pyfunc wrapper needs only these at load time; listing them skips MLflow's slow requirement inference.
PIP_REQUIREMENTS = ["mlflow", "pandas", "numpy", "scipy", "torch", "implicit", "lightgbm"]


@dataclass(frozen=True)
class Tracking:
    """Where level 3's runs and models go.

    Attributes:
        tracking_uri: MLflow tracking URI, also the registry (``sqlite:///...`` by default).
        artifact_location: Artifact root of a new experiment (a ``file://`` URI or a path;
            None: beside a SQLite store's file).
        experiment: Experiment name.
        registered_model: Registry name for the level's models.
    """

    tracking_uri: str
    artifact_location: str | None = None
    experiment: str = "level3_recsys"
    registered_model: str = "level3_recsys"

    def tracker(self) -> MlflowTracker:
        """The shared tracker of this store and experiment."""
        return MlflowTracker(self.tracking_uri, self.experiment, self.artifact_location)

    def client(self) -> Any:
        """An `MlflowClient` bound to this tracking URI (registry included)."""
        return self.tracker().client()

    @contextlib.contextmanager
    def active(self) -> Iterator[MlflowTracker]:
        """MLflow's fluent API pointed at this store for the block; the previous URI restored after.

        Raises:
            ConfigError: The store cannot be opened.
        """
        with self.tracker().active() as tracker:
            yield tracker


@dataclass(frozen=True)
class LoggedRun:
    """A finished, logged training run."""

    run_id: str
    model_uri: str
    model_name: str
    metrics: dict[str, float]


def save_recommender(model: Any, folder: Path) -> Path:
    """Save a recommender with its class path, so `load_saved_recommender` can rebuild any model type."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder)
    cls = type(model)
    (folder / CLASS_FILE).write_text(
        json.dumps(
            {"module": cls.__module__, "qualname": cls.__qualname__, "name": getattr(model, "name", "")}
        ),
        encoding="utf-8",
    )
    return folder


def load_saved_recommender(folder: str | Path) -> Any:
    """Load a recommender saved by `save_recommender`.

    Raises:
        InputFileError: The folder is not a saved recommender.
    """
    folder = Path(folder)
    meta_path = folder / CLASS_FILE
    if not meta_path.is_file():
        raise InputFileError(f"{folder} holds no saved model ({CLASS_FILE} missing)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    obj: Any = importlib.import_module(meta["module"])
    for part in meta["qualname"].split("."):
        obj = getattr(obj, part)
    return obj.load(folder)


try:
    from mlflow.pyfunc.model import PythonModel

    _PythonModel: Any = PythonModel
except ImportError:  # pragma: no cover - mlflow is a level-3 dependency
    _PythonModel = object


class RecommenderModel(_PythonModel):  # type: ignore[misc, valid-type]
    """MLflow pyfunc wrapper around a saved `Recommender`.

    Input: a DataFrame with a ``user_id`` column. Params: ``k`` (default 10) and
    ``exclude_seen`` (default True). Output: ``user_id, item_id, rank, score``.
    """

    def load_context(self, context: Any) -> None:
        self.recommender = load_saved_recommender(context.artifacts[RECOMMENDER_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = params or {}
        users = pd.DataFrame(model_input)["user_id"].tolist()
        k = int(params.get("k", 10))
        exclude_seen = bool(params.get("exclude_seen", True))
        return self.recommender.recommend(users, k=k, exclude_seen=exclude_seen)


def mlflow_key(name: str) -> str:
    """MLflow's spelling of a metric name: it allows no ``@``, so ``ndcg@10`` becomes ``ndcg_at_10``."""
    return name.replace("@", "_at_")


def log_metrics_to_run(tracking: Tracking, run_id: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Add metrics to a finished run (NaN, None and non-numbers left out), spelled for MLflow.

    Returns:
        The metrics logged, under their original names.
    """
    from mlflow.entities import Metric

    finite = finite_metrics(metrics)
    if finite:
        now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        tracking.client().log_batch(
            run_id, metrics=[Metric(mlflow_key(key), value, now, 0) for key, value in finite.items()]
        )
    return finite


def log_training_run(
    model: Any,
    *,
    tracking: Tracking,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    sample_users: Sequence[Any],
    k: int = 10,
    artifacts: Mapping[str, Path] | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> LoggedRun:
    """Log one trained model: params, metrics, extra artefacts and the pyfunc model with its signature.

    Args:
        model: A fitted recommender (``save``, ``recommend``, ``name``).
        tracking: Where to log.
        params: Hyper-parameters and data settings (flattened by the caller).
        metrics: Offline metrics (``ndcg@10``...); non-numbers are skipped.
        sample_users: A few known user ids for the input example and signature.
        k: List length used for the signature's example output.
        artifacts: Extra files to attach (report, comparison table...).
        run_name: MLflow run name (defaults to the model's name).
        tags: Extra run tags.

    Returns:
        The run id, the logged model's URI and the logged metrics.
    """
    import mlflow
    from mlflow.models import infer_signature

    name = getattr(model, "name", type(model).__name__)
    example = pd.DataFrame({"user_id": list(sample_users)[:5]})
    output = model.recommend(example["user_id"].tolist(), k=k, exclude_seen=True)
    with warnings.catch_warnings():
        # ids are integers that are never missing; MLflow's hint about NaN in int columns does not apply
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, output, params={"k": k, "exclude_seen": True})
    clean_metrics = finite_metrics(metrics)
    run_tags = {"model_name": name, "level": "3", **(tags or {})}
    with tempfile.TemporaryDirectory(prefix="l3-model-") as tmp, tracking.active() as tracker:
        saved = save_recommender(model, Path(tmp) / "recommender")
        with tracker.start_run(run_name or name, tags=run_tags) as run:
            # MLflow caps a parameter value at 500 characters (6,000 on some stores).
            tracker.log_params({key: str(value)[:500] for key, value in params.items()})
            tracker.log_metrics({mlflow_key(key): value for key, value in clean_metrics.items()})
            for label, path in (artifacts or {}).items():
                if Path(path).exists():
                    mlflow.log_artifact(str(path), artifact_path=label)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={RECOMMENDER_ARTIFACT: str(saved)},
                signature=signature,
                input_example=example,
                pip_requirements=PIP_REQUIREMENTS,
            )
    return LoggedRun(run.info.run_id, info.model_uri, name, clean_metrics)


def register_winner(
    runs: Sequence[LoggedRun],
    *,
    tracking: Tracking,
    metric: str = "ndcg@10",
) -> dict[str, str]:
    """Register the best run as ``champion`` and the runner-up as ``challenger``.

    Args:
        runs: Runs of one training round (at least one).
        tracking: Registry location and model name.
        metric: Higher-is-better selection metric present in every run.

    Returns:
        ``{"champion": version, "challenger": version}`` (challenger absent with one run).

    Raises:
        ConfigError: No runs, or the metric is missing from a run.
    """
    if not runs:
        raise ConfigError("no training runs to register")
    missing = [r.model_name for r in runs if metric not in r.metrics]
    if missing:
        raise ConfigError(f"selection metric {metric!r} missing for {missing}")
    ranked = sorted(runs, key=lambda r: r.metrics[metric], reverse=True)
    aliases: dict[str, str] = {}
    with tracking.active() as tracker:
        client = tracker.client()
        for alias, run in zip((CHAMPION, CHALLENGER), ranked, strict=False):
            version = tracker.register(run.model_uri, name=tracking.registered_model, alias=alias)["version"]
            client.set_model_version_tag(tracking.registered_model, version, "model_name", run.model_name)
            client.set_model_version_tag(
                tracking.registered_model, version, mlflow_key(metric), f"{run.metrics[metric]:.6f}"
            )
            aliases[alias] = version
    return aliases


@dataclass(frozen=True)
class LoadedModel:
    """A recommender fetched from the registry with its provenance."""

    recommender: Any
    name: str
    version: str
    alias: str
    model_name: str
    uri: str


def alias_version(tracking: Tracking, alias: str = CHAMPION) -> Any:
    """The registry's model version behind an alias.

    Raises:
        InputFileError: No such registered model or alias (train and register first).
    """
    from mlflow.exceptions import MlflowException

    missing_db = (
        tracking.tracking_uri.startswith("sqlite:///")
        and not Path(tracking.tracking_uri[len("sqlite:///") :]).is_file()
    )
    try:
        if missing_db:  # checking must not create an empty tracking database as a side effect
            raise MlflowException("no tracking database")
        return tracking.client().get_model_version_by_alias(tracking.registered_model, alias)
    except MlflowException:
        raise InputFileError(
            f"no model {tracking.registered_model!r} with alias {alias!r} at {tracking.tracking_uri}; "
            "train and register one first (python -m level3_recsys run)"
        ) from None


def load_recommender(tracking: Tracking, alias: str = CHAMPION) -> LoadedModel:
    """Load the recommender behind ``models:/<registered_model>@<alias>``.

    Raises:
        InputFileError: No such registered model or alias (train and register first).
    """
    import mlflow

    version = alias_version(tracking, alias)
    uri = f"models:/{tracking.registered_model}@{alias}"
    with tracking.active():  # a models:/ URI resolves through the fluent API's registry URI
        pyfunc_model = mlflow.pyfunc.load_model(uri)
    recommender = pyfunc_model.unwrap_python_model().recommender
    model_name = (version.tags or {}).get("model_name", getattr(recommender, "name", ""))
    return LoadedModel(recommender, tracking.registered_model, str(version.version), alias, model_name, uri)
