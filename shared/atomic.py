"""Atomic writes: write to a temporary file in the target folder, then rename.

A reader never sees a half-written file, and a failure leaves the previous
version (if any) untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success.

    Use this for writers that want a file name (``df.to_parquet``, ``joblib.dump``).

    Args:
        path: Final destination.

    Yields:
        A temporary path in the same directory (same filesystem, so the rename is atomic).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; outputs should get the usual permissions (0666 minus umask).
    tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces `path` only if the block succeeds."""
    if not any(m in mode for m in "wx"):
        raise ValueError("atomic_open only supports write modes")
    with atomic_path(path) as tmp:
        if "b" not in mode:
            kwargs.setdefault("encoding", "utf-8")
        with open(tmp, mode.replace("x", "w"), **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` atomically and return the path."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Serialise `obj` as JSON (NaN and infinities refused) and write it atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False, default=_json_default)
    return atomic_write_text(path, text + "\n")


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto `path` atomically.

    Example:
        ``atomic_write_with(out, lambda p: df.to_csv(p, index=False))``
    """
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def json_safe(value: Any) -> Any:
    """`value` ready for strict JSON: NaN and infinities (a figure not measured) become null.

    Dicts (keys as strings), lists and tuples are walked; numpy scalars become Python numbers.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, paths: the types a metrics dict usually carries.
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path`; publish it as `path` on success.

    The block fills the folder; when it succeeds the previous `path` (if any) is moved aside
    and removed, so a reader sees the old folder or the new one, never a half-written one.
    On an error the temporary folder is removed and `path` is left untouched.

    The published folder gets the usual permissions (0777 minus the umask): ``mkdtemp``
    creates 0700 folders, which other users (a container's service account, a web server)
    could not read.

    Args:
        path: Final folder.

    Yields:
        The temporary folder (same parent, so the renames stay on one filesystem).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())
        old: Path | None = None
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            old.rmdir()
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    # os.umask can only be read by setting it; restore it at once.
    mask = os.umask(0)
    os.umask(mask)
    return mask
