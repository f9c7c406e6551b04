"""Checkpoints: a campaign folder remembers which steps finished, so a killed run resumes.

``state.json`` holds a fingerprint of the settings and, per step, its status, attempts, seconds
and last error. A step's outputs are written (atomically) before it is marked done, and the state
itself is replaced atomically, so a kill at any instant leaves either the step done with its
files, or the step not done (it runs again on restart; steps are deterministic given the seed).
A step that raises is retried; after the last attempt the failure is recorded and raised, never
skipped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from shared.atomic import atomic_write_json
from shared.errors import ConfigError, UserError

STATE = "state.json"
T = TypeVar("T")


class StepFailedError(RuntimeError):
    """A step failed on every attempt (its error is in ``state.json``)."""


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of the settings that determine a campaign's result."""
    raw = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _remove(path: Path) -> None:
    """Delete a file, a link or a whole folder (nothing when it does not exist)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class Checkpoint:
    """The step ledger of one campaign folder.

    Args:
        folder: The campaign folder (created).
        settings: What determines the result (seed, config); a folder started with other
            settings is refused rather than silently mixed.
        fresh: Start over: the ledger and the earlier campaign's `outputs` are deleted first,
            since steps that append (assays, knockouts) would read its rows back.
        outputs: The files and folders the steps write (names in `folder`); nothing else in
            the folder is ever deleted.
    """

    def __init__(
        self, folder: Path, settings: dict[str, Any], *, fresh: bool = False, outputs: Sequence[str] = ()
    ) -> None:
        self.folder = folder
        self.path = folder / STATE
        if fresh and self.path.is_file():
            for name in (*outputs, STATE):
                _remove(folder / name)
        folder.mkdir(parents=True, exist_ok=True)
        key = fingerprint(settings)
        if self.path.is_file() and not fresh:
            self.state: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
            if self.state.get("fingerprint") != key:
                raise ConfigError(
                    f"{folder} holds a campaign with other settings (seed, budget or config); "
                    "pass --fresh to start over there, or another --out"
                )
            self.resumed = bool(self.done_steps())
        else:
            self.state = {"fingerprint": key, "settings": settings, "steps": {}, "order": []}
            self.resumed = False
            self._save()

    def done_steps(self) -> list[str]:
        """Steps finished so far, in the order they finished."""
        return [s for s in self.state["order"] if self.is_done(s)]

    def is_done(self, step: str) -> bool:
        """Whether ``step`` finished (its outputs are on disk)."""
        return bool(self.state["steps"].get(step, {}).get("status") == "done")

    def seconds(self) -> dict[str, float]:
        """Wall seconds of each finished step (summed over sessions when resumed)."""
        return {s: float(self.state["steps"][s].get("seconds", 0.0)) for s in self.done_steps()}

    def run(self, step: str, work: Callable[[], T], load: Callable[[], T], retries: int = 2) -> T:
        """Run ``step`` unless it is done; a done step is loaded from its outputs instead.

        Args:
            step: Step name.
            work: Does the step and writes its outputs; returns its value.
            load: Rebuilds the value from the outputs of a finished step.
            retries: Attempts before giving up.

        Raises:
            UserError: A user mistake inside the step (not retried).
            StepFailedError: Every attempt raised.
        """
        if self.is_done(step):
            return load()
        entry = self.state["steps"].setdefault(step, {"attempts": 0, "seconds": 0.0})
        last: BaseException | None = None
        for _ in range(retries):
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            entry["status"] = "running"
            self._save()
            start = time.perf_counter()
            try:
                value = work()
            except UserError:
                entry["status"] = "failed"
                self._save()
                raise
            except Exception as exc:  # any bug or flaky resource: retry, then report
                last = exc
                entry["seconds"] = float(entry["seconds"]) + time.perf_counter() - start
                entry["error"] = f"{type(exc).__name__}: {exc}"
                continue
            entry["seconds"] = float(entry["seconds"]) + time.perf_counter() - start
            entry["status"] = "done"
            entry.pop("error", None)
            if step not in self.state["order"]:
                self.state["order"].append(step)
            self._save()
            return value
        entry["status"] = "failed"
        self._save()
        raise StepFailedError(f"step {step!r} failed {retries} times: {entry.get('error')}") from last

    def note(self, key: str, value: Any) -> None:
        """Keep a small value in the state (e.g. which folder the data came from)."""
        self.state.setdefault("notes", {})[key] = value
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.path, self.state)
