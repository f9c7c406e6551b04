"""The load-test scenarios and their run: which server, which traffic, the killed model service.

Each scenario starts its server (the API or the ceiling) on a free port, runs Locust against it
(`locust_run`) and records the servers' CPU and memory (`servers`); `run_scenarios` runs a
plan's scenarios in order and always stops what it started.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from level3_recsys.loadtest.ceiling import STORE_ENV
from level3_recsys.loadtest.locust_run import finish_locust, start_locust
from level3_recsys.loadtest.results import ScenarioResult
from level3_recsys.loadtest.servers import BreakerWatch, ModelService, cpu_seconds, rss_mib, start_server
from level3_recsys.loadtest.workspace import ServingWorkspace
from level3_recsys.serving.processes import API_FACTORY, REPO_ROOT
from level3_recsys.serving.settings import LOAD_ENV_PREFIX
from shared.process import free_port, stop_process_tree, wait_http_ready

DEFAULT_WORKSPACE = REPO_ROOT / "benchmarks" / "work" / "level3_load"
CEILING_FACTORY = "level3_recsys.loadtest.ceiling:create_ceiling_app"


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
    """Start the model service and run every planned scenario; always stops what it started."""
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
                f"{LOAD_ENV_PREFIX}USERS_FILE": str(users_file),
                f"{LOAD_ENV_PREFIX}API_KEY": key,
                f"{LOAD_ENV_PREFIX}RATE_PER_CLIENT": str(pace),
            }
            how = f"{plan.rate:.0f} req/s offered" if spec.paced else "back to back"
            print(f"scenario {spec.name}: {plan.users} clients, {how}, {plan.length(spec):.0f} s", flush=True)
            results[spec.name] = run_scenario(spec, ws, plan, model, api_key=key, load_env=load_env)
            t = results[spec.name].total
            print(
                f"  {t.requests} requests, {t.rps:.0f} req/s, p50 {t.p50:.0f} ms, p99 {t.p99:.0f} ms, "
                f"{t.failures} failures",
                flush=True,
            )
    finally:
        model.stop()
    return results


def run_scenario(
    spec: Scenario,
    ws: ServingWorkspace,
    plan: LoadPlan,
    model: ModelService,
    *,
    api_key: str,
    load_env: dict[str, str],
) -> ScenarioResult:
    """Start the scenario's server on a free port, load it with Locust, stop it.

    The result carries the server's CPU seconds and memory before and after the run (and the
    model service's CPU, except when it was killed and restarted from zero).
    """
    logs = plan.work / "logs"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if spec.server == "ceiling":
        env = {STORE_ENV: ws.store_url}
        factory, log = CEILING_FACTORY, logs / "ceiling.log"
    else:
        env = ws.api_env(api_key=api_key, model_url=model.url, with_batch=spec.batch)
        factory, log = API_FACTORY, logs / f"api_{spec.name}.log"
    server = start_server(factory, port, env, log)
    try:
        wait_http_ready(f"{base}/healthz", proc=server, timeout_s=120)
        prefix = plan.work / f"locust_{spec.name}"
        length = plan.length(spec)
        cpu_before = cpu_seconds(server), cpu_seconds(model.proc)
        rss_before = rss_mib(server)
        if spec.kill_model:
            result = killed_scenario(
                base, model, users=plan.users, duration_s=length, prefix=prefix, load_env=load_env
            )
        else:
            proc = start_locust(base, users=plan.users, duration_s=length, prefix=prefix, env=load_env)
            result = finish_locust(proc, prefix, length, spec.name)
        # server CPU per request: what each server costs, whatever bounds the load generator
        result.server_cpu_s = cpu_seconds(server) - cpu_before[0]
        result.server_rss_mib = (rss_before, rss_mib(server))  # growth under load
        if spec.server == "api" and not spec.kill_model:  # a restarted model starts from zero
            result.model_cpu_s = cpu_seconds(model.proc) - cpu_before[1]
        return result
    finally:
        stop_process_tree(server, timeout_s=15)


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
