"""Start the scoring service with one command: ``python -m level4_fraud serve``.

Which model: ``--run RUN``, else the run folder of the MLflow registry's champion
(``level4_fraud@champion``: its MLflow run is named after the run folder, which is looked up
under the level's artifacts), else — no champion registered yet — the quick profile is trained
first (`pipeline.level4_flow`, about 3 minutes) and served.

Engines: ``uvicorn`` (the latency path: one process holding the card state, or ``--workers N``
processes sharing it in Redis, ``serving.ledger_url``); ``ray`` (Ray
Serve, the scale-out path: `serving.ray_app`, replicas autoscaled; a private local Ray unless
``ray.address`` joins a cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    from level4_fraud.config import FraudConfig
    from level4_fraud.serving.config import ServingConfig

logger = logging.getLogger(__name__)
ENGINES = ("uvicorn", "ray")
WORKER_SPEC_ENV = "L4_SERVE_WORKER_SPEC"


def champion(cfg: FraudConfig) -> tuple[Path, str] | None:
    """``(run folder, model version)`` of the registered champion (None: none is registered).

    Raises:
        InputFileError: A champion is registered but its run folder is not under the artifacts.
    """
    uri, _ = cfg.mlflow_store()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, alias = cfg.tracking.registered_model, cfg.tracking.alias
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception:  # no such model or alias: nothing registered yet
        return None
    run_name = client.get_run(version.run_id).info.run_name if version.run_id else None
    label = f"{name}/v{version.version}"
    artifacts = cfg.paths().artifacts
    found = [
        p.parent for p in artifacts.rglob("run.json") if "mlflow" not in p.parts and p.parent.name == run_name
    ]
    if not found:
        raise InputFileError(
            f"champion {label} was trained in run folder {run_name!r}, not found under {artifacts}; "
            "pass --run"
        )
    newest = max(found, key=lambda p: (p / "run.json").stat().st_mtime)
    return newest, f"{label} ({run_name})"


def resolve_run(cfg: FraudConfig, run: Path | None) -> tuple[Path, str | None]:
    """The run folder to serve and its model version label (see the module docstring)."""
    if run is not None:
        if not (run / "run.json").is_file():
            raise InputFileError(f"{run}: not a level-4 run folder (no run.json)")
        return run, None
    found = champion(cfg)
    if found is not None:
        return found
    from shared.cli import say

    say("champion", "none registered: training the quick profile first (about 3 minutes)")
    from level4_fraud.pipeline import level4_flow

    summary = level4_flow(cfg)
    again = champion(cfg)
    return again if again is not None else (summary.run_dir, None)


def serving_config(cfg: FraudConfig, *, port: int | None = None, workers: int | None = None) -> ServingConfig:
    """The ``serving`` section, with a port and worker count given on the command line."""
    from level4_fraud.serving.config import ServingConfig

    scfg = cfg.section("serving", ServingConfig)
    update = {k: v for k, v in (("port", port), ("workers", workers)) if v is not None}
    return ServingConfig.model_validate({**scfg.model_dump(), **update}) if update else scfg


def check_workers(scfg: ServingConfig, engine: str) -> None:
    """Several uvicorn workers need one card state in Redis (checked before anything is trained).

    Raises:
        ConfigError: ``workers`` > 1 with Ray Serve, or without ``ledger_url``, or no Redis there.
    """
    if scfg.workers == 1:
        return
    if engine != "uvicorn":
        raise ConfigError("--workers is for --engine uvicorn; Ray Serve scales its replicas (serving.ray)")
    if not scfg.ledger_url:
        raise ConfigError(
            f"--workers {scfg.workers} needs serving.ledger_url (redis://...): each worker would "
            "otherwise keep its own copy of every card's recent payments"
        )
    from level4_fraud.serving.redis_ledger import connect_ledger

    connect_ledger(scfg.ledger_url).close()


def build_app(cfg: FraudConfig, run_dir: Path, scfg: ServingConfig, api_key: str, version: str | None) -> Any:
    """The FastAPI app serving `run_dir` (service built: history loaded, models warm)."""
    from level4_fraud.serving.app import run_app

    return run_app(
        run_dir, scfg, api_key=api_key, feature_store=cfg.feature_store_config(), model_version=version
    )


def serve(
    cfg: FraudConfig,
    *,
    run: Path | None = None,
    port: int | None = None,
    api_key: str | None = None,
    engine: str = "uvicorn",
    workers: int | None = None,
) -> None:
    """Resolve the model, build the service, print its URL and key, serve until stopped.

    Raises:
        ConfigError: Unknown engine, bad settings.
        InputFileError: The run folder is missing or incomplete.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    from level4_fraud.serving.config import resolve_api_key

    scfg = serving_config(cfg, port=port, workers=workers)
    check_workers(scfg, engine)
    key = resolve_api_key(scfg, api_key)
    run_dir, version = resolve_run(cfg, run)
    if engine == "ray":
        serve_ray(cfg, run_dir, scfg, key, version)
        return
    if scfg.workers > 1:
        serve_workers(cfg, run_dir, scfg, key, version)
        return
    import uvicorn

    from level4_fraud.serving.heap import freeze_startup_heap

    app = build_app(cfg, run_dir, scfg, key, version)
    freeze_startup_heap()
    _announce(run_dir, app.state.service.scorer.model_version, scfg, key, "uvicorn")
    try:
        uvicorn.run(app, host=scfg.host, port=scfg.port, log_level="warning", access_log=False)
    finally:
        app.state.service.close()


def serve_workers(
    cfg: FraudConfig, run_dir: Path, scfg: ServingConfig, key: str, version: str | None
) -> None:
    """``scfg.workers`` uvicorn worker processes on one port, each building the service in
    `worker_app` from the settings this process resolved (passed in `WORKER_SPEC_ENV`).

    The card state is the shared Redis ledger (`check_workers`); the audit log is shared as in
    Ray Serve (SQLite in WAL mode or PostgreSQL), so idempotency holds across workers. So are
    the Prometheus metrics: the workers write into one fresh multiprocess folder
    (`metrics.worker_metrics_dir`), and ``/metrics`` on any of them answers with the sum of all.
    """
    import json

    import uvicorn

    from level4_fraud.serving.config import plain_values
    from level4_fraud.serving.metrics import MULTIPROC_DIR_ENV, worker_metrics_dir

    # Built once here first: a run the service cannot load fails in one line (uvicorn would
    # restart a worker that raises, again and again), and the card history goes into Redis
    # before the workers start, so none of them waits for another's load.
    build_app(cfg, run_dir, scfg, key, version).state.service.close()
    fs = cfg.feature_store_config()
    spec = {
        "run_dir": str(run_dir.resolve()),
        "serving": plain_values(scfg),
        "feature_store": fs.model_dump(mode="json") if fs is not None else None,
        "api_key": key,
        "version": version,
    }
    _announce(run_dir, version or run_dir.name, scfg, key, f"uvicorn, {scfg.workers} workers")
    with worker_metrics_dir() as metrics_dir:
        spec["metrics_dir"] = str(metrics_dir)
        # The workers are spawned: the environment is how the resolved settings reach them (the
        # secrets in it are readable by this user only, as the L4__SERVING__* variables are),
        # and the only way to put their prometheus_client in multiprocess mode, which it
        # chooses on import, before any code of theirs runs.
        with _environ({WORKER_SPEC_ENV: json.dumps(spec), MULTIPROC_DIR_ENV: str(metrics_dir)}):
            uvicorn.run(
                f"{__name__}:worker_app",
                factory=True,
                workers=scfg.workers,
                host=scfg.host,
                port=scfg.port,
                log_level="warning",
                access_log=False,
            )


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in ``os.environ`` inside the block (the earlier ones back after it)."""
    import os

    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def worker_app() -> Any:
    """The app of one uvicorn worker (`serve_workers`): the service of the spec in
    `WORKER_SPEC_ENV`, its metrics in the workers' shared folder, its audit log closed when the
    worker stops."""
    import json
    import os

    from level4_fraud.feature_store import FeatureStoreConfig
    from level4_fraud.serving.app import run_app
    from level4_fraud.serving.config import ServingConfig
    from level4_fraud.serving.heap import freeze_startup_heap
    from level4_fraud.serving.metrics import ServiceMetrics

    spec = json.loads(os.environ[WORKER_SPEC_ENV])
    scfg = ServingConfig.model_validate(spec["serving"])
    fs = FeatureStoreConfig.model_validate(spec["feature_store"]) if spec["feature_store"] else None
    metrics = ServiceMetrics(multiprocess_dir=Path(spec["metrics_dir"]))
    app = run_app(
        Path(spec["run_dir"]),
        scfg,
        api_key=spec["api_key"],
        feature_store=fs,
        model_version=spec["version"],
        metrics=metrics,
    )
    app.router.on_shutdown.append(app.state.service.close)
    freeze_startup_heap()
    return app


def _announce(run_dir: Path, version: str, scfg: ServingConfig, key: str, engine: str) -> None:
    from shared.cli import say

    say("run", run_dir)
    say("model", version)
    say("engine", engine)
    say("url", f"http://{scfg.host}:{scfg.port}/v1/score")
    say("api key", key)
    say("docs", f"http://{scfg.host}:{scfg.port}/docs")


def serve_ray(cfg: FraudConfig, run_dir: Path, scfg: ServingConfig, key: str, version: str | None) -> None:
    """Deploy the service on Ray Serve (`serving.ray_app`) and block until interrupted."""
    import signal
    import threading

    from ray import serve as ray_serve

    from level4_fraud.distributed.cluster import ray_session
    from level4_fraud.serving.metrics import worker_metrics_dir
    from level4_fraud.serving.ray_app import APPLICATION, application

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # A private local Ray: its replicas share one metrics folder, as uvicorn workers do. A
    # cluster's replicas are on other machines, where this folder is not.
    shared_metrics = worker_metrics_dir() if not cfg.ray.address else nullcontext(None)
    with ray_session(cfg.ray), shared_metrics as metrics_dir:
        ray_serve.start(http_options={"host": scfg.host, "port": scfg.port})
        try:
            app = application(
                run_dir,
                scfg,
                api_key=key,
                feature_store=cfg.feature_store_config(),
                model_version=version,
                metrics_dir=metrics_dir,
            )
            ray_serve.run(app, name=APPLICATION, route_prefix="/", blocking=False)
            _announce(run_dir, version or run_dir.name, scfg, key, "ray")
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
        finally:
            ray_serve.shutdown()
