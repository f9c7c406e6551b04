"""Where a level keeps its data and run outputs (cookiecutter-data-science layout)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LevelPaths:
    """Folders of one level: raw data is immutable, runs go under ``artifacts/``.

    Args:
        root: The level folder (``level1_eda/``); every other path hangs off it.
    """

    root: Path

    @classmethod
    def for_package(cls, package_file: str | Path) -> LevelPaths:
        """Paths for the level whose package contains `package_file` (pass ``__file__``)."""
        return cls(Path(package_file).resolve().parent)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def interim(self) -> Path:
        return self.data / "interim"

    @property
    def processed(self) -> Path:
        return self.data / "processed"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def run_dir(self, name: str | None = None, *, base: Path | None = None) -> Path:
        """Create and return a fresh run folder ``artifacts/<name>``.

        Args:
            name: Run name; defaults to a UTC timestamp. Unsafe characters are replaced.
            base: Folder to create the run in instead of ``artifacts/``.
        """
        name = name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
        parent = base if base is not None else self.artifacts
        run = parent / safe
        suffix = 1
        while run.exists() and any(run.iterdir()):
            suffix += 1
            run = parent / f"{safe}-{suffix}"
        run.mkdir(parents=True, exist_ok=True)
        return run


@dataclass(frozen=True)
class RedirectedPaths(LevelPaths):
    """`LevelPaths` whose data and artifacts folders can live elsewhere (tests, DVC workspaces).

    Args:
        root: The level folder.
        data_root: Replaces ``root/data`` when set.
        artifacts_root: Replaces ``root/artifacts`` when set.
    """

    data_root: Path | None = None
    artifacts_root: Path | None = None

    @property
    def data(self) -> Path:
        return self.data_root or self.root / "data"

    @property
    def artifacts(self) -> Path:
        return self.artifacts_root or self.root / "artifacts"
