"""Start and stop the consumer processes of a replay (``stream --broker ... --consumers N``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from level4_fraud.stream.producer import BrokerError
from shared.process import read_log_tail, start_process, stop_process_tree


def consumer_names(n: int, prefix: str | None = None) -> list[str]:
    """`n` consumer names unique to this replay (``host-pid-i``)."""
    prefix = prefix or f"{socket.gethostname()}-{os.getpid()}"
    return [f"{prefix}-{i}" for i in range(n)]


def consumer_command(
    run_dir: Path,
    broker: str,
    name: str,
    profile: str,
    config: Path | None,
    metrics_port: int | None = None,
) -> list[str]:
    """The command line of one consumer process (``python -m level4_fraud stream-consumer``)."""
    cmd = [sys.executable, "-m", "level4_fraud", "stream-consumer", "--run", str(run_dir)]
    cmd += ["--broker", broker, "--name", name, "--profile", profile]
    cmd += ["--config", str(config)] if config else []
    return cmd + (["--metrics-port", str(metrics_port)] if metrics_port else [])


class ConsumerProcesses:
    """The scorer processes a replay starts, with a log file each.

    Args:
        commands: One command line per consumer, by name.
        log_dir: Where ``<name>.log`` files go.
        env: Their environment (default: this process's).
    """

    def __init__(
        self, commands: Mapping[str, Sequence[str]], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.logs = {name: log_dir / f"{name}.log" for name in commands}
        self.procs: dict[str, subprocess.Popen[bytes]] = {
            name: start_process(cmd, env=env, log_path=self.logs[name]) for name, cmd in commands.items()
        }

    def alive(self) -> bool:
        """True while at least one consumer runs."""
        return any(p.poll() is None for p in self.procs.values())

    def wait_joined(self, client: Any, key: str, group: str, timeout_s: float) -> None:
        """Wait until every consumer has joined the group (model loaded, first read done).

        Raises:
            BrokerError: One exited first (its log's tail in the message), or the deadline passed.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    tail = read_log_tail(self.logs[name], 600).strip().splitlines()
                    raise BrokerError(
                        f"consumer {name} exited with code {proc.returncode}: {tail[-1] if tail else ''} "
                        f"(log: {self.logs[name]})"
                    )
            if set(self.procs) <= joined(client, key, group):
                return
            time.sleep(0.2)
        raise BrokerError(f"consumers did not join {key}/{group} within {timeout_s:.0f}s (logs: {self.logs})")

    def stop(self, client: Any = None, key: str = "", group: str = "") -> None:
        """SIGTERM every consumer (each finishes its batch) and wait for them; with a client, remove
        from the group those that left nothing pending (a consumer's entries outlive its name)."""
        for proc in self.procs.values():
            stop_process_tree(proc)
        if client is None:
            return
        import redis

        try:
            for c in client.xinfo_consumers(key, group):
                if c["name"] in self.procs and c["pending"] == 0:
                    client.xgroup_delconsumer(key, group, c["name"])
        except redis.exceptions.RedisError:
            pass  # hygiene only


def joined(client: Any, key: str, group: str) -> set[str]:
    """Names of the group's consumers (empty when the group does not exist)."""
    import redis

    try:
        return {c["name"] for c in client.xinfo_consumers(key, group)}
    except redis.exceptions.ResponseError:
        return set()
