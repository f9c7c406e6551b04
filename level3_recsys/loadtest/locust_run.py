"""Running Locust headless against one server and reading what it measured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from level3_recsys.loadtest.results import ScenarioResult, parse_stats
from level3_recsys.serving.processes import REPO_ROOT, child_env

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def start_locust(
    host: str, *, users: int, duration_s: float, prefix: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Run Locust headless against `host` for `duration_s`, statistics to ``<prefix>_stats.csv``.

    Args:
        host: Base URL of the server.
        users: Concurrent clients (all spawned at once).
        duration_s: Run time.
        prefix: Path prefix of Locust's CSV files; its log goes to ``<prefix>.log``.
        env: The traffic's ``L3__LOAD__*`` variables.
    """
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{int(duration_s)}s", "--stop-timeout", "2",
        "--host", host, "--csv", str(prefix), "--loglevel", "WARNING",
    ]  # fmt: skip
    with prefix.with_suffix(".log").open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=child_env(env), stdout=out, stderr=subprocess.STDOUT)


def finish_locust(
    proc: subprocess.Popen[bytes], prefix: Path, duration_s: float, name: str
) -> ScenarioResult:
    """Wait for Locust (its run time plus a minute at most) and read its statistics."""
    try:
        proc.wait(timeout=duration_s + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    total, rows = parse_stats(Path(f"{prefix}_stats.csv"))
    return ScenarioResult(name, duration_s, total, rows)
