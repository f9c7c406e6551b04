"""`make serve-level3` (``python -m level3_recsys serve all``): the model service(s) and the API.

`main` needs a trained registry (``python -m level3_recsys run --profile quick`` first). It

1. loads the registry's champion once to write the serving reference (popularity fallback and
   training distributions for drift) under ``artifacts/serving/reference.json``;
2. starts the champion's model service (BentoML by default) and, when the registry has a
   ``challenger`` alias, the challenger's, each in a session of its own;
3. runs the API in this process with uvicorn until Ctrl-C, then stops the model services.

`run_api` and `run_model_service` start one of the two alone (``serve api``, ``serve model``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from level3_recsys.serving.processes import start_model_service
from level3_recsys.serving.reference import ServingReference, build_reference
from level3_recsys.serving.settings import SERVING_ENV_PREFIX, ServingSettings
from shared.errors import ConfigError, InputFileError
from shared.process import stop_process_tree, wait_http_ready

DEFAULT_API_PORT = 8080
DEFAULT_MODEL_PORT = 3000
DEFAULT_CHALLENGER_PORT = 3001


@dataclass(frozen=True)
class ServePlan:
    """Resolved locations and ports of one `serve` run."""

    tracking_uri: str
    artifact_location: str
    registered_model: str
    store_url: str | None
    reference_path: Path
    shadow_log_path: Path
    has_challenger: bool


def _read_optional(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def write_reference(cfg: Any, out: Path, *, alias: str = "champion") -> ServingReference:
    """Build and save the serving reference from the registry's model and the processed data.

    Args:
        cfg: A `RecsysConfig` (tracking location, processed data folder).
        out: Reference JSON path.
        alias: Registry alias whose model defines the reference.
    """
    from level3_recsys.tracking import load_recommender

    loaded = load_recommender(cfg.tracking_settings(), alias)
    processed = cfg.paths().processed
    reference = build_reference(
        loaded.recommender,
        model_name=f"{loaded.name}/{loaded.model_name}",
        model_version=loaded.version,
        interactions=_read_optional(processed / "train.parquet"),
        users=_read_optional(processed / "users.parquet"),
    )
    reference.save(out)
    return reference


def _has_alias(tracking: Any, alias: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        tracking.client().get_model_version_by_alias(tracking.registered_model, alias)
    except MlflowException:
        return False
    return True


def _require_alias(tracking: Any, alias: str) -> None:
    if not _has_alias(tracking, alias):
        raise InputFileError(
            f"no {alias} in the registry at {tracking.tracking_uri}; "
            "run `python -m level3_recsys run --profile quick` first"
        )


def _batch_store_url(cfg: Any) -> str | None:
    """The level's batch store, None while a SQLite store has not been written yet."""
    store_url: str = cfg.store_url()
    if store_url.startswith("sqlite:///") and not Path(store_url[len("sqlite:///") :]).is_file():
        return None  # no batch yet: the model service answers everything
    return store_url


def plan(cfg: Any) -> ServePlan:
    """Resolve what `main` will serve; writes the reference.

    Raises:
        InputFileError: No registered champion yet.
    """
    tracking = cfg.tracking_settings()
    _require_alias(tracking, "champion")
    folder = cfg.paths().artifacts / "serving"
    reference_path = folder / "reference.json"
    write_reference(cfg, reference_path)
    store_url = _batch_store_url(cfg)
    return ServePlan(
        tracking_uri=tracking.tracking_uri,
        artifact_location=tracking.artifact_location,
        registered_model=tracking.registered_model,
        store_url=store_url,
        reference_path=reference_path,
        shadow_log_path=folder / "shadow.jsonl",
        has_challenger=_has_alias(tracking, "challenger"),
    )


def main(
    cfg: Any,
    *,
    api_port: int = DEFAULT_API_PORT,
    model_port: int = DEFAULT_MODEL_PORT,
    challenger_port: int = DEFAULT_CHALLENGER_PORT,
    engine: str = "bentoml",
    api_key: str | None = None,
    shadow: bool = True,
    ready_timeout_s: float = 120.0,
) -> None:
    """Start the model service(s) and the API on 127.0.0.1 and serve until interrupted.

    Args:
        cfg: A `RecsysConfig`.
        api_port: Port of the recommendation API.
        model_port: Port of the champion's model service.
        challenger_port: Port of the challenger's model service (shadow traffic).
        engine: ``bentoml`` or ``uvicorn`` for the model services.
        api_key: API key (default: ``L3__SERVING__API_KEY`` or a random one, printed).
        shadow: Mirror traffic to the challenger when the registry has one.
        ready_timeout_s: How long to wait for each model service to come up.
    """
    import uvicorn

    from level3_recsys.serving.api import create_app

    p = plan(cfg)
    logs = p.reference_path.parent
    key = api_key or os.environ.get(f"{SERVING_ENV_PREFIX}API_KEY") or secrets.token_urlsafe(16)
    procs = []
    try:
        champion = start_model_service(
            engine,
            model_port,
            tracking_uri=p.tracking_uri,
            model_uri=f"models:/{p.registered_model}@champion",
            artifact_location=p.artifact_location,
            log_path=logs / "model_service.log",
        )
        procs.append(champion)
        wait_http_ready(f"http://127.0.0.1:{model_port}/readyz", proc=champion, timeout_s=ready_timeout_s)
        challenger_url = None
        if shadow and p.has_challenger:
            challenger = start_model_service(
                engine,
                challenger_port,
                tracking_uri=p.tracking_uri,
                model_uri=f"models:/{p.registered_model}@challenger",
                artifact_location=p.artifact_location,
                log_path=logs / "challenger_service.log",
            )
            procs.append(challenger)
            wait_http_ready(
                f"http://127.0.0.1:{challenger_port}/readyz", proc=challenger, timeout_s=ready_timeout_s
            )
            challenger_url = f"http://127.0.0.1:{challenger_port}"
        settings = ServingSettings(
            api_key=key,
            model_service_url=f"http://127.0.0.1:{model_port}",
            challenger_service_url=challenger_url,
            store_url=p.store_url,
            reference_path=str(p.reference_path),
            shadow_log_path=str(p.shadow_log_path),
        )
        base = f"http://127.0.0.1:{api_port}"
        print(f"model service: http://127.0.0.1:{model_port} ({engine}; logs in {logs})")
        if challenger_url:
            print(f"challenger (shadow): {challenger_url}")
        print(f"batch store: {p.store_url or 'none yet (run the batch to serve precomputed lists)'}")
        print(f"API: {base}  docs: {base}/docs  metrics: {base}/metrics")
        print(f"API key: {key}")
        print(f"try: curl -H 'X-API-Key: {key}' '{base}/v1/recommendations/1?k=5&device=mobile'")
        uvicorn.run(create_app(settings), host="127.0.0.1", port=api_port, log_level="warning")
    finally:
        for proc in procs:
            stop_process_tree(proc)


def run_api(cfg: Any, *, port: int = DEFAULT_API_PORT) -> None:
    """Run the recommendation API alone on 127.0.0.1 until Ctrl-C.

    Settings come from the ``L3__SERVING__*`` variables; the batch store and the serving
    reference default to the level's own (``artifacts/store``, ``artifacts/serving``) when
    those variables do not name them.

    Raises:
        ConfigError: A setting is invalid.
    """
    import uvicorn
    from pydantic import ValidationError

    from level3_recsys.serving.api import create_app

    # Field values passed as keywords: typed Any because the settings' signature also holds
    # pydantic-settings' own `_`-prefixed options, which these keys never name.
    defaults: dict[str, Any] = {
        "store_url": _batch_store_url(cfg),
        "reference_path": str(cfg.paths().artifacts / "serving" / "reference.json"),
    }
    unset = {k: v for k, v in defaults.items() if f"{SERVING_ENV_PREFIX}{k.upper()}" not in os.environ}
    try:
        settings = ServingSettings(**unset)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid {SERVING_ENV_PREFIX}* settings: {problems}") from None
    base = f"http://127.0.0.1:{port}"
    print(f"API: {base}  docs: {base}/docs  model service: {settings.model_service_url}")
    print(f"batch store: {settings.store_url or 'none'}  reference: {settings.reference_path}")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def run_model_service(
    cfg: Any,
    *,
    alias: str = "champion",
    port: int = DEFAULT_MODEL_PORT,
    engine: str = "bentoml",
    ready_timeout_s: float = 120.0,
) -> None:
    """Run the registry's model under `alias` as a model service on 127.0.0.1 until Ctrl-C.

    Raises:
        InputFileError: The registry has no model under `alias`.
    """
    tracking = cfg.tracking_settings()
    _require_alias(tracking, alias)
    log = cfg.paths().artifacts / "serving" / f"{alias}_service.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = start_model_service(
        engine,
        port,
        tracking_uri=tracking.tracking_uri,
        model_uri=f"models:/{tracking.registered_model}@{alias}",
        artifact_location=tracking.artifact_location,
        log_path=log,
    )
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", proc=proc, timeout_s=ready_timeout_s)
        print(f"model service ({alias}, {engine}): http://127.0.0.1:{port}  logs: {log}", flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_process_tree(proc)
