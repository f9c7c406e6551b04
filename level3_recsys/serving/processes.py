"""Start, probe and stop model-service processes (used by `serve` and the integration tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from shared.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("bentoml", "uvicorn")


def model_service_command(engine: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the model on `host:port` with the given engine.

    Args:
        engine: ``bentoml`` (the BentoML service) or ``uvicorn`` (the FastAPI twin, one process).
        port: TCP port.
        host: Interface (loopback by default).
    """
    if engine == "bentoml":
        target = "level3_recsys.serving.model_service:RecommenderService"
        return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]
    if engine == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "--factory", "level3_recsys.serving.model_app:create_model_app",
            "--host", host, "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
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
    """Start a model service in its own process group (so it can be killed with its workers).

    Args:
        engine: ``bentoml`` or ``uvicorn``.
        port: Port on 127.0.0.1.
        tracking_uri: MLflow tracking/registry URI.
        model_uri: ``models:/<name>@<alias>``.
        artifact_location: MLflow artifact root.
        log_path: File receiving the process's stdout and stderr (default: discarded).
        extra_env: More environment variables.
    """
    env = {
        **os.environ,
        "L3_MODEL_TRACKING_URI": tracking_uri,
        "L3_MODEL_MODEL_URI": model_uri,
        "L3_MODEL_ARTIFACT_LOCATION": artifact_location,
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        **(extra_env or {}),
    }
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            model_service_command(engine, port),
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 60.0) -> None:
    """Poll ``{url}/readyz`` until it answers 200.

    Raises:
        RuntimeError: The process exited, or the deadline passed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"model service exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


def _tree(pid: int) -> list[Any]:
    """`pid` and all its descendants as psutil processes (empty when it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to `proc` and every process it started; ignore processes already gone.

    The process *tree* is signalled, not just the process group: BentoML's supervisor starts
    its workers in sessions of their own, so ``killpg`` would leave a worker alive (and holding
    the port) after a SIGKILL. The group is signalled too, for children that were re-parented.
    """
    import psutil

    for p in _tree(proc.pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a started service and all its descendants: SIGCONT (in case it was frozen), SIGTERM,
    then SIGKILL; returns once every one of them has exited (so its port is free)."""
    import psutil

    if proc.poll() is not None:
        return
    descendants = _tree(proc.pid)[1:]
    signal_group(proc, signal.SIGCONT)
    signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    # workers outliving their supervisor (own sessions): wait, then kill what is left
    _, alive = psutil.wait_procs(descendants, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout_s)
