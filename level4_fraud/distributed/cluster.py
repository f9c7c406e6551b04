"""One way to get a Ray cluster for the level: a private local one, or an existing one by address.

`ray_session` starts Ray on this machine by default (a fixed CPU count, no dashboard, a private
temporary folder, workers that can import the repository) and shuts it down afterwards. With
``address`` set (``"auto"``, ``"10.0.0.5:6379"``, ``"ray://head:10001"``) it joins that cluster
instead, ships the ``shared`` and ``level4_fraud`` packages to its workers, and leaves the
cluster running when the block ends. A block entered while Ray is already initialised reuses
that connection (so the pipeline can tune and train inside one session) and shuts nothing down.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root: local workers get it on ``PYTHONPATH`` to import ``level4_fraud``."""

_SHIPPED_EXCLUDES = ["**/data/**", "**/artifacts/**", "**/__pycache__/**", "**/tests/**", "*.parquet"]


class RayConfig(BaseModel):
    """Where Ray runs (quick-profile defaults; the full profile differs only by ``num_cpus=None``).

    Args:
        address: ``None`` starts a private local Ray; anything else is passed to ``ray.init``
            to join a running cluster (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``).
        num_cpus: CPUs a local Ray may use (``None``: all of this machine's). Ignored when joining.
        num_gpus: GPUs a local Ray may use (``None``: Ray detects them). Ignored when joining.
        object_store_memory: Bytes for a local object store (``None``: Ray's default).
        storage_path: Where Ray Train and Tune write results and checkpoints. ``None``: a
            temporary folder removed when the session ends. A multi-node cluster needs storage
            every node reaches (NFS path, ``s3://...``, ``gs://...``).
    """

    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    num_cpus: int | None = Field(2, ge=1)
    num_gpus: int | None = Field(None, ge=0)
    object_store_memory: int | None = Field(None, ge=75 * 1024 * 1024)
    storage_path: str | None = None


@dataclass
class RaySession:
    """The Ray connection a `ray_session` block runs in.

    Attributes:
        started: True when this block called ``ray.init`` (and will call ``ray.shutdown``).
        storage_path: Absolute path or URI for Ray Train/Tune results (``RunConfig.storage_path``).
        resources: ``ray.cluster_resources()`` at the start (``{"CPU": 2.0, ...}``).
        address: The address joined, or ``None`` for a local Ray (or a reused connection).
        session_dir: Ray's folder for this session's logs and sockets (under a private
            temporary folder for a local Ray, removed at the end; empty when reused).
    """

    started: bool
    storage_path: str
    resources: dict[str, float] = field(default_factory=dict)
    address: str | None = None
    session_dir: str = ""

    @property
    def num_gpus(self) -> int:
        """Whole GPUs in the cluster (0 on a CPU-only machine)."""
        return int(self.resources.get("GPU", 0.0))


def _pythonpath() -> str:
    current = os.environ.get("PYTHONPATH", "")
    parts = [str(REPO_ROOT), *(p for p in current.split(os.pathsep) if p and p != str(REPO_ROOT))]
    return os.pathsep.join(parts)


def runtime_env(*, remote: bool) -> dict[str, Any]:
    """The runtime environment every Ray worker of the level gets.

    Local workers run on this machine with this interpreter: the repository on ``PYTHONPATH`` is
    enough. Workers of a remote cluster have neither the checkout nor the packages, so the two
    packages the level imports are shipped with the job (``py_modules``), minus data and tests.
    Both get the level's runtime defaults (offline, quiet, one BLAS thread).
    """
    from shared.runtime import DEFAULTS

    env_vars = {k: os.environ.get(k, v) for k, v in DEFAULTS.items()}
    if remote:
        # Package folders, not module objects: an editable install can give a package a
        # two-entry __path__, which py_modules refuses.
        modules = [str(REPO_ROOT / "shared"), str(REPO_ROOT / "level4_fraud")]
        return {"py_modules": modules, "excludes": _SHIPPED_EXCLUDES, "env_vars": env_vars}
    env_vars["PYTHONPATH"] = _pythonpath()
    return {"env_vars": env_vars}


def _resolve_storage(cfg: RayConfig, stack: contextlib.ExitStack) -> str:
    if cfg.storage_path is None:
        tmp = tempfile.mkdtemp(prefix="l4-ray-results-")
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        return tmp
    if "://" in cfg.storage_path:
        return cfg.storage_path
    path = Path(cfg.storage_path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _reason(exc: BaseException) -> str:
    # Ray's ConnectionError only says "Failed to connect"; the cause (a refused or missing
    # authentication token, a GCS timeout) is what the user can act on.
    parts = []
    for e in (exc, exc.__cause__):
        if e is not None:
            lines = str(e).strip().splitlines()
            parts.append(lines[0] if lines else type(e).__name__)
    return ": ".join(parts)[:300]


@contextlib.contextmanager
def ray_session(cfg: RayConfig | None = None) -> Iterator[RaySession]:
    """Run a block on Ray: a private local Ray by default, or the cluster at ``cfg.address``.

    Args:
        cfg: Where to run (default: a local Ray with 2 CPUs).

    Yields:
        The session: whether it is local, the storage path for Train/Tune, the cluster's resources.

    Raises:
        ConfigError: The configured cluster cannot be reached, or refuses the connection.

    A cluster with Ray's token authentication (the default of a ``ray start`` head) needs
    ``RAY_AUTH_MODE=token`` and its token (``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``) in the
    environment of the process that joins it.
    """
    import ray

    cfg = cfg or RayConfig()
    with contextlib.ExitStack() as stack:
        storage = _resolve_storage(cfg, stack)
        if ray.is_initialized():
            # Nested use (a pipeline step inside a session): reuse it, shut nothing down.
            yield RaySession(started=False, storage_path=storage, resources=dict(ray.cluster_resources()))
            return
        # Ray's own INFO lines ("Started a local Ray instance") would drown a CLI's summary.
        common: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "WARNING",
            "configure_logging": True,
        }
        if cfg.address is None:
            temp_dir = tempfile.mkdtemp(prefix="l4-ray-")  # short: Ray's socket paths must stay < 108 chars
            stack.callback(shutil.rmtree, temp_dir, ignore_errors=True)
            context = ray.init(
                num_cpus=cfg.num_cpus,
                num_gpus=cfg.num_gpus,
                object_store_memory=cfg.object_store_memory,
                _temp_dir=temp_dir,
                runtime_env=runtime_env(remote=False),
                **common,
            )
        else:
            try:
                context = ray.init(address=cfg.address, runtime_env=runtime_env(remote=True), **common)
            except (ConnectionError, RuntimeError) as exc:
                raise ConfigError(f"cannot join the Ray cluster at {cfg.address}: {_reason(exc)}") from None
        stack.callback(ray.shutdown)
        yield RaySession(
            started=True,
            storage_path=storage,
            resources=dict(ray.cluster_resources()),
            address=cfg.address,
            # A client connection (ray://) has no address_info.
            session_dir=str(getattr(context, "address_info", {}).get("session_dir", "")),
        )
