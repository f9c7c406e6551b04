"""`make load-test-level3`: the recommendation API under Locust load, against a plain-FastAPI ceiling.

Everything runs on 127.0.0.1, each server in its own process (uvicorn, one worker):

1. a serving workspace (trained registry, fresh batch, serving reference; `workspace`) is
   prepared, or reused when one exists;
2. the champion's model service starts (BentoML by default);
3. Locust runs headless (one process) with the traffic of `locustfile` (Zipf users, cold
   users, feedback), first back to back for throughput, then at a fixed Poisson arrival rate
   for latency:

   * ``ceiling``: a plain FastAPI endpoint returning precomputed lists (`ceiling`);
   * ``cached`` / ``cached_paced``: the API with the nightly batch (known users from the store,
     cold users scored by the model service);
   * ``on_demand`` / ``on_demand_paced``: the API without a batch, every list from the model;
   * ``model_killed``: as ``on_demand_paced``, with the model service killed (SIGKILL) a quarter
     of the way in and restarted halfway; the API's breaker state is polled to time how long
     it takes to open, and to close again after the model service is back.

4. p50/p95/p99 latency, throughput and error rate per scenario and per answer source go to
   ``benchmarks/sections/level3_load.md`` (stitched into ``benchmarks/results.md``) and the raw
   figures to ``benchmarks/work/level3_load/results.json``.

Targets (figures, not tests): cached throughput >= 50% of the ceiling, p99 < 50 ms cached and
< 100 ms on demand, no errors; with the model killed: no errors, fallback p99 < 20 ms, the
breaker closed within 30 s of the model service's return.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer

from level3_recsys.loadtest.workspace import ServingWorkspace, open_workspace, prepare_workspace
from shared.atomic import atomic_write_json, atomic_write_text, json_safe
from shared.cli import handle_user_errors, new_app, run
from shared.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_WORKSPACE = REPO / "benchmarks" / "work" / "level3_load"
DEFAULT_SECTION = REPO / "benchmarks" / "sections" / "level3_load.md"
BREAKER_RE = re.compile(r'^l3_breaker_state\{breaker="model"\} ([0-9.]+)$', re.M)
STATE_NAMES = {0: "closed", 1: "half_open", 2: "open"}

# Targets of the issue (numbers reported, never asserted in tests).
TARGET_RATIO = 0.5
TARGET_P99_CACHED_MS = 50.0
TARGET_P99_ON_DEMAND_MS = 100.0
TARGET_P99_FALLBACK_MS = 20.0
TARGET_CLOSE_S = 30.0


# ---------------------------------------------------------------------- results
@dataclass
class Stats:
    """One Locust stats row (a request name, or the aggregate)."""

    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    max: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass
class ScenarioResult:
    """A scenario's Locust figures, with the breaker timeline for ``model_killed``."""

    name: str
    duration_s: float
    total: Stats
    by_name: dict[str, Stats]
    events: dict[str, float] = field(default_factory=dict)
    breaker: list[tuple[float, int]] = field(default_factory=list)
    runs: int = 1
    close_times: list[float] = field(default_factory=list)
    server_cpu_s: float = float("nan")
    model_cpu_s: float = float("nan")
    server_rss_mib: tuple[float, float] = (float("nan"), float("nan"))

    def cpu_ms_per_request(self, which: str = "server") -> float:
        """CPU milliseconds the server (or the model service) spent per request answered."""
        cpu = self.server_cpu_s if which == "server" else self.model_cpu_s
        return 1000 * cpu / self.total.requests if self.total.requests else float("nan")

    def recs(self, source: str | None = None) -> Stats | None:
        """Stats of recommendation requests (all sources pooled when `source` is None)."""
        if source is not None:
            return self.by_name.get(f"recs:{source}")
        rows = [s for n, s in self.by_name.items() if n.startswith("recs")]
        return rows[0] if len(rows) == 1 else None


def parse_stats(path: Path) -> tuple[Stats, dict[str, Stats]]:
    """Read Locust's ``*_stats.csv``: the aggregate row and one row per request name.

    Raises:
        ConfigError: The file is missing (Locust did not run).
    """
    if not path.is_file():
        raise ConfigError(f"Locust wrote no statistics at {path}")
    rows: dict[str, Stats] = {}
    total = None
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stats = Stats(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]),
                p50=_num(row["50%"]),
                p95=_num(row["95%"]),
                p99=_num(row["99%"]),
                max=_num(row["Max Response Time"]),
            )
            if row["Name"] == "Aggregated":
                total = stats
            else:
                rows[row["Name"]] = stats
    if total is None:
        raise ConfigError(f"{path} has no Aggregated row")
    return total, rows


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "N/A" when a name had no request
        return float("nan")


# ---------------------------------------------------------------------- processes
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_uvicorn(factory: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``uvicorn --factory`` on 127.0.0.1 in its own process group."""
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Poll `url` until it answers 200.

    Raises:
        RuntimeError: The process exited or the deadline passed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


def signal_tree(pid: int, sig: int) -> None:
    """Send `sig` to a process and all its descendants.

    BentoML's supervisor starts its workers in sessions of their own, so signalling the
    process group would leave them running (and holding the port).
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def cpu_seconds(proc: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU seconds of a process and its descendants so far (NaN: not running)."""
    import psutil

    if proc is None or proc.poll() is not None:
        return float("nan")
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(proc.pid)
        for p in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def rss_mib(proc: subprocess.Popen[bytes] | None) -> float:
    """Resident memory of a process in MiB (NaN: not running)."""
    import psutil

    if proc is None or proc.poll() is not None:
        return float("nan")
    try:
        return float(psutil.Process(proc.pid).memory_info().rss) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a server started here with its descendants: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    import psutil

    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(proc.pid).children(recursive=True)
    signal_tree(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        signal_tree(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


class ModelService:
    """The champion's model service, which the killed scenario stops and restarts."""

    def __init__(self, ws: ServingWorkspace, engine: str, port: int, log: Path) -> None:
        self.ws, self.engine, self.port, self.log = ws, engine, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until ``/readyz`` answers."""
        from level3_recsys.serving.processes import start_model_service

        self.proc = start_model_service(
            self.engine,
            self.port,
            tracking_uri=self.ws.tracking_uri,
            model_uri=f"models:/{self.ws.registered_model}@champion",
            artifact_location=self.ws.artifact_location,
            log_path=self.log,
        )
        wait_http(f"{self.url}/readyz", self.proc, timeout_s=180)

    def kill(self) -> None:
        """SIGKILL the service and every process it started (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            import psutil

            children = psutil.Process(self.proc.pid).children(recursive=True)
            signal_tree(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            psutil.wait_procs(children, timeout=10)

    def stop(self) -> None:
        stop(self.proc)


class BreakerWatch:
    """Polls the API's ``/metrics`` in a thread and records the model breaker's state changes."""

    def __init__(self, api_url: str, period_s: float = 0.1) -> None:
        self.api_url, self.period_s = api_url, period_s
        self.t0 = time.monotonic()
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> BreakerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    match = BREAKER_RE.search(client.get(f"{self.api_url}/metrics").text)
                    if match:
                        state = int(float(match.group(1)))
                        if not self.changes or self.changes[-1][1] != state:
                            self.changes.append((time.monotonic() - self.t0, state))
                self._stop.wait(self.period_s)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def first(self, state: int, after: float) -> float | None:
        """Time of the first change to `state` at or after `after` (None: never)."""
        return next((t for t, s in self.changes if s == state and t >= after), None)


# ---------------------------------------------------------------------- Locust
def start_locust(
    host: str, *, users: int, duration_s: float, prefix: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Run Locust headless against `host` for `duration_s`, statistics to ``<prefix>_stats.csv``."""
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{int(duration_s)}s", "--stop-timeout", "2",
        "--host", host, "--csv", str(prefix), "--loglevel", "WARNING",
    ]  # fmt: skip
    with prefix.with_suffix(".log").open("ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish_locust(
    proc: subprocess.Popen[bytes], prefix: Path, duration_s: float, name: str
) -> ScenarioResult:
    """Wait for Locust and read its statistics."""
    try:
        proc.wait(timeout=duration_s + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    total, rows = parse_stats(Path(f"{prefix}_stats.csv"))
    return ScenarioResult(name, duration_s, total, rows)


# ---------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    """One Locust run: which server, which configuration, closed loop or a fixed arrival rate.

    Attributes:
        name: Key in the results.
        server: ``ceiling`` or ``api``.
        batch: The API serves the nightly batch (otherwise every list comes from the model).
        paced: Poisson arrivals at the plan's rate (latency); otherwise back to back (throughput).
        kill_model: Kill the model service at 1/4 of the run and restart it at 1/2.
    """

    name: str
    server: str
    batch: bool = False
    paced: bool = False
    kill_model: bool = False


SCENARIO_SPECS = {
    s.name: s
    for s in (
        Scenario("ceiling", "ceiling"),
        Scenario("cached", "api", batch=True),
        Scenario("on_demand", "api"),
        Scenario("cached_paced", "api", batch=True, paced=True),
        Scenario("on_demand_paced", "api", paced=True),
        Scenario("model_killed", "api", paced=True, kill_model=True),
    )
}
SCENARIOS = tuple(SCENARIO_SPECS)
SCENARIO_TITLES = {
    "ceiling": "ceiling: plain FastAPI, precomputed lists",
    "cached": "API, nightly batch (cached users)",
    "on_demand": "API, on-demand scoring (model service)",
    "cached_paced": "API, nightly batch (cached users)",
    "on_demand_paced": "API, on-demand scoring (model service)",
    "model_killed": "API, on demand, model service killed and restarted",
}


@dataclass
class LoadPlan:
    """What one load-test run does.

    Attributes:
        duration_s: Seconds per scenario (the killed-model scenario runs three times as long,
            so the model service can come back and the breaker close under load).
        users: Locust clients.
        rate: Recommendation requests per second offered in the paced scenarios.
        engine: Model service engine (``bentoml`` or ``uvicorn``).
        scenarios: Scenario names to run, in order.
        work: Folder for logs, Locust statistics and the raw results.
    """

    duration_s: float = 30.0
    users: int = 8
    rate: float = 50.0
    engine: str = "bentoml"
    scenarios: tuple[str, ...] = SCENARIOS
    work: Path = DEFAULT_WORKSPACE
    load_average: tuple[float, float] | None = None

    def length(self, spec: Scenario) -> float:
        return 3 * self.duration_s if spec.kill_model else self.duration_s


def run_scenarios(ws: ServingWorkspace, plan: LoadPlan) -> dict[str, ScenarioResult]:
    """Start the services and run every planned scenario; always stops what it started."""
    logs = plan.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(12)
    users_file = plan.work / "users.json"
    users_file.write_text(json.dumps(ws.user_ids))
    results: dict[str, ScenarioResult] = {}
    model = ModelService(ws, plan.engine, free_port(), logs / "model_service.log")
    specs = [SCENARIO_SPECS[n] for n in plan.scenarios]
    try:
        if any(s.server == "api" for s in specs):
            print(f"starting the model service ({plan.engine}) ...", flush=True)
            model.start()
        for spec in specs:
            pace = plan.rate / plan.users if spec.paced else 0.0
            load_env = {
                "L3_LOAD_USERS_FILE": str(users_file),
                "L3_LOAD_API_KEY": key,
                "L3_LOAD_RATE_PER_CLIENT": str(pace),
            }
            how = f"{plan.rate:.0f} req/s offered" if spec.paced else "back to back"
            print(f"scenario {spec.name}: {plan.users} clients, {how}, {plan.length(spec):.0f} s", flush=True)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            if spec.server == "ceiling":
                env = {"L3_CEILING_STORE_URL": ws.store_url}
                factory, log = "level3_recsys.loadtest.ceiling:create_ceiling_app", logs / "ceiling.log"
            else:
                env = ws.api_env(api_key=key, model_url=model.url, with_batch=spec.batch)
                factory, log = "level3_recsys.serving.api:create_app", logs / f"api_{spec.name}.log"
            server = start_uvicorn(factory, port, env, log)
            try:
                wait_http(f"{base}/healthz", server)
                prefix = plan.work / f"locust_{spec.name}"
                cpu_before = cpu_seconds(server), cpu_seconds(model.proc)
                rss_before = rss_mib(server)
                if spec.kill_model:
                    results[spec.name] = killed_scenario(
                        base,
                        model,
                        users=plan.users,
                        duration_s=plan.length(spec),
                        prefix=prefix,
                        load_env=load_env,
                    )
                else:
                    length = plan.length(spec)
                    proc = start_locust(
                        base, users=plan.users, duration_s=length, prefix=prefix, env=load_env
                    )
                    results[spec.name] = finish_locust(proc, prefix, length, spec.name)
                # server CPU per request: what each server costs, whatever bounds the load generator
                results[spec.name].server_cpu_s = cpu_seconds(server) - cpu_before[0]
                results[spec.name].server_rss_mib = (rss_before, rss_mib(server))  # growth under load
                if spec.server == "api" and not spec.kill_model:  # a restarted model starts from zero
                    results[spec.name].model_cpu_s = cpu_seconds(model.proc) - cpu_before[1]
            finally:
                stop(server)
            t = results[spec.name].total
            print(
                f"  {t.requests} requests, {t.rps:.0f} req/s, p50 {t.p50:.0f} ms, p99 {t.p99:.0f} ms, "
                f"{t.failures} failures",
                flush=True,
            )
    finally:
        model.stop()
    return results


def killed_scenario(
    base: str, model: ModelService, *, users: int, duration_s: float, prefix: Path, load_env: dict[str, str]
) -> ScenarioResult:
    """Traffic on the model path; the model service is killed at 1/4 of the run, restarted at 1/2."""
    with BreakerWatch(base) as watch:
        proc = start_locust(base, users=users, duration_s=duration_s, prefix=prefix, env=load_env)
        start = watch.now()
        time.sleep(duration_s / 4)
        killed_at = watch.now()
        model.kill()
        time.sleep(max(0.0, start + duration_s / 2 - watch.now()))
        restart_at = watch.now()
        model.start()
        back_at = watch.now()
        result = finish_locust(proc, prefix, duration_s, "model_killed")
    opened = watch.first(2, killed_at)
    closed = watch.first(0, back_at)
    result.events = {
        "locust_start_s": start,
        "killed_s": killed_at,
        "restart_s": restart_at,
        "ready_again_s": back_at,
        **({"breaker_open_s": opened} if opened is not None else {}),
        **({"breaker_closed_s": closed} if closed is not None else {}),
    }
    result.breaker = watch.changes
    return result


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if v == v)
    if not finite:
        return float("nan")
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def _median_stats(rows: list[Stats]) -> Stats:
    return Stats(
        name=rows[0].name,
        requests=round(_median([r.requests for r in rows])),
        failures=max(r.failures for r in rows),  # errors: the worst run, never hidden by a median
        rps=_median([r.rps for r in rows]),
        p50=_median([r.p50 for r in rows]),
        p95=_median([r.p95 for r in rows]),
        p99=_median([r.p99 for r in rows]),
        max=max(r.max for r in rows),
    )


def median_results(runs: list[dict[str, ScenarioResult]]) -> dict[str, ScenarioResult]:
    """Per scenario, the median of each figure over repeated runs.

    Throughput and percentiles are medians; failures and the maximum latency are the worst run's;
    breaker event times are medians and the state timeline is the first run's.
    """
    out: dict[str, ScenarioResult] = {}
    for name in runs[0]:
        results = [r[name] for r in runs if name in r]
        names = sorted({n for r in results for n in r.by_name})
        by_name = {n: _median_stats([r.by_name[n] for r in results if n in r.by_name]) for n in names}
        keys = set.intersection(*(set(r.events) for r in results)) if results[0].events else set()
        events = {k: _median([r.events[k] for r in results]) for k in sorted(keys)}
        combined = ScenarioResult(
            name, results[0].duration_s, _median_stats([r.total for r in results]), by_name, events
        )
        combined.breaker = results[0].breaker
        combined.runs = len(results)
        combined.server_cpu_s = _median([r.server_cpu_s for r in results])
        combined.model_cpu_s = _median([r.model_cpu_s for r in results])
        combined.server_rss_mib = (
            _median([r.server_rss_mib[0] for r in results]),
            _median([r.server_rss_mib[1] for r in results]),
        )
        combined.close_times = [
            r.events["breaker_closed_s"] - r.events["ready_again_s"]
            for r in results
            if "breaker_closed_s" in r.events
        ]
        out[name] = combined
    return out


# ---------------------------------------------------------------------- report
def machine() -> str:
    """Cores, CPU model and memory of this machine."""
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM"


def _ms(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.0f}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


Target = tuple[str, str, str, bool]


def targets(results: dict[str, ScenarioResult]) -> list[Target]:
    """(target, goal, measured, met) for every target the run measured."""
    rows: list[Target] = []
    ceiling, cached = results.get("ceiling"), results.get("cached")
    if ceiling and cached and ceiling.total.rps:
        ratio = cached.total.rps / ceiling.total.rps
        rows.append(
            ("cached throughput / ceiling", f">= {TARGET_RATIO:.0%}", f"{ratio:.0%}", ratio >= TARGET_RATIO)
        )
    paced = results.get("cached_paced")
    if paced and (s := paced.recs("batch")):
        goal = f"< {TARGET_P99_CACHED_MS:.0f} ms"
        rows.append(("p99, cached users", goal, f"{_ms(s.p99)} ms", s.p99 < TARGET_P99_CACHED_MS))
    paced = results.get("on_demand_paced")
    if paced and (s := paced.recs("model")):
        goal = f"< {TARGET_P99_ON_DEMAND_MS:.0f} ms"
        rows.append(("p99, on-demand scoring", goal, f"{_ms(s.p99)} ms", s.p99 < TARGET_P99_ON_DEMAND_MS))
    for name, result in results.items():
        if name != "ceiling":
            t = result.total
            rows.append((f"errors, {name}", "0", f"{t.failures} ({_pct(t.error_rate)})", t.failures == 0))
    killed = results.get("model_killed")
    if killed:
        # The breaker's fallback (answered at once); fallbacks after a timeout wait the model deadline.
        if s := killed.recs("fallback:breaker_open"):
            goal = f"< {TARGET_P99_FALLBACK_MS:.0f} ms"
            rows.append(
                (
                    "p99 of fallback answers (breaker open)",
                    goal,
                    f"{_ms(s.p99)} ms",
                    s.p99 < TARGET_P99_FALLBACK_MS,
                )
            )
        ev = killed.events
        goal = f"< {TARGET_CLOSE_S:.0f} s"
        if "breaker_closed_s" in ev:
            close = ev["breaker_closed_s"] - ev["ready_again_s"]
            rows.append(
                ("breaker closed after the model's return", goal, f"{close:.1f} s", close < TARGET_CLOSE_S)
            )
        else:
            rows.append(("breaker closed after the model's return", goal, "not closed", False))
    return rows


def _scenario_table(
    results: dict[str, ScenarioResult], names: tuple[str, ...], ceiling_rps: float | None
) -> list[str]:
    """A Markdown table of `names`; `ceiling_rps` None leaves out the ratio to the ceiling
    (a paced run's throughput is the offered rate, not what the server could do)."""
    columns = ["scenario", "requests", "throughput (req/s)", "vs ceiling", "p50 (ms)", "p95 (ms)"]
    columns += ["p99 (ms)", "errors"]
    if ceiling_rps is None:
        columns.remove("vs ceiling")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name in names:
        if name not in results:
            continue
        t = results[name].total
        cells = [SCENARIO_TITLES[name], f"{t.requests:,}", f"{t.rps:,.0f}"]
        if ceiling_rps is not None:
            cells.append(f"{t.rps / ceiling_rps:.0%}" if ceiling_rps else "–")
        cells += [_ms(t.p50), _ms(t.p95), _ms(t.p99), _pct(t.error_rate)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cpu_rows(results: dict[str, ScenarioResult]) -> list[str]:
    """The servers' CPU per request: a cost that does not depend on what bounds Locust.

    Closed-loop scenarios only: at a fixed low rate, idle work (timers, scrapes) dominates.
    """
    rows = [
        r
        for name in ("ceiling", "cached", "on_demand")
        if (r := results.get(name)) is not None and r.server_cpu_s == r.server_cpu_s and r.total.requests
    ]
    if not rows:
        return []
    ceiling = results.get("ceiling")
    base = ceiling.cpu_ms_per_request() if ceiling else float("nan")
    lines = [
        "",
        "**Server CPU per request** — CPU time (user + system) of each server process over the run, "
        "divided by the requests answered. Locust needs about a core of its own here, so on this "
        "machine the closed-loop throughput of both servers can be bounded by the load generator; "
        "CPU per request is what each server costs, and ceiling / ours is the share of the ceiling's "
        "capacity the API would reach on a core of its own. Resident memory of the server "
        "process before and after the run shows whether load makes it grow:",
        "",
        "| scenario | requests | server CPU per request (ms) | model service CPU per request (ms) "
        "| ceiling / ours | server memory before → after (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours = r.cpu_ms_per_request()
        model = r.cpu_ms_per_request("model")
        ratio = f"{base / ours:.0%}" if base == base and ours > 0 else "–"
        before, after = r.server_rss_mib
        memory = "–" if before != before or after != after else f"{before:.0f} → {after:.0f}"
        lines.append(
            f"| {SCENARIO_TITLES[r.name]} | {r.total.requests:,} | {ours:.3f} | "
            f"{'–' if model != model else f'{model:.3f}'} | {ratio} | {memory} |"
        )
    return lines


def render(results: dict[str, ScenarioResult], ws: ServingWorkspace, plan: LoadPlan) -> str:
    """The Markdown section of `benchmarks/results.md`."""
    ceiling_rps = results["ceiling"].total.rps if "ceiling" in results else 0.0
    n_runs = max((r.runs for r in results.values()), default=1)
    lines = [
        "## Level 3 — recommendation API under load",
        "",
        f"Written by `make load-test-level3` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Machine: {machine()}.",
        "",
        f"Workload: Locust (one process, {plan.users} clients) on 127.0.0.1 against uvicorn with one worker "
        f"per server, {plan.duration_s:.0f} s per scenario ({3 * plan.duration_s:.0f} s with the model "
        f"killed). Traffic: Zipf(1.1) over {len(ws.user_ids):,} known users, 10% cold users (never seen: "
        "the batch's cold-start list when a batch is served, else the model service or the fallback), "
        "20% of answers followed by feedback (an "
        f"impression; a click with p = 0.1). Model: `{ws.model_name}` v{ws.model_version} over "
        f"{ws.n_items:,} items behind the model "
        f"service ({plan.engine}). Locust, the API and the model service share the machine's cores, so each "
        "figure is a floor of what separate machines give. "
        + (
            f"Medians of {n_runs} runs per scenario (errors and maxima: the worst run)."
            if n_runs > 1
            else "One run per scenario."
        )
        + (
            f" Machine load average (1 min) {plan.load_average[0]:.1f} before the run and "
            f"{plan.load_average[1]:.1f} after it (other work on the machine inflates latencies)."
            if plan.load_average
            else ""
        ),
        "",
        "**Throughput** — clients back to back (closed loop, no think time); latency includes queueing:",
        "",
        *_scenario_table(results, ("ceiling", "cached", "on_demand"), ceiling_rps),
        "",
        f"**Latency at a fixed load** — {plan.rate:.0f} recommendation requests/s offered (Poisson "
        "arrivals):",
        "",
        *_scenario_table(results, ("cached_paced", "on_demand_paced", "model_killed"), None),
        *cpu_rows(results),
        "",
        "Per answer source (the API names the source of every list; feedback posts apart):",
        "",
        "| scenario | request | requests | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SCENARIOS:
        if name not in results:
            continue
        for row in sorted(results[name].by_name.values(), key=lambda s: s.name):
            lines.append(
                f"| {name} | `{row.name}` | {row.requests:,} | {_ms(row.p50)} | {_ms(row.p95)} | "
                f"{_ms(row.p99)} | {_ms(row.max)} | {row.failures} |"
            )
    killed = results.get("model_killed")
    if killed:
        ev = killed.events
        t0 = ev.get("locust_start_s", 0.0)
        timeline = ", ".join(f"{STATE_NAMES[s]} at {t - t0:.1f} s" for t, s in killed.breaker)
        text = (
            f"Killed model: SIGKILL at {ev['killed_s'] - t0:.1f} s, restart at {ev['restart_s'] - t0:.1f} s, "
            f"ready again at {ev['ready_again_s'] - t0:.1f} s. Breaker states on `/metrics` (polled every "
            f"0.1 s): {timeline}."
        )
        if "breaker_open_s" in ev:
            text += f" It opened {ev['breaker_open_s'] - ev['killed_s']:.1f} s after the kill"
            if "breaker_closed_s" in ev:
                back = ev["breaker_closed_s"] - ev["ready_again_s"]
                text += f" and closed {back:.1f} s after the model's return"
            text += "."
        if killed.runs > 1:
            closes = ", ".join(f"{c:.1f} s" for c in killed.close_times) or "none"
            text += (
                f" Times are medians of {killed.runs} runs (the timeline is the first run's); the breaker "
                f"closed after the model's return in {len(killed.close_times)} of {killed.runs} runs "
                f"({closes})."
            )
        lines += ["", text]
    rows = targets(results)
    if rows:
        lines += [
            "",
            "Targets (issue Level 3b):",
            "",
            "| target | goal | measured | met |",
            "|---|---|---|---|",
        ]
        lines += [f"| {t} | {goal} | {m} | {'yes' if ok else 'no'} |" for t, goal, m, ok in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- CLI
app = new_app("run_load", "Level 3 load test: the API under Locust against a plain-FastAPI ceiling.")


@app.command()
@handle_user_errors
def main(
    duration: Annotated[
        float, typer.Option(help="Seconds per scenario (the killed model: three times).")
    ] = 30.0,
    users: Annotated[int, typer.Option(help="Concurrent Locust clients.")] = 8,
    repeats: Annotated[int, typer.Option(help="Runs of every scenario; the report quotes medians.")] = 3,
    rate: Annotated[float, typer.Option(help="Requests/s offered in the paced (latency) scenarios.")] = 50.0,
    engine: Annotated[str, typer.Option(help="Model service engine: bentoml or uvicorn.")] = "bentoml",
    scenario: Annotated[list[str] | None, typer.Option(help="Scenario(s) to run (default: all).")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Serving workspace folder (prepared when missing).")
    ] = None,
    model: Annotated[
        str, typer.Option(help="Model trained into a new workspace (the champion the service scores with).")
    ] = "itemknn",
    items: Annotated[
        int, typer.Option(help="Catalogue size of a new workspace (items on day 0; 0: the profile's).")
    ] = 20_000,
    profile: Annotated[str, typer.Option(help="Level profile used to prepare a new workspace.")] = "quick",
    fresh: Annotated[bool, typer.Option(help="Prepare a new workspace even when one exists.")] = False,
    out: Annotated[Path, typer.Option(help="Markdown section to write.")] = DEFAULT_SECTION,
) -> None:
    """Run the load-test scenarios and write their figures."""
    from level3_recsys.serving.processes import ENGINES
    from shared.runtime import configure_environment

    chosen = tuple(scenario or SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        raise ConfigError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    if duration < 5 or users < 1 or rate <= 0:
        raise ConfigError("--duration must be at least 5 s, --users at least 1 and --rate positive")
    if items and items < 20:
        raise ConfigError("--items must be at least 20 (or 0 for the profile's catalogue)")
    configure_environment()
    if workspace is None:
        suffix = f"_{profile}_{model}" + (f"_{items}items" if items else "")
        workspace = DEFAULT_WORKSPACE.with_name(DEFAULT_WORKSPACE.name + suffix)
    workspace = workspace.resolve()
    if fresh or not (workspace / "workspace.json").is_file():
        print(f"preparing a serving workspace in {workspace} (profile {profile}) ...", flush=True)
        overrides = {"simulator": {"n_items": items}} if items else None
        ws = prepare_workspace(workspace, profile=profile, models=(model,), overrides=overrides)
    else:
        ws = open_workspace(workspace)
    plan = LoadPlan(
        duration_s=duration, users=users, rate=rate, engine=engine, scenarios=chosen, work=workspace / "load"
    )
    plan.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    runs = []
    for i in range(repeats):
        print(f"run {i + 1} of {repeats}", flush=True)
        runs.append(run_scenarios(ws, plan))
    results = median_results(runs)
    plan.load_average = (load_before, os.getloadavg()[0])
    text = render(results, ws, plan)
    atomic_write_text(out, text)
    atomic_write_json(
        plan.work / "results.json",
        json_safe(
            {
                "plan": {**asdict(plan), "work": str(plan.work)},
                "workspace": {k: v for k, v in asdict(ws).items() if k != "user_ids"},
                "results": {n: asdict(r) for n, r in results.items()},
                "runs": [{n: asdict(r) for n, r in run.items()} for run in runs],
            }
        ),
    )
    print(text)
    print(f"wrote {out} and {plan.work / 'results.json'}")


if __name__ == "__main__":
    run(app)
