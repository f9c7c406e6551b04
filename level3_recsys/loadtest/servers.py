"""The servers under load: starting them, their CPU and memory, the model service the killed
scenario stops and restarts, and a watch on the API's circuit breaker.

Process control (sessions, readiness, stopping whole trees) is `shared.process`; the command
lines are the level's own (`level3_recsys.serving.processes`).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from level3_recsys.loadtest.workspace import ServingWorkspace
from level3_recsys.serving.processes import REPO_ROOT, child_env, start_model_service, uvicorn_command
from shared.process import process_tree, signal_tree, start_process, stop_process_tree, wait_http_ready

BREAKER_RE = re.compile(r'^l3_breaker_state\{breaker="model"\} ([0-9.]+)$', re.M)
STATE_NAMES = {0: "closed", 1: "half_open", 2: "open"}


def start_server(factory: str, port: int, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``uvicorn --factory`` on 127.0.0.1 (one worker) in a session of its own.

    Args:
        factory: ``module:function`` building the app (the API or the ceiling).
        port: Port on 127.0.0.1.
        env: The server's settings as environment variables (on top of this process's).
        log: File receiving its stdout and stderr.
    """
    return start_process(uvicorn_command(factory, port), env=child_env(env), cwd=REPO_ROOT, log_path=log)


def cpu_seconds(proc: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU seconds of a process and its descendants so far (NaN: not running)."""
    import psutil

    if proc is None or proc.poll() is not None:
        return float("nan")
    total = 0.0
    for p in process_tree(proc.pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_mib(proc: subprocess.Popen[bytes] | None) -> float:
    """Resident memory of a process in MiB (NaN: not running)."""
    import psutil

    if proc is None or proc.poll() is not None:
        return float("nan")
    try:
        return float(psutil.Process(proc.pid).memory_info().rss) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


class ModelService:
    """The champion's model service, which the killed scenario stops and restarts."""

    def __init__(self, ws: ServingWorkspace, engine: str, port: int, log: Path) -> None:
        self.ws, self.engine, self.port, self.log = ws, engine, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until ``/readyz`` answers."""
        self.proc = start_model_service(
            self.engine,
            self.port,
            tracking_uri=self.ws.tracking_uri,
            model_uri=f"models:/{self.ws.registered_model}@champion",
            artifact_location=self.ws.artifact_location,
            log_path=self.log,
        )
        wait_http_ready(f"{self.url}/readyz", proc=self.proc, timeout_s=180)

    def kill(self) -> None:
        """SIGKILL the service and every process it started (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            import psutil

            children = process_tree(self.proc.pid)[1:]
            signal_tree(self.proc, signal.SIGKILL)
            self.proc.wait(timeout=10)
            psutil.wait_procs(children, timeout=10)

    def stop(self) -> None:
        """Stop it with its workers (nothing when it is not running)."""
        if self.proc is not None:
            stop_process_tree(self.proc, timeout_s=15)


class BreakerWatch:
    """Polls the API's ``/metrics`` in a thread and records the model breaker's state changes."""

    def __init__(self, api_url: str, period_s: float = 0.1) -> None:
        self.api_url, self.period_s = api_url, period_s
        self.t0 = time.monotonic()
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> BreakerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    match = BREAKER_RE.search(client.get(f"{self.api_url}/metrics").text)
                    if match:
                        state = int(float(match.group(1)))
                        if not self.changes or self.changes[-1][1] != state:
                            self.changes.append((time.monotonic() - self.t0, state))
                self._stop.wait(self.period_s)

    def now(self) -> float:
        """Seconds since the watch was created."""
        return time.monotonic() - self.t0

    def first(self, state: int, after: float) -> float | None:
        """Time of the first change to `state` at or after `after` (None: never)."""
        return next((t for t, s in self.changes if s == state and t >= after), None)
