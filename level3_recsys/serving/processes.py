"""The level's server command lines and starters, on top of `shared.process`.

`shared.process` does the generic work (a session of its own, readiness, stopping a whole tree);
this module knows only what level 3 starts: the model service (BentoML or its uvicorn twin)
and the recommendation API, each configured through its ``L3__...`` environment variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from level3_recsys.serving.settings import MODEL_ENV_PREFIX
from shared.errors import ConfigError
from shared.process import start_process

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("bentoml", "uvicorn")
API_FACTORY = "level3_recsys.serving.api:create_app"
MODEL_APP_FACTORY = "level3_recsys.serving.model_app:create_model_app"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, the repository on ``PYTHONPATH`` and `extra` on top."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def uvicorn_command(factory: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """``uvicorn --factory`` serving `factory` (``module:function``) with one quiet worker."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--host", host, "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


def model_service_command(engine: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the model on `host:port` with the given engine.

    Args:
        engine: ``bentoml`` (the BentoML service) or ``uvicorn`` (the FastAPI twin, one process).
        port: TCP port.
        host: Interface (loopback by default).

    Raises:
        ConfigError: An unknown engine.
    """
    if engine == "bentoml":
        target = "level3_recsys.serving.model_service:RecommenderService"
        return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]
    if engine == "uvicorn":
        return uvicorn_command(MODEL_APP_FACTORY, port, host)
    raise ConfigError(f"unknown model-service engine {engine!r}; choose one of {', '.join(ENGINES)}")


def start_model_service(
    engine: str,
    port: int,
    *,
    tracking_uri: str,
    model_uri: str,
    artifact_location: str = "",
    log_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a model service on 127.0.0.1 in a session of its own (stop it with
    `shared.process.stop_process_tree`, which also stops BentoML's workers).

    Args:
        engine: ``bentoml`` or ``uvicorn``.
        port: Port on 127.0.0.1.
        tracking_uri: MLflow tracking/registry URI.
        model_uri: ``models:/<name>@<alias>``.
        artifact_location: MLflow artifact root.
        log_path: File receiving the process's stdout and stderr (default: discarded).
        extra_env: More environment variables.
    """
    env = child_env(
        {
            f"{MODEL_ENV_PREFIX}TRACKING_URI": tracking_uri,
            f"{MODEL_ENV_PREFIX}MODEL_URI": model_uri,
            f"{MODEL_ENV_PREFIX}ARTIFACT_LOCATION": artifact_location,
            "BENTOML_DO_NOT_TRACK": "true",
            **(extra_env or {}),
        }
    )
    return start_process(model_service_command(engine, port), env=env, cwd=REPO_ROOT, log_path=log_path)


def start_api(port: int, env: Mapping[str, str], *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the recommendation API (uvicorn, one worker) on 127.0.0.1 in a session of its own.

    Args:
        port: Port on 127.0.0.1.
        env: Its settings as ``L3__SERVING__*`` variables (on top of this process's environment).
        log_path: File receiving the process's stdout and stderr (default: discarded).
    """
    command = uvicorn_command(API_FACTORY, port)
    return start_process(command, env=child_env(env), cwd=REPO_ROOT, log_path=log_path)
