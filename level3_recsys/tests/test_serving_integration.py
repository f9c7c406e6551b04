"""End to end with real processes: a registry of trained models, the model services, the API.

A tiny simulated world trains ``itemknn`` (registered ``champion``) and ``popularity``
(``challenger``); the nightly batch writes part of the users to a SQLite store. The champion
runs in a uvicorn process (the model service's FastAPI twin) and the challenger in a real
``bentoml serve`` process. The API runs in this process over ASGI, with its lifespan.

The breaker test kills (SIGKILL) and freezes (SIGSTOP) the champion's process: the API must
keep answering within its budget from the popularity fallback, open the breaker, and close
it again once the process is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from level3_recsys.serving.api import create_app
from level3_recsys.serving.processes import REPO_ROOT, child_env, start_model_service
from level3_recsys.serving.reference import build_reference
from level3_recsys.serving.settings import ServingSettings
from level3_recsys.serving.shadow import overlap_at_k
from shared.process import (
    free_port,
    read_log_tail,
    signal_tree,
    start_process,
    stop_process_tree,
    wait_http_ready,
)

pytestmark = pytest.mark.integration

KEY = "integration-key"
H = {"X-API-Key": KEY}
BATCH_USERS = 40


@dataclass
class Registry:
    tracking: Any
    champion: Any
    challenger: Any
    data: Any
    reference_path: Path
    store_url: str
    folder: Path


@dataclass
class Service:
    engine: str
    port: int
    model_uri: str
    registry: Registry
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        self.proc = start_model_service(
            self.engine,
            self.port,
            tracking_uri=self.registry.tracking.tracking_uri,
            model_uri=self.model_uri,
            artifact_location=self.registry.tracking.artifact_location,
            log_path=self.log,
        )
        return self

    def wait(self, timeout_s: float = 120.0) -> Service:
        try:
            wait_http_ready(f"{self.url}/readyz", proc=self.proc, timeout_s=timeout_s)
        except RuntimeError:
            tail = read_log_tail(self.log, 3000)
            raise RuntimeError(f"{self.engine} model service failed to start:\n{tail}") from None
        return self


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    from level3_recsys.batch import run_batch
    from level3_recsys.models import build_model
    from level3_recsys.simulate import SimulatorConfig, simulate
    from level3_recsys.tracking import Tracking, log_training_run, register_winner

    folder = tmp_path_factory.mktemp("serving_registry")
    world = simulate(
        SimulatorConfig(n_users=300, n_items=200, new_items_per_day=2, days=8, show_progress=False)
    )
    data = world.interaction_data()
    knn = build_model("itemknn").fit(data)
    pop = build_model("popularity").fit(data)
    tracking = Tracking(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        artifact_location=(folder / "mlartifacts").as_uri(),
        experiment=f"serving-{uuid.uuid4().hex[:6]}",
        registered_model="l3_serving_test",
    )
    # the selection metric only decides the aliases here: itemknn champion, popularity challenger
    runs = [
        log_training_run(
            m, tracking=tracking, params={}, metrics={"score": s}, sample_users=data.user_ids[:3]
        )
        for m, s in ((knn, 0.3), (pop, 0.1))
    ]
    aliases = register_winner(runs, tracking=tracking, metric="score")
    assert aliases == {"champion": "1", "challenger": "2"}
    reference = build_reference(
        knn,
        model_name="l3_serving_test/itemknn",
        model_version="1",
        interactions=data.interactions,
        users=world.users,
    )
    store_url = f"sqlite:///{folder / 'store' / 'recs.db'}"
    batch_users = set(data.user_ids[:BATCH_USERS].tolist())
    run_batch(
        tracking=tracking,
        store_url=store_url,
        interactions=data.interactions[data.interactions["user_id"].isin(batch_users)],
        k=10,
        active_days=None,
        show_progress=False,
    )
    return Registry(tracking, knn, pop, data, reference.save(folder / "reference.json"), store_url, folder)


@pytest.fixture(scope="module")
def services(registry) -> Iterator[dict[str, Service]]:
    """Champion (uvicorn twin) and challenger (real BentoML), started in parallel."""
    name = registry.tracking.registered_model
    started = {
        "champion": Service(
            "uvicorn", free_port(), f"models:/{name}@champion", registry, registry.folder / "m.log"
        ),
        "challenger": Service(
            "bentoml", free_port(), f"models:/{name}@challenger", registry, registry.folder / "c.log"
        ),
    }
    try:
        for svc in started.values():
            svc.start()
        for svc in started.values():
            svc.wait()
        yield started
    finally:
        for svc in started.values():
            if svc.proc is not None:
                stop_process_tree(svc.proc)


def serving_settings(registry: Registry, services: dict[str, Service], **kw) -> ServingSettings:
    base = {
        "api_key": KEY,
        "model_service_url": services["champion"].url,
        "store_url": registry.store_url,
        "reference_path": str(registry.reference_path),
        "model_timeout_s": 1.0,
        "breaker_min_calls": 3,
        "breaker_window_s": 10.0,
        "breaker_open_s": 1.0,
        "breaker_close_after": 2,
    }
    base.update(kw)
    return ServingSettings(**base)


async def with_api(settings: ServingSettings, scenario) -> Any:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await scenario(client, app)


def top_items(model: Any, user: Any, k: int) -> list[Any]:
    return model.recommend([user], k=k, exclude_seen=True)["item_id"].tolist()


def test_end_to_end_batch_model_cold_start_and_shadow(registry, services):
    data = registry.data
    in_batch = data.user_ids[0]
    on_demand = data.user_ids[BATCH_USERS + 5]
    # generous deadlines: this test checks answers, not speed, on a possibly busy machine
    settings = serving_settings(
        registry,
        services,
        challenger_service_url=services["challenger"].url,
        model_timeout_s=10.0,
        shadow_timeout_s=10.0,
    )

    async def scenario(client: httpx.AsyncClient, app) -> dict:
        out = {}
        out["batch"] = (await client.get(f"/v1/recommendations/{in_batch}?k=5", headers=H)).json()
        out["model"] = (await client.get(f"/v1/recommendations/{on_demand}?k=5&device=tv", headers=H)).json()
        out["cold"] = (await client.get("/v1/recommendations/new-user-1?k=5", headers=H)).json()
        async with httpx.AsyncClient(timeout=10) as direct:  # what the model service says of the user
            answer = await direct.post(
                f"{services['champion'].url}/recommend", json={"user_id": "new-user-1"}
            )
            out["cold_from_model"] = answer.json()
        for user in data.user_ids[BATCH_USERS : BATCH_USERS + 6]:
            await client.get(f"/v1/recommendations/{user}?k=5", headers=H)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out["shadow"] = (await client.get("/v1/shadow", headers=H)).json()
            if out["shadow"]["compared"] >= 9:
                break
            await asyncio.sleep(0.05)
        out["metrics"] = (await client.get("/metrics")).text
        out["ready"] = (await client.get("/readyz")).json()
        return out

    out = asyncio.run(with_api(settings, scenario))
    knn = registry.champion
    assert out["batch"]["source"] == "batch" and out["batch"]["model_version"] == "1"
    assert [i["item_id"] for i in out["batch"]["items"]] == top_items(knn, in_batch, 5)
    assert out["model"]["source"] == "model" and out["model"]["cold_start"] is False
    assert out["model"]["model_name"] == "l3_serving_test/itemknn"
    assert [i["item_id"] for i in out["model"]["items"]] == top_items(knn, on_demand, 5)
    # a new user: the batch's cold-start list, the very list the model service gives that user
    assert out["cold"]["cold_start"] is True and out["cold"]["fallback"] is False
    assert out["cold"]["source"] == "batch"
    expected_cold = knn.item_ids_[np.argsort(-knn.fallback_, kind="stable")[:5]].tolist()
    assert [i["item_id"] for i in out["cold"]["items"]] == expected_cold
    assert out["cold_from_model"]["known_user"] is False
    assert [i["item_id"] for i in out["cold_from_model"]["items"][:5]] == expected_cold
    # shadow: the BentoML challenger (popularity) compared with the champion's real lists
    shadow = out["shadow"]
    assert shadow["compared"] == 9 and shadow["errors"] == 0 and shadow["challenger_version"] == "2"
    shadowed = [in_batch, on_demand, "new-user-1", *data.user_ids[BATCH_USERS : BATCH_USERS + 6]]
    overlaps = [overlap_at_k(top_items(knn, u, 5), top_items(registry.challenger, u, 5), 5) for u in shadowed]
    assert shadow["mean_overlap_at_k"] == pytest.approx(np.mean(overlaps))
    assert 'l3_recommendations_total{model_version="1",source="batch"} 2.0' in out["metrics"]
    assert "l3_cold_starts_total 1.0" in out["metrics"]
    assert 'l3_shadow_requests_total{outcome="ok"}' in out["metrics"]
    assert out["ready"]["batch"]["fresh"] is True and out["ready"]["breaker"] == "closed"


def test_breaker_with_killed_and_frozen_model_process(registry, services):
    champion = services["champion"]
    settings = serving_settings(registry, services, store_url=None, model_timeout_s=1.0)
    budget_s = settings.model_timeout_s + 1.5  # the deadline plus slack for a busy 2-core machine
    user = registry.data.user_ids[BATCH_USERS + 1]

    async def ask(client: httpx.AsyncClient) -> tuple[dict, float]:
        start = time.perf_counter()
        r = await client.get(f"/v1/recommendations/{user}?k=5", headers=H)
        assert r.status_code == 200
        return r.json(), time.perf_counter() - start

    async def recover(client: httpx.AsyncClient, app, deadline_s: float = 30.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < deadline_s:
            body, elapsed = await ask(client)
            assert elapsed < budget_s
            if body["source"] == "model" and app.state.serving.breaker.state == "closed":
                return time.monotonic() - start
            await asyncio.sleep(0.1)
        raise AssertionError("breaker did not close after the model service came back")

    async def scenario(client: httpx.AsyncClient, app) -> dict:
        breaker = app.state.serving.breaker
        log: dict[str, Any] = {"warm_up_s": await recover(client, app)}  # the model answers first

        # 1. kill the process: connection refused -> fallback, then the breaker opens
        signal_tree(champion.proc, signal.SIGKILL)
        champion.proc.wait(timeout=10)
        answers = [await ask(client) for _ in range(6)]
        log["killed_reasons"] = [b["fallback_reason"] for b, _ in answers]
        log["killed_max_s"] = max(t for _, t in answers)
        log["killed_state"] = breaker.state
        log["healthz"] = (await client.get("/healthz")).status_code

        # 2. bring it back on the same port: half-open probes close the breaker
        await asyncio.to_thread(lambda: champion.start().wait())
        log["recovered_after_kill_s"] = await recover(client, app)

        # 3. freeze it (SIGSTOP): the port accepts connections but never answers
        signal_tree(champion.proc, signal.SIGSTOP)
        try:
            answers = [await ask(client) for _ in range(5)]
            log["frozen_reasons"] = [b["fallback_reason"] for b, _ in answers]
            log["frozen_max_s"] = max(t for _, t in answers)
            log["frozen_state"] = breaker.state
        finally:
            signal_tree(champion.proc, signal.SIGCONT)
        log["recovered_after_freeze_s"] = await recover(client, app)
        log["metrics"] = (await client.get("/metrics")).text
        return log

    log = asyncio.run(with_api(settings, scenario))
    # the window also holds the healthy call, so the rate trips after two or three refusals
    assert log["killed_reasons"][0] == "connect"
    assert 2 <= log["killed_reasons"].count("connect") <= 3
    assert log["killed_reasons"][-3:] == ["breaker_open"] * 3
    assert log["killed_state"] == "open" and log["healthz"] == 200
    assert log["killed_max_s"] < budget_s
    assert log["frozen_reasons"][0] == "timeout"
    assert log["frozen_reasons"][-2:] == ["breaker_open"] * 2
    assert log["frozen_state"] == "open"
    assert log["frozen_max_s"] < budget_s
    assert 'l3_breaker_transitions_total{breaker="model",to_state="open"} 2.0' in log["metrics"]
    assert 'l3_breaker_transitions_total{breaker="model",to_state="closed"} 2.0' in log["metrics"]
    assert 'l3_breaker_state{breaker="model"} 0.0' in log["metrics"]


def _port_free(port: int) -> bool:
    # SO_REUSEADDR ignores TIME_WAIT leftovers but still fails while anything listens on the port
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_killing_a_bentoml_service_frees_its_port(registry):
    """BentoML's worker runs in a session of its own: a SIGKILL must reach it through the tree."""
    import psutil

    name = registry.tracking.registered_model
    svc = Service(
        "bentoml", free_port(), f"models:/{name}@challenger", registry, registry.folder / "k.log"
    ).start()
    try:
        svc.wait()
        assert not _port_free(svc.port)
        tree = psutil.Process(svc.proc.pid).children(recursive=True)
        assert tree, "bentoml serve started no worker process"
        signal_tree(svc.proc, signal.SIGKILL)
        svc.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
        deadline = time.monotonic() + 10
        while not _port_free(svc.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _port_free(svc.port)
    finally:
        stop_process_tree(svc.proc)

    # the graceful path too: stop_process_tree returns only when the port is free again
    svc.start().wait()
    stop_process_tree(svc.proc)
    assert _port_free(svc.port)


def test_bentoml_build_packages_the_service(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [
            str(Path(os.sys.executable)),
            "-m",
            "bentoml",
            "build",
            "-f",
            "level3_recsys/serving/bentofile.yaml",
            "-o",
            "tag",
            ".",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bentos = list((tmp_path / "bentoml" / "bentos" / "level3_recommender").glob("*/bento.yaml"))
    assert len(bentos) == 1
    bento = bentos[0].parent
    spec = bentos[0].read_text()
    assert "service: level3_recsys.serving.model_service:RecommenderService" in spec
    assert "route: /recommend" in spec
    assert (bento / "src" / "level3_recsys" / "serving" / "scoring.py").is_file()
    assert not list((bento / "src").rglob("test_*.py"))  # tests stay out of the Bento
    assert (bento / "env" / "docker" / "Dockerfile").is_file()


def _recsys_config(tmp_path: Path, registry: Registry | None) -> Any:
    from level3_recsys.config import RecsysConfig
    from shared.config import load_config

    tracking = (
        {
            "tracking_uri": registry.tracking.tracking_uri,
            "artifact_location": registry.tracking.artifact_location,
            "registered_model": registry.tracking.registered_model,
        }
        if registry
        else {}
    )
    return load_config(
        RecsysConfig,
        profile="quick",
        overrides={
            "tracking": tracking,
            "artifacts_dir": str(tmp_path / "artifacts"),
            "data_dir": str(tmp_path / "data"),
        },
        environ={},
    )


def test_serve_plan_writes_reference_and_finds_challenger(tmp_path, registry):
    from level3_recsys.serving.reference import ServingReference
    from level3_recsys.serving.serve import plan

    p = plan(_recsys_config(tmp_path, registry))
    assert p.has_challenger is True
    assert p.store_url is None  # no batch under this artifacts folder yet
    reference = ServingReference.load(p.reference_path)
    assert reference.model_version == "1"
    expected = registry.champion.item_ids_[np.argsort(-registry.champion.fallback_, kind="stable")[:10]]
    assert reference.popular_items[:10] == expected.tolist()


def _config_file(tmp_path: Path, registry: Registry, registered_model: str | None = None) -> Path:
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"artifacts_dir: {tmp_path / 'artifacts'}\ndata_dir: {tmp_path / 'data'}\n"
        f"tracking:\n  tracking_uri: {registry.tracking.tracking_uri}\n"
        f"  registered_model: {registered_model or registry.tracking.registered_model}\n"
    )
    return config


def test_serve_cli_rejects_bad_options_and_missing_champion(tmp_path, registry):
    from typer.testing import CliRunner

    from level3_recsys.serving.cli import app

    runner = CliRunner()
    bad_engine = runner.invoke(app, ["all", "--engine", "docker"])
    assert bad_engine.exit_code == 2 and "--engine must be one of" in bad_engine.output
    same_ports = runner.invoke(app, ["all", "--api-port", "3000"])
    assert same_ports.exit_code == 2 and "must differ" in same_ports.output
    config = _config_file(tmp_path, registry, "nothing_registered")
    empty = runner.invoke(app, ["all", "--config", str(config)])
    assert empty.exit_code == 2 and "no champion in the registry" in empty.output
    no_model = runner.invoke(app, ["model", "--config", str(config), "--alias", "challenger"])
    assert no_model.exit_code == 2 and "no challenger in the registry" in no_model.output


def test_reference_command_writes_the_api_reference(tmp_path, registry):
    from typer.testing import CliRunner

    from level3_recsys.serving.cli import app
    from level3_recsys.serving.reference import ServingReference

    config = _config_file(tmp_path, registry)
    out = tmp_path / "ref.json"
    result = CliRunner().invoke(
        app, ["reference", "--config", str(config), "--out", str(out), "--alias", "challenger"]
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    ref = ServingReference.load(out)
    assert ref.model_version == "2" and ref.model_name.endswith("/popularity")


def test_serve_model_and_serve_api_commands_answer_together(tmp_path, registry):
    """`serve model` runs the challenger alone; `serve api` answers from it with its reference."""
    from level3_recsys.serving.serve import write_reference

    config = _config_file(tmp_path, registry)
    write_reference(_recsys_config(tmp_path, registry), tmp_path / "artifacts" / "serving" / "reference.json")
    model_port, api_port = free_port(), free_port()
    serving = [sys.executable, "-m", "level3_recsys.serving"]
    model = start_process(
        [*serving, "model", "--config", str(config), "--alias", "challenger", "--engine", "uvicorn",
         "--port", str(model_port)],
        env=child_env(), cwd=REPO_ROOT, log_path=tmp_path / "model.log",
    )  # fmt: skip
    api = None
    try:
        wait_http_ready(f"http://127.0.0.1:{model_port}/readyz", proc=model, timeout_s=120)
        api = start_process(
            [*serving, "api", "--config", str(config), "--port", str(api_port)],
            env=child_env(
                {
                    "L3__SERVING__API_KEY": KEY,
                    "L3__SERVING__MODEL_SERVICE_URL": f"http://127.0.0.1:{model_port}",
                    "L3__SERVING__MODEL_TIMEOUT_S": "2.0",
                }
            ),
            cwd=REPO_ROOT,
            log_path=tmp_path / "api.log",
        )
        wait_http_ready(f"http://127.0.0.1:{api_port}/readyz", proc=api, timeout_s=60)
        user = registry.data.user_ids[BATCH_USERS + 1]
        body = httpx.get(f"http://127.0.0.1:{api_port}/v1/recommendations/{user}?k=5", headers=H).json()
        ready = httpx.get(f"http://127.0.0.1:{api_port}/readyz").json()
    finally:
        for proc in (api, model):
            if proc is not None:
                stop_process_tree(proc)
    # the challenger (popularity, version 2) answered; no batch under this artifacts folder yet
    assert (body["source"], body["model_version"]) == ("model", "2"), read_log_tail(tmp_path / "api.log")
    assert [i["item_id"] for i in body["items"]] == top_items(registry.challenger, user, 5)
    assert ready["batch"] is None and ready["fallback_items"] > 0
