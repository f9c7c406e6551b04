"""Level 4 load test for `make bench` / `make load-test-level4`: writes sections/level4_load.md.

Open-loop replays of the quick run's last simulated days at an offered rate (500 transactions/s),
everything on 127.0.0.1:

1. ``uvicorn``: ``python -m level4_fraud serve --run RUN`` in its own process, the stream
   replayer (`stream.direct.replay_direct`) POSTing straight to ``/v1/score``; once with the
   Feast online store on SQLite (the run's file) and once on Redis (127.0.0.1:6379, a copy of
   the run materialised into its own Feast project, as the serving services test does);
2. ``stream``: the same transactions published to a Redis Stream read by a consumer group of two
   ``stream-consumer`` processes (`stream.group`, `stream.producer`), on both online stores;
3. ``ray``: the same service deployed on Ray Serve (`serving.ray_app.application`, the
   ``serving.ray`` autoscaling settings) with a ramp up, a plateau at the offered rate and a
   ramp down, Ray Serve's replica count polled throughout (table + PNG).

Every scenario writes to a fresh SQLite audit log, checked after the run: exactly one entry per
transaction sent (ids equal, count equal). Each run folder is a private copy (the consumers push
card activity to the online store). Latency is end to end, from each transaction's scheduled
send time to its decision, so a service that falls behind shows it. Load average (1 min) is
recorded before and after: the machine is shared. ``--only uvicorn workers stream ray`` picks
scenarios (``workers``: the API with its card state in Redis, ``serving.ledger_url``, on one and
on two uvicorn worker processes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.atomic import atomic_write_json, atomic_write_text, json_safe  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "level4_load"
SECTION = ROOT / "benchmarks" / "sections" / "level4_load.md"
FIGURE = ROOT / "benchmarks" / "figures" / "level4_load_replicas.png"
DEFAULT_RUN = ROOT / "level4_fraud" / "artifacts" / "run-quick"
REDIS_URL = "redis://127.0.0.1:6379/0"
API_KEY = "load-test-key"
HASH_KEY = "load-test-hash-key-" + "0" * 16
CONSUMERS = 2
GRACE_S = 15.0  # after the offered window, how long the stream's backlog may drain


@dataclass
class Outcome:
    """One scenario's figures."""

    name: str
    engine: str
    store: str
    offered_tps: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_kinds: str = "none"
    achieved_tps: float = 0.0
    p50: float = float("nan")
    p95: float = float("nan")
    p99: float = float("nan")
    max_ms: float = float("nan")
    backlog: int = 0
    replayed: int = 0
    audit_count: int = -1
    audit_exact: bool = False
    audit_unacked: int = 0
    audit_expected: int = 0
    server_cpu_ms: float = float("nan")
    startup_s: float = float("nan")
    failure: str = ""
    workers: int = 1
    ledger: str = "in process"


@dataclass
class Timeline:
    """Ray Serve's replicas over a ramp: ``(seconds, offered tps, running, starting, stopping)``."""

    samples: list[tuple[float, float, int, int, int]] = field(default_factory=list)
    steps: list[tuple[float, float]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# inputs


def replay_bodies(run_dir: Path, n: int) -> tuple[list[bytes], list[int]]:
    """The last `n` transactions of the run's data (time order), as request bodies, and their ids."""
    from level4_fraud.stream.replay import encode, load_replay, payloads

    folder = run_dir / "data" / "transactions"
    days = sorted(p.stem for p in folder.glob("*.parquet"))
    # enough whole days for n transactions (about 3,300 a day in the quick simulation)
    start = days[max(0, len(days) - 1 - n // 2500 - 1)]
    tx = load_replay(folder, start=start).tail(n).reset_index(drop=True)
    return [encode(p) for p in payloads(tx)], [int(i) for i in tx["TRANSACTION_ID"]]


def private_run(src: Path, dest: Path) -> Path:
    """A copy of the run folder without its serving state (audit log, key)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("serving", "report.html", "figures"))
    return dest


def redis_store(run_dir: Path) -> tuple[Any, dict[str, str]]:
    """Materialise the run's features into Redis under a project of its own.

    Returns:
        The `FraudFeatureStore` (to tear down) and the ``feature_store`` settings as env variables.
    """
    import io
    import warnings

    import pandas as pd

    from level4_fraud import data
    from level4_fraud.feature_store import FeatureStoreConfig, FraudFeatureStore

    project = f"l4load_{uuid.uuid4().hex[:10]}"
    store = FraudFeatureStore(run_dir, FeatureStoreConfig(project=project, redis_url=REDIS_URL))
    tx = data.read_fdh_folder(run_dir / "data" / "transactions")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.apply()
        end = tx["TX_DATETIME"].max().normalize() + pd.Timedelta(days=1)
        store.materialize(tx["TX_DATETIME"].min().to_pydatetime(), end.to_pydatetime())
    return store, {"L4__FEATURE_STORE__PROJECT": project, "L4__FEATURE_STORE__REDIS_URL": REDIS_URL}


def audit_env(folder: Path) -> tuple[str, dict[str, str]]:
    """A fresh audit log in `folder`: its URL and the env variables pointing the service at it."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("audit.db*"):
        old.unlink()
    url = f"sqlite:///{folder / 'audit.db'}"
    return url, {"L4__SERVING__AUDIT_URL": url, "L4__SERVING__AUDIT_HASH_KEY": HASH_KEY}


def check_audit(url: str, sent: Sequence[int], decided: Sequence[int] | None, out: Outcome) -> None:
    """Exactly once: every decided transaction has one entry, and nothing outside those sent is
    logged (the ids are the log's key, so an id is never there twice). `decided` None: every sent
    transaction was answered, so the log must hold exactly the sent ids. Entries beyond the
    decided ones (a consumer stopped between its audit append and its result) are counted."""
    from level4_fraud.serving.audit import AuditLog

    log = AuditLog.open(url, HASH_KEY.encode())
    try:
        logged = log.transaction_ids()
        out.audit_count = log.count()
    finally:
        log.close()
    expected = set(sent if decided is None else decided)
    have = set(logged)
    out.audit_unacked = len(have - expected)
    out.audit_expected = len(expected)
    out.audit_exact = len(logged) == len(have) == out.audit_count and expected <= have and have <= set(sent)


class UntilDeadline(Sequence[bytes]):
    """Bodies that the replayer iterates only until `seconds` after it starts: on a service slower
    than the offered rate the replay stops at the window's end instead of running until the whole
    backlog is served (the sends it could not make are the backlog)."""

    def __init__(self, bodies: Sequence[bytes], seconds: float) -> None:
        self.bodies, self.seconds, self.yielded = bodies, seconds, 0

    def __len__(self) -> int:
        return len(self.bodies)

    def __getitem__(self, i: Any) -> Any:
        return self.bodies[i]

    def __iter__(self) -> Iterator[bytes]:
        end = time.perf_counter() + self.seconds
        for body in self.bodies:
            if time.perf_counter() > end:
                return
            self.yielded += 1
            yield body


def replay_window(url: str, bodies: Sequence[bytes], tps: float, seconds: float, out: Outcome | None) -> int:
    """`stream.direct.replay_direct` for at most `seconds` (+ the answers in flight then); fills
    `out` (when given) and returns how many transactions were sent."""
    from level4_fraud.stream.direct import replay_direct

    window = UntilDeadline(bodies, seconds)
    stats = replay_direct(window, url=url, api_key=API_KEY, tps=tps)
    if out is not None:
        fill(out, stats)
        out.sent, out.backlog = window.yielded, len(bodies) - window.yielded
    return window.yielded


def fill(out: Outcome, stats: Any) -> None:
    """Copy a `ReplayStats` into `out`."""
    out.sent, out.ok, out.errors = stats.sent, stats.ok, stats.errors
    out.error_kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.error_kinds.items())) or "none"
    out.achieved_tps = stats.achieved_tps
    out.p50, out.p95, out.p99 = stats.percentile(50), stats.percentile(95), stats.percentile(99)
    out.max_ms = max(stats.latencies_ms) if stats.latencies_ms else float("nan")
    out.replayed = stats.replayed


def tree_cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes and their children (0 for a gone process)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
        except psutil.Error:
            continue
    return total


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    """Set env variables for a block (in-process config reads and Ray workers see them)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------------------------
# scenarios


def run_uvicorn(
    run_dir: Path,
    bodies: list[bytes],
    ids: list[int],
    tps: float,
    store_env: dict[str, str],
    workers: int = 1,
    shared_ledger: bool = False,
) -> Outcome:
    """The API on uvicorn (`workers` processes; the card state in Redis when `shared_ledger`),
    the replayer posting straight to it."""
    from shared.process import free_port, start_process, stop_process_tree, wait_http_ready

    store = "redis" if store_env else "sqlite"
    name = f"uvicorn_{store}" + ("_ledger" if shared_ledger else "") + (f"_{workers}w" if workers > 1 else "")
    out = Outcome(
        name, "uvicorn", store, tps, workers=workers, ledger="Redis" if shared_ledger else "in process"
    )
    work = WORK / out.name
    url_audit, env = audit_env(work)
    if shared_ledger:
        env["L4__SERVING__LEDGER_URL"] = REDIS_URL
        clear_ledger(run_dir)  # the ledger outlives the service: a rerun must start from the history
    port = free_port()
    cmd = [sys.executable, "-m", "level4_fraud", "serve", "--run", str(run_dir), "--port", str(port)]
    cmd += ["--api-key", API_KEY, "--workers", str(workers)]
    t0 = time.monotonic()
    proc = start_process(cmd, env={**os.environ, **env, **store_env}, cwd=ROOT, log_path=work / "server.log")
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", proc=proc, timeout_s=240)
        out.startup_s = time.monotonic() - t0
        cpu0 = tree_cpu_s([proc.pid])
        replay_window(f"http://127.0.0.1:{port}", bodies, tps, len(bodies) / tps, out)
        out.server_cpu_ms = (tree_cpu_s([proc.pid]) - cpu0) * 1000.0 / max(out.ok, 1)
    except Exception as exc:  # a scenario's failure is a finding, reported; the others still run
        out.failure = f"{type(exc).__name__}: {exc}"
    finally:
        stop_process_tree(proc)
        if shared_ledger:
            clear_ledger(run_dir)
    check_audit(url_audit, ids[: out.sent], None if out.errors == 0 else [], out)
    return out


def clear_ledger(run_dir: Path) -> None:
    """Delete the run's card ledger in Redis (`serve --run` names it after the run folder)."""
    from level4_fraud.serving.redis_ledger import RedisCardLedger, connect_ledger, ledger_namespace

    RedisCardLedger(connect_ledger(REDIS_URL), ledger_namespace(run_dir.name)).clear()


def run_stream(
    run_dir: Path, bodies: list[bytes], ids: list[int], tps: float, store_env: dict[str, str]
) -> Outcome:
    """Published to a Redis Stream, decided by a consumer group of `CONSUMERS` processes."""
    from level4_fraud.stream.group import ConsumerProcesses, consumer_command, consumer_names
    from level4_fraud.stream.producer import (
        BrokerError,
        connect,
        ensure_group,
        publish,
        read_all,
        stats_from_results,
        wait_drained,
    )

    store = "redis" if store_env else "sqlite"
    out = Outcome(f"stream_{store}", "stream", store, tps)
    work = WORK / out.name
    url_audit, env = audit_env(work)
    key, group = f"l4load:{uuid.uuid4().hex[:10]}", "scorers"
    reply = f"{key}:results"
    env |= {"L4__STREAM__KEY": key, "L4__STREAM__GROUP": group, **store_env}
    client = connect(REDIS_URL)
    ensure_group(client, key, group)
    names = consumer_names(CONSUMERS, prefix=f"l4load-{os.getpid()}-{store}")
    commands = {n: consumer_command(run_dir, REDIS_URL, n, "quick", None) for n in names}
    t0 = time.monotonic()
    published = None
    procs = ConsumerProcesses(commands, work / "logs", env={**os.environ, **env})
    try:
        procs.wait_joined(client, key, group, 240)
        out.startup_s = time.monotonic() - t0
        pids = [p.pid for p in procs.procs.values()]
        cpu0 = tree_cpu_s(pids)
        published = publish(client, key, bodies, tps=tps, reply=reply)
        with contextlib.suppress(BrokerError):  # not drained within the grace: the rest is backlog
            wait_drained(client, key, group, published.last_id, timeout_s=GRACE_S, alive=procs.alive)
        out.server_cpu_ms = (tree_cpu_s(pids) - cpu0) * 1000.0
    except Exception as exc:  # reported in the section
        out.failure = f"{type(exc).__name__}: {exc}"
    finally:
        procs.stop(client, key, group)
    decided: list[int] = []
    if published is not None:
        results = read_all(client, reply)
        stats = stats_from_results(results, published, tps)
        fill(out, stats)
        missing = stats.error_kinds.pop("no result", 0)
        out.errors -= missing
        out.backlog = missing
        out.error_kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.error_kinds.items())) or "none"
        out.server_cpu_ms /= max(out.ok, 1)
        decided = [int(r["id"]) for _, r in results if not r.get("error") and r.get("id", "").isdigit()]
    client.delete(key, reply)
    client.close()
    check_audit(url_audit, ids, decided, out)
    return out


def replica_counts() -> tuple[int, int, int]:
    """Running, starting and stopping replicas of the scoring deployment (Ray Serve's status)."""
    from ray import serve

    from level4_fraud.serving.ray_app import APPLICATION, DEPLOYMENT

    app = serve.status().applications.get(APPLICATION)
    if app is None or DEPLOYMENT not in app.deployments:
        return 0, 0, 0
    states = {str(getattr(k, "value", k)): v for k, v in app.deployments[DEPLOYMENT].replica_states.items()}
    return states.get("RUNNING", 0), states.get("STARTING", 0), states.get("STOPPING", 0)


def poll_replicas(timeline: Timeline, start: float, offered: list[float], stop: threading.Event) -> None:
    """Sample the replica counts every half second until `stop`."""
    while not stop.wait(0.5):
        with contextlib.suppress(Exception):  # a status call racing shutdown: skip the sample
            running, starting, stopping = replica_counts()
            timeline.samples.append((time.monotonic() - start, offered[0], running, starting, stopping))


def run_ray(
    run_dir: Path,
    bodies: list[bytes],
    ids: list[int],
    tps: float,
    ramp: list[tuple[float, float]],
    shared_ledger: bool = False,
) -> tuple[Outcome, Timeline]:
    """Ray Serve (in this process's private Ray), a ramp of offered rates; the plateau at `tps`
    gives the throughput and latency, the whole ramp the replica timeline. `shared_ledger`: the
    card state in Redis, so a replica that starts under load reads no history."""
    from ray import serve as ray_serve

    from level4_fraud.config import FraudConfig
    from level4_fraud.distributed.cluster import ray_session
    from level4_fraud.serve import serving_config
    from level4_fraud.serving.ray_app import APPLICATION, application
    from shared.cli import load_level_config
    from shared.process import free_port, wait_http_ready

    ledger = "Redis" if shared_ledger else "in process"
    name = "ray_sqlite" + ("_ledger" if shared_ledger else "")
    out, timeline = Outcome(name, "ray", "sqlite", tps, ledger=ledger), Timeline()
    url_audit, env = audit_env(WORK / out.name)
    if shared_ledger:
        env["L4__SERVING__LEDGER_URL"] = REDIS_URL
        clear_ledger(run_dir)
    port = free_port()
    used: list[int] = []
    with environment(env):
        cfg = load_level_config(FraudConfig, "quick", None, log_level="WARNING")
        scfg = serving_config(cfg, port=port)
        t0 = time.monotonic()
        try:
            with ray_session(cfg.ray):
                ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
                try:
                    app = application(
                        run_dir, scfg, api_key=API_KEY, feature_store=cfg.feature_store_config()
                    )
                    ray_serve.run(app, name=APPLICATION, route_prefix="/", blocking=False)
                    wait_http_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=240)
                    out.startup_s = time.monotonic() - t0
                    used = ramp_replay(port, bodies, ramp, tps, out, timeline)
                finally:
                    ray_serve.shutdown()
        except Exception as exc:  # reported in the section
            out.failure = f"{type(exc).__name__}: {exc}"
    if shared_ledger:
        clear_ledger(run_dir)
    check_audit(url_audit, ids[: len(used)], None if out.errors == 0 else [], out)
    return out, timeline


def ramp_replay(
    port: int,
    bodies: list[bytes],
    ramp: list[tuple[float, float]],
    tps: float,
    out: Outcome,
    timeline: Timeline,
) -> list[int]:
    """Replay `ramp`'s steps ``(tps, seconds)`` back to back (0 tps: idle), polling the replicas.

    Returns the indexes of the bodies sent (consecutive from 0)."""
    offered = [0.0]
    stop = threading.Event()
    start = time.monotonic()
    poller = threading.Thread(target=poll_replicas, args=(timeline, start, offered, stop), daemon=True)
    poller.start()
    sent = 0
    try:
        for rate, seconds in ramp:
            offered[0] = rate
            timeline.steps.append((time.monotonic() - start, rate))
            if rate <= 0:
                time.sleep(seconds)
                continue
            chunk = bodies[sent : sent + int(rate * seconds)]
            plateau = rate == tps and out.sent == 0
            sent += replay_window(f"http://127.0.0.1:{port}", chunk, rate, seconds, out if plateau else None)
        offered[0] = 0.0
        timeline.steps.append((time.monotonic() - start, 0.0))
        time.sleep(1.0)
    finally:
        stop.set()
        poller.join(timeout=5)
    return list(range(sent))


# --------------------------------------------------------------------------------------------
# report


def plot_timeline(timeline: Timeline, path: Path) -> Path | None:
    """Replicas (running) and offered rate over the ramp, as a PNG."""
    if not timeline.samples:
        return None
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from shared.plotting import PALETTE, save_png, set_theme

    set_theme()
    t = [s[0] for s in timeline.samples]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.step(t, [s[2] for s in timeline.samples], where="post", color=PALETTE[0], label="running replicas")
    ax.step(t, [s[3] for s in timeline.samples], where="post", color=PALETTE[2], ls=":", label="starting")
    ax.set_xlabel("seconds since the ramp started")
    ax.set_ylabel("replicas")
    ax.set_ylim(0, max(max(s[2] + s[3] for s in timeline.samples), 1) + 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    offered = [s[1] for s in timeline.samples]
    ax2.step(t, offered, where="post", color=PALETTE[1], alpha=0.7, label="offered tx/s")
    ax2.set_ylabel("offered transactions/s")
    ax2.set_ylim(0, max(max(offered), 1) * 1.15)
    ax2.grid(False)
    lines = ax.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=9)
    ax.set_title("Ray Serve replicas under a ramp of offered load")
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(fig, path)


def timeline_rows(timeline: Timeline) -> list[tuple[float, float, int, int, int]]:
    """The samples where something changed (offered rate or replica counts), plus the last."""
    rows: list[tuple[float, float, int, int, int]] = []
    for s in timeline.samples:
        if not rows or s[1:] != rows[-1][1:]:
            rows.append(s)
    if timeline.samples and rows[-1] is not timeline.samples[-1]:
        rows.append(timeline.samples[-1])
    return rows


def fmt(x: float, digits: int = 1) -> str:
    return "–" if x != x else f"{x:,.{digits}f}"


def outcome_table(outcomes: list[Outcome]) -> list[str]:
    lines = [
        "| scenario | online store | offered (tx/s) | sent | decided | backlog at the end | achieved (tx/s) "
        "| p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors | audit entries | audit exactly once "
        "| CPU per tx (ms) | start (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "uvicorn": "API on uvicorn, direct",
        "stream": f"Redis Stream, {CONSUMERS} consumers",
        "ray": "Ray Serve",
    }
    for o in outcomes:
        errors = f"{o.errors:,}" + (f" ({o.error_kinds})" if o.errors else "")
        label = labels[o.engine]
        if o.engine == "uvicorn":
            label += f", {o.workers} worker{'s' if o.workers > 1 else ''}"
        if o.engine != "stream":
            label += f", card state {o.ledger}"
        lines.append(
            f"| {label} | {o.store} | {o.offered_tps:g} | {o.sent:,} | {o.ok:,} | {o.backlog:,} "
            f"| {fmt(o.achieved_tps)} "
            f"| {fmt(o.p50)} | {fmt(o.p95)} | {fmt(o.p99)} | {fmt(o.max_ms, 0)} | {errors} "
            f"| {o.audit_count:,}{f' ({o.audit_unacked} unacknowledged)' if o.audit_unacked else ''} "
            f"| {'yes' if o.audit_exact else 'no'} | {fmt(o.server_cpu_ms, 2)} "
            f"| {fmt(o.startup_s, 0)} |"
        )
    return lines


def target_rows(outcomes: list[Outcome], tps: float) -> list[str]:
    lines = ["| path | online store | 500 tx/s sustained | p99 < 20 ms | no errors | audit exactly once |"]
    lines.append("|---|---|---|---|---|---|")

    def met(ok: bool, value: str) -> str:
        return f"{'met' if ok else 'not met'} ({value})"

    for o in outcomes:
        if o.failure and o.sent == 0:
            lines.append(f"| {o.engine} | {o.store} | not measured | – | – | – |")
            continue
        # sustained: decisions keep up with the offered rate (within 2%) and nothing was lost
        sustained = o.achieved_tps >= 0.98 * tps and o.ok == o.sent and o.backlog == 0
        path = f"uvicorn ×{o.workers}" if o.engine == "uvicorn" else o.engine
        path += f", card state {o.ledger}" if o.engine != "stream" else ""
        lines.append(
            f"| {path} | {o.store} | {met(sustained, fmt(o.achieved_tps) + ' tx/s')} "
            f"| {met(o.p99 < 20, fmt(o.p99) + ' ms')} | {met(o.errors == 0, f'{o.errors:,}')} "
            f"| {met(o.audit_exact, f'{o.audit_count:,} entries for {o.audit_expected:,} decided')} |"
        )
    return lines


def render(
    outcomes: list[Outcome], timelines: dict[str, Timeline], plan: dict[str, Any], figures: dict[str, Path]
) -> str:
    from benchmarks.run import machine

    tps = plan["tps"]
    out = [
        "## Level 4 — fraud scoring under load",
        "",
        f"Written by `make load-test-level4` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Machine: {machine()}.",
        "",
        workload(plan),
        "",
        *outcome_table(outcomes),
        "",
    ]
    failures = [f"- `{o.name}`: {o.failure}" for o in outcomes if o.failure]
    if failures:
        out += ["Failures:", "", *failures, ""]
    out += ray_part(outcomes, timelines, plan, figures)
    out += [
        f"Targets (issue 12, on this machine; sustained = decisions at >= 98% of {tps:g} tx/s, none lost):",
        "",
    ]
    out += target_rows(outcomes, tps)
    return "\n".join(out) + "\n"


def workload(plan: dict[str, Any]) -> str:
    """The paragraph saying what was measured, how, and on what machine load."""
    return (
        f"Workload: the last {plan['n']:,} transactions of the quick run's simulation (`{plan['run']}`), "
        f"in time order, offered open loop at {plan['tps']:g} transactions/s for {plan['duration']:g} s by "
        "the stream replayer (aiohttp; requests leave at their scheduled times, at most 64 in flight; "
        "latency is end to end, from each transaction's scheduled time to its decision, so falling behind "
        "shows in the percentiles). A replay stops sending when its window ends: what was due but not yet "
        f"sent (direct) or not yet decided {GRACE_S:g} s after the window (stream) is the backlog, not in "
        "the percentiles. The API is `python -m level4_fraud serve` (uvicorn: one process with the card "
        "state in it, or with it in Redis, `serving.ledger_url`, on one and on two `--workers`); the stream "
        f"path publishes to a Redis Stream read by a consumer group of {CONSUMERS} `stream-consumer` "
        "processes, which push card activity to the online store and acknowledge once the audit log holds "
        "the decision. Online store: the run's SQLite file, or Redis 127.0.0.1:6379 (a copy of the run "
        "materialised into its own Feast project). Every scenario writes a fresh SQLite audit log (WAL, "
        "synchronous=FULL), checked after the run. The replayer, the servers and Redis share the machine's "
        f"2 cores with other work: machine load average (1 min) {plan['load_before']:.1f} before the run and "
        f"{plan['load_after']:.1f} after it, so every figure is a floor of what an idle machine gives. CPU "
        "per tx: user + system CPU of the server (or both consumers) over the replay, divided by the "
        "decisions. One run per scenario."
    )


def ray_part(
    outcomes: list[Outcome], timelines: dict[str, Timeline], plan: dict[str, Any], figures: dict[str, Path]
) -> list[str]:
    rays = [o for o in outcomes if o.engine == "ray"]
    if not rays:
        return ["Ray Serve: not measured in this run.", ""]
    ray = plan["ray"]
    ramp = ", ".join(f"{r:g} tx/s for {s:g} s" if r else f"idle {s:g} s" for r, s in plan["ramp"])
    out = [
        f"**Ray Serve** (`serving.ray_app`, a private local Ray, autoscaling and admission {ray}): the ramp "
        f"was {ramp}; "
        f"the table's Ray rows are the {plan['tps']:g} tx/s plateau (their CPU column is not measured: "
        "the replicas are Ray workers). Once with each replica's own card state (a replica that starts "
        "reads the whole history folder), once with the card state in Redis (`serving.ledger_url`: the "
        "history was loaded into Redis by the first replica; the next one reads none). The audit check "
        "covers every transaction of the ramp. Replicas as Ray Serve's `serve.status()` reported them, "
        "polled every 0.5 s (rows where something changed):",
        "",
    ]
    for o in rays:
        out += [f"*Card state {o.ledger}:*", ""]
        timeline = timelines.get(o.name)
        if timeline is None or not timeline.samples:
            out += ["No replica samples were taken.", ""]
            continue
        out += ["| t (s) | offered (tx/s) | running | starting | stopping |", "|---|---|---|---|---|"]
        out += [f"| {t:.1f} | {r:g} | {a} | {b} | {c} |" for t, r, a, b, c in timeline_rows(timeline)]
        peak = max(s[2] for s in timeline.samples)
        final = timeline.samples[-1][2]
        first = timeline.samples[0][2]
        out += [
            "",
            f"Replicas: {first} at the start, {peak} at most under load, {final} at the end "
            f"({'rose and fell' if peak > first and final < peak else 'did not both rise and fall'}).",
            "",
        ]
        if o.name in figures:
            out += [
                f"![Ray Serve replicas over the ramp, card state {o.ledger}](figures/{figures[o.name].name})",
                "",
            ]
    return out


# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="Run folder with a servable champion.")
    parser.add_argument("--tps", type=float, default=500.0, help="Offered transactions/s.")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds per scenario.")
    parser.add_argument("--ray-plateau", type=float, default=15.0, help="Seconds of the Ray ramp at --tps.")
    parser.add_argument(
        "--only", nargs="*", default=["uvicorn", "workers", "stream", "ray"], help="Scenarios to run."
    )
    parser.add_argument("--out", type=Path, default=SECTION, help="Markdown section to write.")
    args = parser.parse_args(argv)
    from shared.runtime import configure_environment

    configure_environment()
    if not (args.run / "run.json").is_file():
        print(f"{args.run}: not a level-4 run folder (run `make level4`)", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    tps = args.tps
    ramp = [(tps / 5, 10.0), (tps, args.ray_plateau), (tps / 5, 10.0), (0.0, 50.0)]
    n_ray = int(sum(r * s for r, s in ramp))
    n = int(tps * args.duration)
    bodies, ids = replay_bodies(args.run, max(n, n_ray))
    from level4_fraud.serving.heap import freeze_startup_heap

    load_before = os.getloadavg()[0]
    outcomes: list[Outcome] = []
    timelines: dict[str, Timeline] = {}
    sqlite_run = private_run(args.run, WORK / "run-sqlite")
    redis_run = private_run(args.run, WORK / "run-redis")
    print("materialising the online store into Redis ...", flush=True)
    store, redis_env = redis_store(redis_run)
    # This process is the replayer: no full collection mid-schedule. Frozen after the Redis
    # store is built, whose Feast imports and materialisation add most of the heap. Frozen
    # before it, the first scenario (one uvicorn process, SQLite) measured p99s of 174 and
    # 208 ms in two runs, against 19.7 ms in the run after this change and 16.3 ms with a
    # replayer that never imported Feast (2026-12-08, same machine).
    freeze_startup_heap()
    try:
        for engine in ("uvicorn", "stream"):
            if engine not in args.only:
                continue
            for run_dir, env in ((sqlite_run, {}), (redis_run, redis_env)):
                scenario = run_uvicorn if engine == "uvicorn" else run_stream
                print(f"== {engine} on {'redis' if env else 'sqlite'}", flush=True)
                outcomes.append(scenario(run_dir, bodies[:n], ids[:n], tps, env))
                print(asdict(outcomes[-1]), flush=True)
        if "workers" in args.only:
            # The card state in Redis: its own cost on one worker, then two workers sharing it.
            for workers in (1, 2):
                print(f"== uvicorn, {workers} worker(s), card state in Redis", flush=True)
                outcomes.append(
                    run_uvicorn(redis_run, bodies[:n], ids[:n], tps, redis_env, workers, shared_ledger=True)
                )
                print(asdict(outcomes[-1]), flush=True)
        if "ray" in args.only:
            for shared in (False, True):
                print(f"== ray serve ramp, card state {'in Redis' if shared else 'in process'}", flush=True)
                ray_run = private_run(args.run, WORK / "run-ray")
                ray_outcome, timelines[f"ray_sqlite{'_ledger' if shared else ''}"] = run_ray(
                    ray_run, bodies, ids, tps, ramp, shared_ledger=shared
                )
                outcomes.append(ray_outcome)
                print(asdict(ray_outcome), flush=True)
    finally:
        with contextlib.suppress(Exception):
            store.teardown()
    from level4_fraud.serving.config import RayServeSettings

    plan = {
        "run": args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT) else args.run,
        "tps": tps,
        "duration": args.duration,
        "n": n,
        "ramp": ramp,
        "ray": {
            **RayServeSettings().autoscaling_config(),
            "max_ongoing_requests": RayServeSettings().max_ongoing_requests,
        },
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    figures: dict[str, Path] = {}
    for name, timeline in timelines.items():
        path = FIGURE if name == "ray_sqlite" else FIGURE.with_name(f"level4_load_replicas_{name}.png")
        made = plot_timeline(timeline, path)
        if made is not None:
            figures[name] = made
    text = render(outcomes, timelines, plan, figures)
    atomic_write_text(args.out, text)
    atomic_write_json(
        WORK / "results.json",
        json_safe(
            {
                "plan": {**plan, "run": str(plan["run"])},
                "outcomes": [asdict(o) for o in outcomes],
                "timelines": {k: asdict(v) for k, v in timelines.items()},
            }
        ),
    )
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
