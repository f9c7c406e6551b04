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

The modules, one job each: `workspace` (what is served), `servers` (starting and watching the
servers), `locust_run` (Locust), `scenarios` (what each scenario runs), `results` (figures and
medians), `report` (the Markdown section), and this one (the command line).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from level3_recsys.loadtest.report import render
from level3_recsys.loadtest.results import median_results
from level3_recsys.loadtest.scenarios import DEFAULT_WORKSPACE, SCENARIOS, LoadPlan, run_scenarios
from level3_recsys.loadtest.workspace import open_workspace, prepare_workspace
from level3_recsys.serving.processes import REPO_ROOT
from shared.atomic import atomic_write_json, atomic_write_text, json_safe
from shared.cli import ProfileOpt, handle_user_errors, new_app, run
from shared.errors import ConfigError

DEFAULT_SECTION = REPO_ROOT / "benchmarks" / "sections" / "level3_load.md"


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
    profile: ProfileOpt = "quick",
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
