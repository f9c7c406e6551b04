"""The load test's Markdown section: throughput, latency, CPU, the breaker timeline and targets.

`render` writes ``benchmarks/sections/level3_load.md`` (stitched into ``benchmarks/results.md``);
`targets` compares the figures with the issue's goals (reported, never asserted in tests).
"""

from __future__ import annotations

import contextlib
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from level3_recsys.loadtest.results import ScenarioResult
from level3_recsys.loadtest.scenarios import SCENARIO_TITLES, SCENARIOS, LoadPlan
from level3_recsys.loadtest.servers import STATE_NAMES
from level3_recsys.loadtest.workspace import ServingWorkspace

# Targets of the issue (numbers reported, never asserted in tests).
TARGET_RATIO = 0.5
TARGET_P99_CACHED_MS = 50.0
TARGET_P99_ON_DEMAND_MS = 100.0
TARGET_P99_FALLBACK_MS = 20.0
TARGET_CLOSE_S = 30.0


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
