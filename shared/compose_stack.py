"""A compose stack run with ``podman-compose`` for the container tests of levels 3 and 4.

`ComposeStack` brings the named services of a compose file up (images already built: ``up -d
--no-build``), waits until every healthcheck passes, runs commands in the containers and tears
everything down again: containers, the project's named volumes and its network.

Written for Debian bookworm's podman-compose 1.0.3, which ignores ``depends_on`` conditions and
``profiles`` (services are named explicitly, and the health of each is awaited here), removes
neither the project's network on ``down`` nor containers it could not stop, and exits 0 even
when a container failed to start (so `up` checks that each one runs). Containers are found by
the compose labels, not by name. Podman runs no healthcheck timer without systemd, so
`wait_healthy` runs ``podman healthcheck run`` itself.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
T = TypeVar("T")


def until(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 1.0) -> T:
    """The first truthy value `check()` returns within `timeout_s`, polled every `every_s`.

    Raises:
        AssertionError: Naming `what`, when no call returned a truthy value in time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s (last: {value!r})"
        time.sleep(every_s)


@dataclass
class ComposeStack:
    """One compose project, driven by podman-compose and inspected with podman.

    Attributes:
        compose_file: The compose file.
        project: Project name (``-p``): prefixes the containers, volumes and network.
        env: Full environment of podman-compose and podman (the file's variables included).
        podman: The podman binary.
        podman_compose: The podman-compose binary.
        timings: Seconds each step took (``up``, ``healthy``, ``down``).
    """

    compose_file: Path
    project: str
    env: Mapping[str, str]
    podman: str = "podman"
    podman_compose: str = "podman-compose"
    timings: dict[str, float] = field(default_factory=dict)

    def _run(self, cmd: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, env=dict(self.env), check=False
        )

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``podman-compose -p PROJECT -f FILE ARGS`` (not checked: the caller decides)."""
        cmd = [self.podman_compose, "-p", self.project, "-f", str(self.compose_file), *args]
        return self._run(cmd, timeout=timeout)

    def podman_cmd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``podman ARGS`` (not checked)."""
        return self._run([self.podman, *args], timeout=timeout)

    def containers(self) -> dict[str, str]:
        """``{service: container name}`` of the project's containers, running or not."""
        fmt = '{{.Names}} {{index .Labels "' + SERVICE_LABEL + '"}}'
        out = self.podman_cmd(
            "ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.project}", "--format", fmt
        )
        pairs = (line.split() for line in out.stdout.splitlines() if line.strip())
        return {p[1]: p[0] for p in pairs if len(p) == 2}

    def container(self, service: str) -> str:
        """The container of `service`.

        Raises:
            AssertionError: The service has no container.
        """
        found = self.containers().get(service)
        assert found, f"no container for service {service!r}\n{self.diagnostics()}"
        return found

    def up(self, services: Sequence[str], timeout: float = 600) -> None:
        """Start `services` (and what they depend on) detached, from images already built.

        Raises:
            AssertionError: podman-compose failed or a service's container is not running.
        """
        start = time.monotonic()
        result = self.compose("up", "-d", "--no-build", *services, timeout=timeout)
        assert result.returncode == 0, (
            f"podman-compose up failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        for service in services:
            state = self.state(service)
            assert state.get("Running") or state.get("Restarting"), (
                f"{service} is not running after up: {state}\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{self.diagnostics()}"
            )
        self.timings["up"] = time.monotonic() - start

    def inspect(self, service: str) -> dict[str, Any]:
        """``podman inspect`` of `service`'s container ({} when podman cannot inspect it)."""
        out = self.podman_cmd("inspect", "--type", "container", self.container(service))
        if out.returncode != 0:
            return {}
        found = json.loads(out.stdout)
        return dict(found[0]) if found else {}

    def state(self, service: str) -> dict[str, Any]:
        """The ``State`` of `service`'s container ({} when it cannot be inspected)."""
        return dict(self.inspect(service).get("State") or {})

    def has_healthcheck(self, service: str) -> bool:
        """Whether `service`'s container has a healthcheck (compose's or the image's)."""
        config = self.inspect(service).get("Config") or {}
        return bool((config.get("Healthcheck") or {}).get("Test"))

    def wait_healthy(self, services: Sequence[str], timeout_s: float = 300) -> None:
        """Wait until the healthcheck of every service that has one passes.

        Raises:
            AssertionError: A healthcheck did not pass within `timeout_s`, or a service has none.
        """
        start = time.monotonic()
        pending = {s: self.container(s) for s in services}
        for service in pending:
            assert self.has_healthcheck(service), f"{service} has no healthcheck"
        last: dict[str, str] = {}
        while pending:
            for service, name in list(pending.items()):
                check = self.podman_cmd("healthcheck", "run", name, timeout=60)
                if check.returncode == 0:
                    del pending[service]
                else:
                    last[service] = (check.stdout + check.stderr).strip()
            if not pending:
                break
            assert time.monotonic() - start < timeout_s, (
                f"not healthy after {timeout_s:.0f} s: "
                + ", ".join(f"{s} ({last.get(s, '')})" for s in pending)
                + f"\n{self.diagnostics()}"
            )
            time.sleep(2)
        self.timings["healthy"] = time.monotonic() - start

    def exec(self, service: str, *cmd: str, timeout: float = 60) -> str:
        """Stdout of `cmd` run in `service`'s container.

        Raises:
            AssertionError: The command failed.
        """
        result = self.podman_cmd("exec", self.container(service), *cmd, timeout=timeout)
        assert result.returncode == 0, f"{' '.join(cmd)} in {service}: {result.stdout}{result.stderr}"
        return result.stdout

    def diagnostics(self, tail: int = 40) -> str:
        """``podman ps -a`` of the project and the last lines of each container's log."""
        ps = self.podman_cmd("ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.project}")
        parts = [ps.stdout]
        for service, name in sorted(self.containers().items()):
            logs = self.podman_cmd("logs", "--tail", str(tail), name)
            parts.append(f"--- {service} ({name})\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)

    def _owned(self) -> tuple[list[str], list[str], list[str]]:
        """Ids of the project's containers, names of its volumes and of its networks."""
        label = f"label={PROJECT_LABEL}={self.project}"
        containers = self.podman_cmd("ps", "-aq", "--filter", label).stdout.split()
        volumes = self.podman_cmd("volume", "ls", "-q", "--filter", label).stdout.split()
        networks = self.podman_cmd("network", "ls", "--format", "{{.Name}}").stdout.split()
        return containers, volumes, [n for n in networks if n.startswith(f"{self.project}_")]

    def leftovers(self) -> list[str]:
        """Containers, volumes and networks of the project still present."""
        containers, volumes, networks = self._owned()
        return containers + volumes + networks

    def down(self) -> None:
        """``podman-compose down -v``, then whatever it leaves: containers, volumes, the network."""
        start = time.monotonic()
        self.compose("down", "-v", timeout=300)
        containers, volumes, networks = self._owned()
        for cid in containers:
            self.podman_cmd("rm", "-f", "-t", "2", cid)
        for volume in volumes:
            self.podman_cmd("volume", "rm", "-f", volume)
        for network in networks:
            self.podman_cmd("network", "rm", "-f", network)
        self.timings["down"] = time.monotonic() - start
