"""`shared.podman_images`: what the container tests of levels 3 and 4 share. Runs without podman:
a missing tool skips the calling test (with the install hint), a failed build step fails it with
the end of its output, and podman always runs with the repo's ``containers.conf``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.podman_images import DOCKER, find_tool, podman_env, run_checked


def test_podman_runs_with_the_repos_containers_conf() -> None:
    env = podman_env()
    assert env["CONTAINERS_CONF"] == str(DOCKER / "podman" / "containers.conf")
    assert (DOCKER / "podman" / "containers.conf").is_file()


def test_a_missing_tool_skips_with_the_install_hint() -> None:
    hint = r"no-such-tool-x1 is not installed \(apt-get install x\)"
    with pytest.raises(pytest.skip.Exception, match=hint):
        find_tool("no-such-tool-x1", "apt-get install x")
    assert find_tool("python", "hint") == str(Path(sys.executable).parent / "python")  # the venv's first


def test_a_failed_step_fails_with_the_end_of_its_output() -> None:
    assert run_checked(["sh", "-c", "echo built"]).stdout == "built\n"
    with pytest.raises(AssertionError, match=r"(?s)failed:.*broken step"):
        run_checked(["sh", "-c", "echo broken step >&2; exit 3"])
