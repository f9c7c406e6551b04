"""Run levels end to end (quick profile) and print a summary table.

Used by `make all` and `make levelN`. A level takes part when its package has
a `__main__.py`; each runs `python -m <package> run --profile quick` and must
write `artifacts/<run>/metrics.json` (see shared.metrics).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.metrics import read_metrics  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402

LEVELS = {
    1: "level1_eda",
    2: "level2_churn",
    3: "level3_recsys",
    4: "level4_fraud",
    5: "level5_discovery",
}


def newest_metrics(package: str, since: float) -> Path | None:
    """The newest `metrics.json` under the level's artifacts written after `since`."""
    found = [p for p in (ROOT / package / "artifacts").rglob("metrics.json") if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("levels", nargs="+", type=int, choices=sorted(LEVELS))
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()
    configure_environment()
    console = Console()
    rows = []
    failed = False
    for level in args.levels:
        package = LEVELS[level]
        if not (ROOT / package / "__main__.py").exists():
            rows.append((f"{level} {package}", "not built yet (README only)", "", "", ""))
            continue
        console.rule(f"[bold]Level {level}: {package}")
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", package, "run", "--profile", args.profile], cwd=ROOT)
        seconds = time.time() - start
        metrics_path = newest_metrics(package, start)
        if proc.returncode != 0 or metrics_path is None:
            failed = True
            rows.append((f"{level} {package}", "FAILED", f"exit {proc.returncode}", "", f"{seconds:.0f}"))
            continue
        m = read_metrics(metrics_path)
        report = metrics_path.parent / "report.html"
        value = m["headline_value"]
        rows.append(
            (
                f"{level} {package}",
                str(m["headline_metric"]),
                f"{value:.4f}" if isinstance(value, float) else str(value),
                str(report.relative_to(ROOT)),
                f"{seconds:.0f}",
            )
        )
    print_summary(console, rows, args.profile)
    return 1 if failed else 0


def print_summary(console: Console, rows: list[tuple[str, ...]], profile: str) -> None:
    """The summary table, then one line per report path.

    Paths stay out of the table: in an 80-column terminal a path column is folded a few
    characters per line; printed on their own lines they wrap once, whole, and stay clickable.
    """
    table = Table(title=f"ML Levels — {profile} profile")
    table.add_column("level", no_wrap=True)
    table.add_column("headline metric", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    for level, metric, value, _report, seconds in rows:
        table.add_row(level, metric, value, seconds)
    console.print(table)
    for level, _metric, _value, report, _seconds in rows:
        if report:
            console.print(f"{level}: {report}", soft_wrap=True, highlight=False)


if __name__ == "__main__":
    sys.exit(main())
