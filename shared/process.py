"""Process control for the servers a level starts: free ports, readiness, stopping whole trees.

Servers here (uvicorn, BentoML, Ray Serve, MLflow) start worker processes, sometimes in sessions
of their own, so stopping one means stopping every process it started, or a worker keeps the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_process(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in a session of its own, so it and its children can be signalled together.

    Args:
        cmd: Command line.
        env: Full environment of the child (default: this process's).
        cwd: Working directory.
        log_path: File receiving the child's stdout and stderr, appended (default: discarded).

    Returns:
        The started process.
    """
    out: Any = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path:
            out.close()


def wait_http_ready(
    url: str,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    timeout_s: float = 60.0,
    interval_s: float = 0.1,
) -> None:
    """Poll `url` until it answers 200.

    Args:
        url: The full URL of a readiness endpoint (``http://127.0.0.1:8080/readyz``).
        proc: The server's process: waiting stops early when it exits.
        timeout_s: Deadline in seconds.
        interval_s: Pause between polls.

    Raises:
        RuntimeError: The process exited, or the deadline passed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with code {proc.returncode} before {url} was ready"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


def process_tree(pid: int) -> list[Any]:
    """`pid` and all its descendants as psutil processes (empty when it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_tree(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to `proc` and every process it started; processes already gone are skipped.

    The process *tree* is signalled, not only the process group: BentoML's supervisor starts its
    workers in sessions of their own, so ``killpg`` alone would leave a worker holding the port.
    The group is signalled too, for children re-parented away from the tree.
    """
    import psutil

    for p in process_tree(proc.pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process_tree(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a started server and all its descendants; return once every one has exited.

    SIGCONT first (a test may have frozen it), then SIGTERM, then SIGKILL after `timeout_s`.
    Workers that outlive their supervisor are waited for and killed, so the port is free after.
    """
    import psutil

    if proc.poll() is not None:
        return
    descendants = process_tree(proc.pid)[1:]
    signal_tree(proc, signal.SIGCONT)
    signal_tree(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_tree(proc, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    _, alive = psutil.wait_procs(descendants, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout_s)


def read_log_tail(path: str | os.PathLike[str], n_chars: int = 2000) -> str:
    """The last `n_chars` of a server's log file ('' when missing), for error messages."""
    p = Path(path)
    if not p.is_file():
        return ""
    return p.read_text(encoding="utf-8", errors="replace")[-n_chars:]
