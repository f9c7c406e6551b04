"""Small simulated worlds shared by the simulator, ingest and feature tests (built once per process)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from level2_churn.ingest import CleanResult, load_and_clean
from level2_churn.simulate import SimulationSummary, SimulatorConfig, generate

SMALL = SimulatorConfig(customers=3000, months=12, seed=11, chunk_size=1000)
TINY = SimulatorConfig(customers=300, months=7, seed=5, chunk_size=150)


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def small_world() -> tuple[Path, Path, SimulationSummary, CleanResult]:
    """3,000 customers x 12 months in 3 chunks: (raw dir, clean dir, simulation summary, clean result)."""
    root = _tmpdir("l2-small-")
    summary = generate(SMALL, root / "raw", progress=False)
    result = load_and_clean(root / "raw", root / "clean", bucket_customers=1200)
    return root / "raw", root / "clean", summary, result


@functools.cache
def tiny_raw() -> Path:
    """300 customers x 7 months of raw data (copy it before breaking it)."""
    root = _tmpdir("l2-tiny-")
    generate(TINY, root / "raw", progress=False)
    return root / "raw"
