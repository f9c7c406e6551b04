"""ray_session: a private local Ray by default, an existing cluster when an address is configured."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray

from level4_fraud.distributed.cluster import REPO_ROOT, RayConfig, ray_session
from shared.process import free_port, read_log_tail, start_process, stop_process_tree


@ray.remote
def _where_level4_comes_from() -> str:
    import level4_fraud.distributed.cluster as mod

    return str(Path(mod.__file__).resolve())


@ray.remote
def _shipped_copies() -> tuple[list[str], list[str]]:
    """The job's py_modules, and the worker's sys.path folders that hold a copy of this module."""
    import sys

    env = ray.get_runtime_context().runtime_env
    copies = [p for p in sys.path if (Path(p) / "level4_fraud" / "distributed" / "cluster.py").is_file()]
    return list(env.get("py_modules", [])), copies


def test_local_session_starts_private_ray_and_shuts_it_down() -> None:
    assert not ray.is_initialized(), "precondition: an earlier test left Ray initialised"
    with ray_session(RayConfig(num_cpus=2)) as s:
        assert s.started and s.address is None
        assert s.resources["CPU"] == 2.0
        assert s.num_gpus == 0 or s.num_gpus == s.resources["GPU"]
        # Workers import the level from this checkout (the runtime env's PYTHONPATH).
        where = Path(ray.get(_where_level4_comes_from.remote()))
        assert where.is_relative_to(REPO_ROOT)
        storage = Path(s.storage_path)
        assert storage.is_dir() and storage.is_absolute()
        session_dir = Path(s.session_dir)
        assert session_dir.is_dir()
        private = [p for p in session_dir.parents if p.name.startswith("l4-ray-")]
        assert private, f"{session_dir} is not under the session's own temporary folder"
        # A nested block reuses the connection and leaves it open.
        with ray_session(RayConfig(num_cpus=1)) as inner:
            assert not inner.started
            assert inner.resources["CPU"] == 2.0
        assert ray.is_initialized()
    assert not ray.is_initialized()
    assert not storage.exists(), "the temporary results folder is removed"
    assert not private[0].exists(), "Ray's temporary folder is removed"


def test_configured_storage_path_is_created_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "ray-results"
    with ray_session(RayConfig(num_cpus=1, storage_path=str(target))) as s:
        assert s.storage_path == str(target.resolve())
        assert target.is_dir()
        (target / "marker").write_text("x")
    assert (target / "marker").is_file()


def test_config_rejects_unknown_fields_and_zero_cpus() -> None:
    with pytest.raises(ValueError, match="extra"):
        RayConfig(adress="auto")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="num_cpus"):
        RayConfig(num_cpus=0)


def _wait_head_started(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    # The GCS port opens seconds before the head's raylet is up; `ray start` prints this line
    # once the whole head runs.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited: {read_log_tail(log)}")
        if "Ray runtime started" in read_log_tail(log, 100_000):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not start: {read_log_tail(log)}")


@pytest.mark.slow
def test_address_joins_a_running_cluster_ships_the_code_and_leaves_it_running(tmp_path: Path) -> None:
    port = free_port()
    head_tmp = tempfile.mkdtemp(prefix="l4-head-")  # short: Ray's socket paths must stay < 108 chars
    log = tmp_path / "head.log"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = start_process(
        [
            ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
            f"--temp-dir={head_tmp}", "--include-dashboard=false", "--disable-usage-stats",
        ],
        log_path=log,
        # Without token authentication: whether this process joins with a token depends on
        # whether an earlier ray.init in it switched RAY_AUTH_MODE to token.
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )  # fmt: skip
    try:
        _wait_head_started(head, log)
        with ray_session(RayConfig(address=f"127.0.0.1:{port}", num_cpus=2)) as s:
            assert s.started and s.address == f"127.0.0.1:{port}"
            assert s.resources["CPU"] == 1.0, "the cluster's own CPUs, not num_cpus"
            # The packages travel with the job (py_modules), so a node without this checkout
            # still imports the level: a copy of it sits on the worker's path, outside the repo.
            modules, copies = ray.get(_shipped_copies.remote())
            assert len(modules) == 2 and all(m.startswith("gcs://") for m in modules), modules
            assert any(not Path(c).resolve().is_relative_to(REPO_ROOT) for c in copies), copies
        assert not ray.is_initialized()
        assert head.poll() is None, "leaving the block must not stop someone else's cluster"
    finally:
        stop_process_tree(head, timeout_s=30)
        shutil.rmtree(head_tmp, ignore_errors=True)
