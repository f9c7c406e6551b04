"""A serving workspace: trained registry, fresh batch and serving reference in one folder.

The API needs a batch store and a serving reference; the model service needs an MLflow
registry with a ``champion``. `prepare_workspace` makes all three with the level's own stages
(simulate -> split -> features -> train -> evaluate/register -> batch), without the Prefect
flow or the report, so tests, the container test and the load test can build one quickly
in a folder of their own. `open_workspace` reads one back (for instance the level's own
``artifacts`` after ``python -m level3_recsys run``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from level3_recsys.serving.settings import MODEL_ENV_PREFIX, SERVING_ENV_PREFIX
from shared.atomic import atomic_write_json
from shared.errors import InputFileError

WORKSPACE_FILE = "workspace.json"
DEFAULT_MODELS = ("popularity", "itemknn")


@dataclass(frozen=True)
class ServingWorkspace:
    """Where a served model and its companions live.

    Attributes:
        root: Workspace folder.
        tracking_uri: MLflow tracking/registry URI (SQLite file).
        artifact_location: MLflow artifact root.
        registered_model: Registered model name (``models:/<name>@champion``).
        store_url: Batch store URL (SQLite).
        reference_path: Serving reference JSON (fallback list, drift reference).
        model_version: Registry version of the champion.
        model_name: The champion's model name.
        user_ids: Users with a batch entry (the "cached" users), as text.
        n_items: Catalogue size.
    """

    root: str
    tracking_uri: str
    artifact_location: str
    registered_model: str
    store_url: str
    reference_path: str
    model_version: str
    model_name: str
    user_ids: list[str]
    n_items: int

    def model_env(self, alias: str = "champion") -> dict[str, str]:
        """``L3__MODEL_SERVICE__*`` variables that point a model service at this registry."""
        return {
            f"{MODEL_ENV_PREFIX}TRACKING_URI": self.tracking_uri,
            f"{MODEL_ENV_PREFIX}ARTIFACT_LOCATION": self.artifact_location,
            f"{MODEL_ENV_PREFIX}MODEL_URI": f"models:/{self.registered_model}@{alias}",
        }

    def api_env(self, *, api_key: str, model_url: str, with_batch: bool = True) -> dict[str, str]:
        """``L3__SERVING__*`` variables for an API serving this workspace."""
        env = {
            f"{SERVING_ENV_PREFIX}API_KEY": api_key,
            f"{SERVING_ENV_PREFIX}MODEL_SERVICE_URL": model_url,
            f"{SERVING_ENV_PREFIX}REFERENCE_PATH": self.reference_path,
        }
        if with_batch:
            env[f"{SERVING_ENV_PREFIX}STORE_URL"] = self.store_url
        return env


def workspace_config(root: Path, *, profile: str = "quick", overrides: dict[str, Any] | None = None) -> Any:
    """The level config with every data and artifact path inside `root`."""
    from level3_recsys.config import RecsysConfig
    from shared.config import load_config

    base = {"data_dir": str(root / "data"), "artifacts_dir": str(root / "artifacts"), "show_progress": False}
    return load_config(
        RecsysConfig,
        profile=profile,
        overrides={**base, **(overrides or {})},
    )


def prepare_workspace(
    root: str | Path,
    *,
    profile: str = "quick",
    models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
    overrides: dict[str, Any] | None = None,
) -> ServingWorkspace:
    """Train, register and batch-score a model into `root` and write the serving reference.

    Args:
        root: Folder of the workspace (created).
        profile: Config profile of the level (``quick`` or ``full``).
        models: Models to train; the best on the offline metric becomes ``champion``.
        overrides: Config overrides (e.g. ``{"simulator": {"n_items": 20000}}``).

    Returns:
        The workspace, also saved as ``workspace.json`` in `root`.
    """
    from level3_recsys import pipeline
    from level3_recsys.batch import run_batch
    from level3_recsys.serving.serve import write_reference

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    cfg = workspace_config(root, profile=profile, overrides={"models": list(models), **(overrides or {})})
    paths = cfg.paths()
    world = pipeline.generate(cfg)[0]
    train, test = pipeline.split(cfg, world)
    pipeline.write_dataset(train, test, paths.interim)
    pipeline.features(train, test, paths.processed)
    run_dir = paths.run_dir("serving", base=paths.artifacts / "runs")
    trained = pipeline.train_models(cfg, train, list(models), run_dir)
    table = pipeline.evaluate(cfg, trained.models, train, test, world)
    pipeline.log_evaluation(cfg, trained, table)
    tracking = cfg.tracking_settings()
    result = run_batch(
        tracking=tracking,
        store_url=cfg.store_url(),
        interactions=train.interactions,
        k=cfg.batch.k,
        active_days=None,  # every training user gets a cached list
        chunk_size=cfg.batch.chunk_size,
        show_progress=False,
    )
    reference_path = paths.artifacts / "serving" / "reference.json"
    write_reference(cfg, reference_path)
    users = sorted({str(u) for u in train.interactions["user_id"].unique().tolist()}, key=_natural)
    ws = ServingWorkspace(
        root=str(root),
        tracking_uri=tracking.tracking_uri,
        artifact_location=tracking.artifact_location,
        registered_model=tracking.registered_model,
        store_url=cfg.store_url(),
        reference_path=str(reference_path),
        model_version=str(result.batch.model_version),
        model_name=result.batch.model_name,
        user_ids=users,
        n_items=len(train.items),
    )
    atomic_write_json(root / WORKSPACE_FILE, asdict(ws))
    return ws


def open_workspace(root: str | Path) -> ServingWorkspace:
    """Read a workspace `prepare_workspace` wrote.

    Raises:
        InputFileError: `root` holds no ``workspace.json``.
    """
    path = Path(root) / WORKSPACE_FILE
    if not path.is_file():
        raise InputFileError(f"no serving workspace at {root} ({WORKSPACE_FILE} missing)")
    return ServingWorkspace(**json.loads(path.read_text(encoding="utf-8")))


def _natural(text: str) -> tuple[int, Any]:
    return (0, int(text)) if text.isdigit() else (1, text)
