"""`ComposeStack`'s podman bookkeeping against a stand-in podman (no container runtime needed)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from shared.compose_stack import ComposeStack

INSPECT = [
    {"State": {"Running": True, "Status": "running"}, "Config": {"Healthcheck": {"Test": ["CMD", "true"]}}},
]


def _fake_podman(tmp: Path) -> Path:
    """A podman that knows two containers of project ``p``: ``api`` (healthcheck) and ``db`` (none)."""
    no_check = [{"State": {"Running": False, "Status": "exited"}, "Config": {}}]
    script = tmp / "podman"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        '  ps) printf "p-api-1 api\\np-db-1 db\\n" ;;\n'
        '  inspect) case "$4" in\n'
        f"    p-api-1) echo '{json.dumps(INSPECT)}' ;;\n"
        f"    p-db-1) echo '{json.dumps(no_check)}' ;;\n"
        "    *) echo 'no such container' >&2; exit 125 ;;\n"
        "  esac ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_state_and_healthcheck_come_from_one_inspect(tmp_path: Path) -> None:
    stack = ComposeStack(tmp_path / "compose.yaml", "p", dict(os.environ), podman=str(_fake_podman(tmp_path)))
    assert stack.containers() == {"api": "p-api-1", "db": "p-db-1"}
    assert stack.state("api") == {"Running": True, "Status": "running"}
    assert stack.has_healthcheck("api")
    assert stack.state("db")["Status"] == "exited"
    assert not stack.has_healthcheck("db")  # no Healthcheck key at all: False, not a KeyError


def test_a_container_podman_cannot_inspect_has_no_state(tmp_path: Path) -> None:
    stack = ComposeStack(tmp_path / "compose.yaml", "p", dict(os.environ), podman=str(_fake_podman(tmp_path)))
    stack.containers = lambda: {"gone": "p-gone-1"}  # type: ignore[method-assign]
    assert stack.inspect("gone") == {}
    assert stack.state("gone") == {}
    assert not stack.has_healthcheck("gone")
