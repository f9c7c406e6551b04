"""Images built with podman from the repo's ``docker/`` scripts, for the container tests of levels 3
and 4: the tools they need, the environment podman runs in, and the debootstrapped base image.

``docker/build_base.sh TAG`` debootstraps Debian bookworm and imports it (cached by tag);
``docker/build_image.sh NAME TAG`` builds one image on that base. Both run with the repo's
``docker/podman/containers.conf``. A missing tool, or a non-root user for the base image, skips
the calling test with the reason instead of failing it: the images cannot be built there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
BASE_TAG = "localhost/ml-levels-base:bookworm"


def podman_env() -> dict[str, str]:
    """This process's environment with the repo's podman settings (``CONTAINERS_CONF``)."""
    return {**os.environ, "CONTAINERS_CONF": str(DOCKER / "podman" / "containers.conf")}


def find_tool(name: str, hint: str) -> str:
    """Path of a command-line tool (the venv's bin first); skips the test when it is absent.

    Args:
        name: The command.
        hint: How to install it, shown in the skip reason.
    """
    import pytest

    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file():
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


def run_checked(cmd: Sequence[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in the repo with `podman_env`.

    Raises:
        AssertionError: The command failed; the message holds the ends of its output.
    """
    result = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, env=podman_env(), cwd=REPO
    )
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def build_base_image(hint: str) -> str:
    """podman's path, after building the debootstrapped base image (`BASE_TAG`, cached).

    Skips the test when podman, debootstrap or runc is missing, or without root.
    """
    import pytest

    podman = find_tool("podman", hint)
    find_tool("debootstrap", hint)
    find_tool("runc", hint)
    if os.geteuid() != 0:
        pytest.skip("building the debootstrap base image needs root")
    run_checked([str(DOCKER / "build_base.sh"), BASE_TAG])
    return podman


def build_image(name: str, tag: str, timeout: float = 1800) -> None:
    """Build ``docker/build_image.sh NAME`` as `tag` (on the base image, which must exist)."""
    run_checked([str(DOCKER / "build_image.sh"), name, tag], timeout=timeout)
