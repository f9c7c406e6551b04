"""Load-test machinery: the traffic model, Locust statistics, targets and a real short run.

The figures themselves are benchmarks (``make load-test-level3``), never asserted here; these
tests check that the traffic has the stated shape, that statistics are read and the targets
computed correctly, and that Locust really drives the ceiling app and the API on loopback.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest

from level3_recsys.loadtest.ceiling import STORE_ENV
from level3_recsys.loadtest.locust_run import finish_locust, start_locust
from level3_recsys.loadtest.report import cpu_rows, render, targets
from level3_recsys.loadtest.results import ScenarioResult, Stats, finite_median, median_results, parse_stats
from level3_recsys.loadtest.scenarios import LoadPlan
from level3_recsys.loadtest.servers import start_server
from level3_recsys.loadtest.traffic import TrafficConfig, ZipfUsers
from level3_recsys.loadtest.workspace import ServingWorkspace
from level3_recsys.serving.reference import ServingReference
from level3_recsys.store import SQLiteStore
from shared.errors import ConfigError
from shared.process import free_port, stop_process_tree, wait_http_ready


# ---------------------------------------------------------------------- traffic model
def test_zipf_users_follow_the_power_law():
    users = ZipfUsers(["a", "b", "c"], s=1.0, cold_share=0.0, rng=random.Random(1))
    n = 60_000
    counts = Counter(users.draw()[0] for _ in range(n))
    # P(rank r) = r^-1 / (1 + 1/2 + 1/3) = 6/11, 3/11, 2/11 over the shuffled ranking
    shares = [counts[u] / n for u in users.ranked]
    assert shares == pytest.approx([6 / 11, 3 / 11, 2 / 11], abs=0.01)
    assert set(counts) == {"a", "b", "c"}


def test_cold_users_come_at_the_stated_share_and_are_new():
    known = [str(i) for i in range(100)]
    users = ZipfUsers(known, s=1.1, cold_share=0.25, rng=random.Random(7))
    draws = [users.draw() for _ in range(20_000)]
    cold = [u for u, is_cold in draws if is_cold]
    assert len(cold) / len(draws) == pytest.approx(0.25, abs=0.01)
    assert not set(cold) & set(known)
    assert all(u in known for u, is_cold in draws if not is_cold)


def test_zipf_ranking_is_shared_and_draws_are_seeded():
    ids = [str(i) for i in range(50)]
    a = ZipfUsers(ids, 1.1, 0.1, random.Random(3))
    b = ZipfUsers(ids, 1.1, 0.1, random.Random(3))
    assert a.ranked == b.ranked  # every client agrees on who the heavy users are
    assert a.ranked != ids  # ... and they are not simply the smallest ids
    assert [a.draw() for _ in range(100)] == [b.draw() for _ in range(100)]


@pytest.mark.parametrize(("ids", "cold"), [([], 0.1), (["1"], 1.5)])
def test_zipf_users_reject_bad_input(ids, cold):
    with pytest.raises(ValueError):
        ZipfUsers(ids, 1.1, cold, random.Random(0))


def test_traffic_config_reads_the_environment(tmp_path):
    users = tmp_path / "users.json"
    users.write_text(json.dumps([5, 6, 7]))
    cfg = TrafficConfig.from_env(
        {
            "L3__LOAD__USERS_FILE": str(users),
            "L3__LOAD__COLD_SHARE": "0.3",
            "L3__LOAD__RATE_PER_CLIENT": "2.5",
            "L3_LOAD_K": "99",  # the name before the L3__SECTION__FIELD convention: not read
        }
    )
    assert cfg.user_ids == ("5", "6", "7")
    assert cfg.cold_share == 0.3 and cfg.rate_per_client == 2.5 and cfg.k == 10


# ---------------------------------------------------------------------- statistics and targets
STATS_HEADER = (
    '"Type","Name","Request Count","Failure Count","Median Response Time","Average Response Time",'
    '"Min Response Time","Max Response Time","Average Content Size","Requests/s","Failures/s",'
    '"50%","66%","75%","80%","90%","95%","98%","99%","99.9%","99.99%","100%"'
)


def test_parse_stats_reads_every_row(tmp_path):
    path = tmp_path / "x_stats.csv"
    path.write_text(
        STATS_HEADER
        + "\nGET,recs:batch,900,0,5,6.1,1,80,700,30.0,0.0,5,6,7,8,10,12,20,31,70,80,80"
        + "\nGET,recs:fallback,100,2,3,3.5,1,20,600,3.3,0.07,3,3,4,4,5,6,9,11,20,20,20"
        + "\n,Aggregated,1000,2,5,5.9,1,80,690,33.3,0.07,5,6,7,8,10,12,19,30,70,80,80\n"
    )
    total, rows = parse_stats(path)
    assert (total.requests, total.failures, total.rps, total.p99) == (1000, 2, 33.3, 30.0)
    assert total.error_rate == pytest.approx(0.002)
    assert rows["recs:batch"].p95 == 12 and rows["recs:fallback"].p99 == 11
    with pytest.raises(ConfigError):
        parse_stats(tmp_path / "missing_stats.csv")


def stats(name, requests, rps, p99, failures=0):
    return Stats(name, requests, failures, rps, p99 / 2, p99 * 0.8, p99, p99 * 2)


def result(name, total, rows=(), events=None, breaker=()):
    return ScenarioResult(name, 30.0, total, {r.name: r for r in rows}, dict(events or {}), list(breaker))


def synthetic_results(close_at: float | None):
    events = {"locust_start_s": 0.5, "killed_s": 23.0, "restart_s": 45.5, "ready_again_s": 60.0}
    breaker = [(0.6, 0), (27.0, 2), (32.0, 1), (32.4, 2)]
    if close_at is not None:
        events["breaker_closed_s"] = close_at
        breaker.append((close_at, 0))
    events["breaker_open_s"] = 27.0
    return {
        "ceiling": result("ceiling", stats("Aggregated", 30000, 1000.0, 12)),
        "cached": result(
            "cached", stats("Aggregated", 18000, 600.0, 40), [stats("recs:batch", 15000, 500.0, 35)]
        ),
        "on_demand_paced": result(
            "on_demand_paced", stats("Aggregated", 1500, 50.0, 150), [stats("recs:model", 1400, 45.0, 140)]
        ),
        "model_killed": result(
            "model_killed",
            stats("Aggregated", 4500, 50.0, 90, failures=3),
            [stats("recs:fallback:breaker_open", 2000, 22.0, 15), stats("recs:model", 2000, 22.0, 90)],
            events,
            breaker,
        ),
    }


def test_targets_are_computed_from_the_right_rows():
    rows = {t: (measured, met) for t, _, measured, met in targets(synthetic_results(close_at=66.5))}
    assert rows["cached throughput / ceiling"] == ("60%", True)
    assert rows["p99, on-demand scoring"] == ("140 ms", False)
    assert rows["errors, cached"] == ("0 (0.00%)", True)
    assert rows["errors, model_killed"] == ("3 (0.07%)", False)
    assert rows["p99 of fallback answers (breaker open)"] == ("15 ms", True)
    assert rows["breaker closed after the model's return"] == ("6.5 s", True)
    assert "p99, cached users" not in rows  # that scenario did not run
    still_open = {t: (m, ok) for t, _, m, ok in targets(synthetic_results(close_at=None))}
    assert still_open["breaker closed after the model's return"] == ("not closed", False)


def test_render_writes_every_scenario_and_the_breaker_timeline():
    ws = ServingWorkspace(
        "/w",
        "sqlite:///m.db",
        "file:///a",
        "reg",
        "sqlite:///s.db",
        "/w/r.json",
        "3",
        "reg/als",
        ["1", "2"],
        1950,
    )
    text = render(synthetic_results(close_at=66.5), ws, LoadPlan(duration_s=30, users=8, rate=50))
    assert "| ceiling: plain FastAPI, precomputed lists | 30,000 | 1,000 | 100% |" in text
    assert "| API, nightly batch (cached users) | 18,000 | 600 | 60% |" in text
    # a paced run's throughput is the offered rate: no ratio to the ceiling there
    assert "| API, on-demand scoring (model service) | 1,500 | 50 | 75 |" in text
    paced_table = "| errors |\n|---|---|---|---|---|---|---|\n| API, on-demand"
    assert paced_table in text
    assert "SIGKILL at 22.5 s, restart at 45.0 s, ready again at 59.5 s" in text
    assert "opened 4.0 s after the kill and closed 6.5 s after the model's return" in text
    assert "`reg/als` v3 over 1,950 items" in text


def test_cpu_per_request_table_compares_servers_whatever_bounds_locust():
    results = synthetic_results(close_at=66.5)
    results["ceiling"].server_cpu_s = 6.0  # 30,000 requests: 0.2 ms each
    results["cached"].server_cpu_s, results["cached"].model_cpu_s = 7.2, 0.9  # 18,000: 0.4 / 0.05 ms
    results["on_demand_paced"].server_cpu_s = 3.0
    results["cached"].server_rss_mib = (180.4, 190.6)
    text = "\n".join(cpu_rows(results))
    assert "| ceiling: plain FastAPI, precomputed lists | 30,000 | 0.200 | – | 100% | – |" in text
    assert "| API, nightly batch (cached users) | 18,000 | 0.400 | 0.050 | 50% | 180 → 191 |" in text
    assert "on-demand" not in text  # paced scenarios are left out: idle work dominates there
    assert cpu_rows(synthetic_results(close_at=None)) == []
    both = median_results([results, results])
    assert both["cached"].cpu_ms_per_request() == pytest.approx(0.4)


def test_finite_median_skips_figures_a_run_could_not_measure():
    nan = float("nan")
    assert finite_median([3.0, nan, 1.0, 2.0]) == 2.0
    assert finite_median([4.0, 1.0, nan, 2.0, 3.0]) == 2.5  # even count: mean of the middle two
    assert finite_median([nan, nan]) != finite_median([nan, nan])  # NaN: nothing was measured


def test_repeated_runs_report_medians_and_the_worst_errors():
    def run(rps, p99, failures, closed_at):
        events = {"killed_s": 20.0, "ready_again_s": 50.0}
        if closed_at is not None:
            events["breaker_closed_s"] = closed_at
        return {
            "cached": result(
                "cached", stats("Aggregated", 1000, rps, p99, failures), [stats("recs:batch", 900, rps, p99)]
            ),
            "model_killed": result("model_killed", stats("Aggregated", 500, 50.0, 30), [], events),
        }

    combined = median_results([run(500.0, 40, 0, 55.0), run(300.0, 90, 4, None), run(400.0, 20, 1, 52.0)])
    cached = combined["cached"]
    assert (cached.total.rps, cached.total.p99, cached.total.failures) == (400.0, 40, 4)
    assert cached.by_name["recs:batch"].p99 == 40 and cached.runs == 3
    killed = combined["model_killed"]
    assert killed.close_times == [5.0, 2.0]
    assert "breaker_closed_s" not in killed.events  # one run never closed: no median hides it
    rows = {t: m for t, _, m, _ in targets(combined)}
    assert rows["breaker closed after the model's return"] == "not closed"


# ---------------------------------------------------------------------- a real short run
@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    rows = pd.DataFrame(
        {
            "user_id": [u for u in range(40) for _ in range(10)],
            "item_id": [500 + (u * 7 + r) % 90 for u in range(40) for r in range(10)],
            "rank": [r + 1 for _ in range(40) for r in range(10)],
            "score": [1.0 - r / 10 for _ in range(40) for r in range(10)],
        }
    )
    store = SQLiteStore(folder / "recs.db")
    store.write_batch([rows], model_name="reg/itemknn", model_version="2", k=10)
    store.close()
    ServingReference(
        model_name="reg/itemknn",
        model_version="2",
        created_at=datetime.now(UTC).isoformat(),
        popular_items=list(range(500, 530)),
        popular_scores=[float(100 - i) for i in range(30)],
        item_bucket={},
        features={},
    ).save(folder / "reference.json")
    (folder / "users.json").write_text(json.dumps([str(u) for u in range(40)]))
    return folder


@pytest.mark.integration
@pytest.mark.parametrize("server", ["ceiling", "api"])
def test_locust_drives_the_server_on_loopback(server, small_store, tmp_path):
    port = free_port()
    store_url = f"sqlite:///{small_store / 'recs.db'}"
    if server == "ceiling":
        factory, env = "level3_recsys.loadtest.ceiling:create_ceiling_app", {STORE_ENV: store_url}
    else:
        factory = "level3_recsys.serving.api:create_app"
        env = {
            "L3__SERVING__API_KEY": "load-key",
            "L3__SERVING__STORE_URL": store_url,
            "L3__SERVING__REFERENCE_PATH": str(small_store / "reference.json"),
            "L3__SERVING__MODEL_SERVICE_URL": f"http://127.0.0.1:{free_port()}",  # down: cold users fall back
        }
    proc = start_server(factory, port, env, tmp_path / "server.log")
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/healthz", proc=proc, timeout_s=60)
        load_env = {
            "L3__LOAD__USERS_FILE": str(small_store / "users.json"),
            "L3__LOAD__API_KEY": "load-key",
            "L3__LOAD__COLD_SHARE": "0.2",
            "L3__LOAD__FEEDBACK": "0.5",
            "L3__LOAD__RATE_PER_CLIENT": "40",
        }
        prefix = tmp_path / "locust"
        locust = start_locust(f"http://127.0.0.1:{port}", users=2, duration_s=5, prefix=prefix, env=load_env)
        res = finish_locust(locust, prefix, 5, server)
    finally:
        stop_process_tree(proc)
    assert res.total.requests >= 20  # a loaded CI machine slows everything; the traffic is what counts
    assert res.total.failures == 0, (tmp_path / "locust.log").read_text()[-2000:]
    names = set(res.by_name)
    assert "feedback" in names
    if server == "ceiling":
        assert names == {"recs:precomputed", "feedback"}
    else:  # known users from the batch, cold users from the fallback (the model service is down)
        assert "recs:batch" in names and "recs:fallback:connect" in names
        assert res.by_name["recs:fallback:connect"].requests < res.by_name["recs:batch"].requests


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "nope"], "unknown scenario"),
        (["--engine", "docker"], "--engine must be one of"),
        (["--items", "5"], "--items must be at least 20"),
        (["--duration", "1"], "--duration must be at least 5 s"),
    ],
)
def test_run_load_rejects_bad_options_with_one_line(args, message):
    from typer.testing import CliRunner

    from level3_recsys.loadtest.run_load import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
