"""Level 2 benchmarks: writes benchmarks/sections/level2.md.

Part 1 (`bench_features_1m`): the data stages at 1,000,000 customers. Simulate the raw sources,
ingest them, then build the point-in-time snapshots; every stage runs in a fresh child process
so its wall time and peak resident memory are its own. The target of the issue is the features
stage: 1,000,000 customers in under 16 GiB.

Further parts (the 50,000-customer end-to-end flow) add a function returning a Markdown block
and append it to `PARTS`.

Usage::

    python benchmarks/bench_level2.py                     # 1,000,000 customers x 24 months
    python benchmarks/bench_level2.py --customers 50000   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from shared.atomic import atomic_write_text  # noqa: E402

SECTION = HERE / "sections" / "level2.md"
GOAL_GIB = 16.0


def _child(stage: str, work: Path, customers: int, months: int, seed: int) -> dict:
    """Run one stage in a fresh interpreter; returns its JSON line (seconds, peak_rss_mib, ...)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--stage",
        stage,
        "--work",
        str(work),
        "--customers",
        str(customers),
        "--months",
        str(months),
        "--seed",
        str(seed),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_stage(stage: str, work: Path, customers: int, months: int, seed: int) -> dict:
    """Inside the child: run one stage and report time and peak memory."""
    from shared.runtime import configure_environment
    from shared.timing import Timer, peak_rss_mib

    configure_environment()
    from level2_churn.features import write_snapshots
    from level2_churn.ingest import load_and_clean
    from level2_churn.simulate import SimulatorConfig, generate

    extra: dict = {}
    with Timer() as t:
        if stage == "simulate":
            cfg = SimulatorConfig(customers=customers, months=months, seed=seed)
            summary = generate(cfg, work / "raw", progress=False)
            extra = {"rows": summary.rows, "churn_rate": summary.monthly_churn_rate}
        elif stage == "ingest":
            res = load_and_clean(work / "raw", work / "clean")
            extra = {"rows_in": res.rows_in, "rows_out": res.rows_out, "quarantined": res.quarantined}
        elif stage == "features":
            rows = write_snapshots(work / "clean", work / "snapshots.parquet")
            extra = {"snapshot_rows": rows}
        else:
            raise ValueError(stage)
    return {"stage": stage, "seconds": round(t.seconds, 2), "peak_rss_mib": round(peak_rss_mib(), 1), **extra}


def bench_features_1m(customers: int = 1_000_000, months: int = 24, repeats: int = 1, seed: int = 7) -> dict:
    """Simulate, ingest and build features for `customers`; features timed `repeats` times.

    Returns:
        Per stage: seconds, peak RSS (MiB) and row counts; ``features_runs`` holds every repeat.
    """
    work = HERE / "work" / f"level2_{customers}x{months}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        sim = _child("simulate", work, customers, months, seed)
        print(f"simulate: {sim['seconds']:.0f} s, {sim['peak_rss_mib']:.0f} MiB", flush=True)
        ing = _child("ingest", work, customers, months, seed)
        print(f"ingest: {ing['seconds']:.0f} s, {ing['peak_rss_mib']:.0f} MiB", flush=True)
        runs = []
        for _ in range(repeats):
            runs.append(_child("features", work, customers, months, seed))
            print(f"features: {runs[-1]['seconds']:.0f} s, {runs[-1]['peak_rss_mib']:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "customers": customers,
        "months": months,
        "simulate": sim,
        "ingest": ing,
        "features_runs": runs,
        "features_seconds": statistics.median(r["seconds"] for r in runs),
        "features_peak_mib": max(r["peak_rss_mib"] for r in runs),
    }


def features_section(res: dict) -> str:
    """Markdown block for the data stages."""
    gib = res["features_peak_mib"] / 1024
    sim, ing = res["simulate"], res["ingest"]
    usage_rows = sim["rows"]["usage"]
    n_runs = len(res["features_runs"])
    lines = [
        f"### Data stages at {res['customers']:,} customers x {res['months']} months",
        "",
        f"Workload: the seeded simulator writes {res['customers']:,} customers' raw sources "
        f"({usage_rows:,} daily usage rows, {sim['rows']['billing']:,} billing rows, "
        f"{sim['rows']['support']:,} tickets; monthly churn {sim['churn_rate']:.1%}); ingest validates, "
        "fixes and quarantines them; the feature stage builds point-in-time monthly snapshots "
        f"({res['features_runs'][0]['snapshot_rows']:,} rows) bucket by bucket and streams them to Parquet. "
        "Each stage runs in its own process; memory is that process's peak resident set.",
        "",
        "| stage | wall time | peak memory |",
        "|---|---|---|",
        f"| simulate | {sim['seconds']:.0f} s | {sim['peak_rss_mib'] / 1024:.2f} GiB |",
        f"| ingest (validate, clean, quarantine) | {ing['seconds']:.0f} s "
        f"| {ing['peak_rss_mib'] / 1024:.2f} GiB |",
        f"| **features** ({'median of ' + str(n_runs) + ' runs' if n_runs > 1 else '1 run'}) | "
        f"**{res['features_seconds']:.0f} s** | **{gib:.2f} GiB** |",
        "",
        f"Goal (issue): features for 1,000,000 customers in under {GOAL_GIB:.0f} GiB: "
        f"{'met' if gib < GOAL_GIB and res['customers'] >= 1_000_000 else 'see above'} "
        f"({gib:.2f} GiB, {gib / GOAL_GIB:.0%} of the budget). No anchor: no public churn pipeline reports "
        "this workload, so the figure stands against the stated budget.",
    ]
    return "\n".join(lines)


# Each part returns one Markdown block; later parts (end-to-end flow) append themselves here.
PARTS: list[Callable[[argparse.Namespace], str]] = [
    lambda a: features_section(bench_features_1m(a.customers, a.months, a.repeats, a.seed)),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--repeats", type=int, default=1, help="feature-stage repeats (median reported)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.stage:
        print(json.dumps(_run_stage(a.stage, a.work, a.customers, a.months, a.seed)))
        return 0
    blocks = [part(a) for part in PARTS]
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(SECTION, "## Level 2 — churn pipeline\n\n" + "\n\n".join(blocks) + "\n")
    print(f"wrote {SECTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
