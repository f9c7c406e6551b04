"""retrain.py: the drift -> retrain -> compare -> promote flow on the simulator's drift event.

The simulation: 600 cards over 80 days with every fraud intensity raised (so a small bank sees
enough of each scenario) and the drift event on day 52 (a new fraud pattern at crypto exchanges,
and every customer spends more, more often, more online). Timeline, in days:

* 52 (``D``): the champion is trained with what is known that morning: the 21 labelled days
  before ``D - 7`` (labels arrive 7 days after the transaction). It is registered as ``champion``.
* ``D - 7 .. D + 1``: drift monitoring against its training reference, with the default
  thresholds (PSI 0.2, KS 0.1).
* 73 (``R = D + 21``): the flow runs: drift persists, 14 days of the new world are labelled, so it
  retrains (21 labelled days, the last 3 held out to compare), compares and promotes.
* ``R .. R + 7``: the test week, which nobody trained on.

The **oracle** is "a model trained with full knowledge of the new pattern": the same recipe
(same models, settings and 21-day span) trained at the same moment ``R`` but with every label up
to ``R`` known — no label delay and no held-out window, so it has seen the 7 most recent days of
the new pattern that the retrain could not see yet. The challenger's test AP must be within 5 %
of the oracle's.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from level4_fraud import retrain as rt
from level4_fraud.monitoring import MonitoringConfig
from level4_fraud.predict import load_run
from level4_fraud.simulate import SimulatorConfig, simulate_to_folder
from level4_fraud.tests.integration_helpers import SMALL_SIM, small_config

D = 52  # the drift day
R = D + 21  # the flow runs
N = R + 7  # simulated days: the test week is [R, N)
START = pd.Timestamp("2018-04-01")
SIM = {**SMALL_SIM, "n_customers": 600, "n_terminals": 1200, "nb_days": N, "drift_day": D, "seed": 7}
SIM["drift_cards_per_day"] = 150.0  # the new pattern: a fifth of the frauds after the drift
MODELS = {
    "models": ["random_forest", "extra_trees"],
    "baselines": {
        "random_forest": {"n_estimators": 40, "n_jobs": 2},
        "extra_trees": {"n_estimators": 40, "n_jobs": 2},
    },
}


def day(k: int) -> pd.Timestamp:
    return START + pd.Timedelta(days=k)


def _cfg(tmp: Path, **overrides: Any):
    return small_config(
        **{**MODELS, "tracking": {"enabled": True}, "artifacts_dir": str(tmp / "artifacts"), **overrides}
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Any]:
    """The simulation and the champion trained on the morning of the drift day (no MLflow yet)."""
    root = tmp_path_factory.mktemp("retrain")
    simulate_to_folder(SimulatorConfig(**SIM), root / "sim")
    cfg = small_config(**MODELS)
    history = rt.known_history(root / "sim", day(D), cfg.features)
    champion = rt.fit_recipe(cfg, history, root / "champion", train_days=21)
    return {"root": root, "data": root / "sim", "champion": champion}


def _ap(scores: dict[str, dict[str, float]], name: str) -> float:
    return scores[name]["average_precision"]


@pytest.mark.slow
def test_drift_is_detected_retrained_and_promoted_within_5_percent_of_the_oracle(world, tmp_path):
    data, champion = world["data"], world["champion"]
    cfg = _cfg(tmp_path)
    first = rt.register_run(cfg, champion.folder, "champion")

    # 1. Detection, with the default thresholds: no alarm on the 7 days before the drift, an
    #    alarm within one day of it.
    monitoring = cfg.section("monitoring", MonitoringConfig)
    _, summary = rt.drift_report(rt.load_history(champion.folder, data, day(D + 2)), monitoring)
    before = summary.loc[summary.index < day(D)]
    assert len(before) == 7 and not before["alarm"].any()
    onset = rt.first_alarm(summary)
    assert onset is not None
    assert day(D) <= onset <= day(D + 1)

    # 2. The champion loses AP after the drift (both weeks unseen by it, labels long arrived).
    known = rt.known_history(data, day(N), cfg.features, spec=champion.spec, labels_as_of=day(N + 30))
    pre = rt.window_scores({"champion": champion}, known, (day(D - 7), day(D)))
    post = rt.window_scores({"champion": champion}, known, (day(D), day(D + 7)))
    assert _ap(post, "champion") < _ap(pre, "champion") - 0.05

    # 3. The flow a week too early waits for labels; at R it retrains and promotes.
    early = rt.retrain_flow(cfg, champion.folder, data, out=tmp_path / "early", as_of=day(D + 10))
    assert early.decision == "waiting_for_labels" and early.challenger is None
    result = rt.retrain_flow(cfg, champion.folder, data, out=tmp_path / "retrain", as_of=day(R))
    assert result.drift_alarm and result.first_alarm is not None and result.first_alarm <= day(D + 1)
    assert result.decision == "promoted"
    assert _ap(result.scores, "challenger") > _ap(result.scores, "champion")
    assert result.registered is not None and result.registered["alias"] == "champion"
    assert int(result.registered["version"]) == int(first["version"]) + 1
    assert rt.registry_version(cfg, "champion") == result.registered["version"]
    record = json.loads((tmp_path / "retrain" / rt.RETRAIN_FILE).read_text())
    assert record["decision"] == "promoted" and record["labelled_days_since_onset"] >= 14

    # 4. On the test week: the challenger beats the champion and is within 5 % of the oracle.
    oracle_history = rt.known_history(
        data, day(R), cfg.features, spec=champion.spec, labels_as_of=day(R + 30)
    )
    oracle = rt.fit_recipe(cfg, oracle_history, tmp_path / "oracle", train_days=21)
    assert result.challenger is not None
    models = {"champion": champion, "challenger": load_run(result.challenger), "oracle": oracle}
    test = rt.window_scores(models, known, (day(R), day(N)))
    print(
        "first alarm",
        result.first_alarm.date(),
        "champion AP pre/post drift",
        round(_ap(pre, "champion"), 4),
        round(_ap(post, "champion"), 4),
        "comparison window",
        {m: round(_ap(result.scores, m), 4) for m in result.scores},
        "test week",
        {m: round(_ap(test, m), 4) for m in models},
    )
    assert _ap(test, "challenger") > _ap(test, "champion")
    assert _ap(test, "challenger") >= 0.95 * _ap(test, "oracle")


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.slow
def test_a_challenger_that_is_not_better_is_not_promoted_and_an_alert_is_raised(world, tmp_path, free_port):
    data, champion = world["data"], world["champion"]
    server = ThreadingHTTPServer(("127.0.0.1", free_port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A crippled recipe (two stumps per forest): a challenger that cannot be better.
    cfg = _cfg(
        tmp_path,
        baselines={
            "random_forest": {"n_estimators": 2, "max_depth": 1},
            "extra_trees": {"n_estimators": 2, "max_depth": 1},
        },
        retrain={"alertmanager_url": f"http://127.0.0.1:{free_port}"},
    )
    first = rt.register_run(cfg, champion.folder, "champion")
    try:
        result = rt.retrain_flow(
            cfg, champion.folder, data, out=tmp_path / "retrain", as_of=day(D + 3), force=True
        )
    finally:
        server.shutdown()
    assert result.decision == "kept_champion"
    assert _ap(result.scores, "challenger") < _ap(result.scores, "champion")
    assert rt.registry_version(cfg, "champion") == first["version"]  # the alias did not move
    assert result.registered is not None and result.registered["alias"] == "challenger"
    alerts = [json.loads(line) for line in (tmp_path / "retrain" / rt.ALERTS_FILE).read_text().splitlines()]
    assert len(alerts) == 1 and alerts[0]["alertname"] == "FraudChallengerNotPromoted"
    assert alerts[0]["alertmanager"] == "sent"
    path, payload = _Receiver.received[-1]
    assert path == "/api/v2/alerts"
    assert payload[0]["labels"] == {
        "alertname": "FraudChallengerNotPromoted",
        "severity": "warning",
        "component": "model",
    }


@pytest.mark.slow
def test_no_drift_and_no_force_stops_before_training(world, tmp_path):
    cfg = small_config(**MODELS, artifacts_dir=str(tmp_path / "artifacts"))
    result = rt.retrain_flow(
        cfg, world["champion"].folder, world["data"], out=tmp_path / "r", as_of=day(D - 1)
    )
    assert result.decision == "no_drift" and not result.drift_alarm and result.challenger is None
    assert not (tmp_path / "r" / rt.CHALLENGER_DIR).exists()
    assert json.loads((tmp_path / "r" / rt.RETRAIN_FILE).read_text())["decision"] == "no_drift"

    # The same through the command line.
    from typer.testing import CliRunner

    from level4_fraud.cli import app

    args = ["retrain", "--run", str(world["champion"].folder), "--data", str(world["data"])]
    res = CliRunner().invoke(app, [*args, "--as-of", str(day(D - 1).date()), "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "no_drift" in res.output and (tmp_path / "cli" / rt.RETRAIN_FILE).is_file()


@pytest.mark.slow
def test_comparison_window_is_the_latest_fully_labelled_days(world):
    history = rt.known_history(world["data"], day(R), small_config().features)
    start, end = rt.comparison_window(history, 3)
    assert (start, end) == (day(R - 7 - 3), day(R - 7))  # labels arrive 7 days after each transaction
    assert rt.labelled_days_since(history, day(D)) == R - 7 - D


def test_promotion_rule():
    assert rt.is_better(0.8, 0.7, 0.0) and not rt.is_better(0.7, 0.7, 0.0)
    assert not rt.is_better(0.75, 0.7, 0.1) and rt.is_better(0.5, float("nan"), 0.0)
    assert not rt.is_better(float("nan"), 0.5, 0.0)


@pytest.mark.slow
def test_monitor_command_prints_the_drift_day_and_bad_input_is_one_line(world, tmp_path):
    from typer.testing import CliRunner

    from level4_fraud.cli import app

    runner = CliRunner()
    args = ["monitor", "--run", str(world["champion"].folder), "--data", str(world["data"])]
    out = tmp_path / "daily.csv"
    res = runner.invoke(app, [*args, "--as-of", str(day(D + 2).date()), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "drift alarms" in res.output and str(day(D).date()) in res.output.split("drift alarms")[1]
    table = pd.read_csv(out, index_col=0)
    assert not table.loc[str(day(D - 1).date()), "alarm"] and table.loc[str(day(D).date()), "alarm"]
    # labels arrive 7 days after the transaction: at D + 2, days up to D - 6 are scored, later ones wait
    assert (
        table.loc[str(day(D - 6).date()), "labels"] == "labelled"
        and table.loc[str(day(D - 6).date()), "AP"] > 0
    )
    pending = [str(day(k).date()) for k in range(D - 5, D + 2)]
    assert (table.loc[pending, "labels"] == "pending").all() and table.loc[pending, "AP"].isna().all()

    bad = runner.invoke(
        app, ["monitor", "--run", str(world["champion"].folder), "--data", str(tmp_path / "none")]
    )
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and "no such folder" in bad.output
    bad_day = runner.invoke(app, [*args, "--as-of", "yesterday-ish"])
    assert bad_day.exit_code == 2 and "--as-of" in bad_day.output
