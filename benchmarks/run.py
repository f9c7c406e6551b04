"""`make bench`: run every level's benchmark and write benchmarks/results.md.

Each level contributes `benchmarks/bench_levelN.py`, a script that measures
its workload (and the anchor's, in the same run, where the anchor can be
installed) and writes a Markdown section to `benchmarks/sections/levelN.md`.
This runner executes them in order and stitches the sections together with
a header stating the machine. `python benchmarks/run.py level1` runs one
level's scripts; `--stitch-only` only rebuilds results.md from the sections.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from shared.atomic import atomic_write_text  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, Python {platform.python_version()}"


def main() -> int:
    configure_environment()
    args = sys.argv[1:]
    # --stitch-only rebuilds results.md from the committed sections without re-measuring.
    stitch_only = "--stitch-only" in args
    only = [a for a in args if not a.startswith("--")]
    scripts = [] if stitch_only else sorted(HERE.glob("bench_level*.py"))
    if only:
        scripts = [s for s in scripts if any(s.stem.endswith(o) for o in only)]
    (HERE / "sections").mkdir(exist_ok=True)
    status = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.time()
        rc = subprocess.run([sys.executable, str(script)], cwd=ROOT).returncode
        print(f"== {script.name}: exit {rc} in {time.time() - start:.0f} s", flush=True)
        status |= rc
    sections = [p.read_text(encoding="utf-8").strip() for p in sorted((HERE / "sections").glob("level*.md"))]
    # Sections keep the date and machine load they were measured under; the header says which
    # scripts ran now (none when only stitching), so older sections are not passed off as new.
    ran = ", ".join(s.stem for s in scripts) if scripts else "none (sections stitched as measured)"
    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d}; benchmarks run then: {ran}. "
        f"Machine of this run: {machine()}; each section states when and under what load it was measured.\n"
        "Each section states its workload, our figure, and the anchor's figure measured in the same run "
        "(or a published figure with its source). Medians of repeated runs; ratios are anchor / ours.\n"
    )
    atomic_write_text(HERE / "results.md", header + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {HERE / 'results.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
