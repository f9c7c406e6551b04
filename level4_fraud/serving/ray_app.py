"""The scale-out path: the same `ScoringService` and FastAPI app deployed on Ray Serve.

Each replica builds the run's `ScoringService` (scorer, card state, audit log) and its app with
`serving.app.run_app`, as one uvicorn process and each ``--workers`` worker do, and serves it
through ``@serve.ingress`` (the app is built on the replica: ``__serve_build_asgi_app__``).
Replicas scale with ``autoscaling_config`` on the requests each one has in flight.

What changes with several replicas: each keeps its own card state (a card's transactions may
land on different replicas, so its 1-hour counts and first uses are per replica until the
state moves to Redis). Their Prometheus metrics (``engine="ray"``) are shared as the uvicorn
workers' are when the replicas run on this machine (`serve`'s private local Ray): `application`
gives them one multiprocess folder (``PROMETHEUS_MULTIPROC_DIR`` in the replicas' runtime
environment, set before their prometheus_client is imported), so ``/metrics`` through any
replica answers with the sum over every replica, those scaled down included. On a cluster the
replicas sit on several machines: each then answers for itself, and Prometheus scrapes every
pod. The audit log is shared (SQLite in WAL mode takes several writer processes; PostgreSQL when
configured), so idempotency and "acknowledged means audited" hold across replicas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve

from level4_fraud.serving.config import RayServeSettings, plain_values
from level4_fraud.serving.metrics import MULTIPROC_DIR_ENV

DEPLOYMENT = "fraud_scorer"
APPLICATION = "fraud"


class FraudScoringReplica:
    """One replica: the run's service and its FastAPI app (engine label ``ray``).

    Args:
        run_dir: The run folder.
        serving: `ServingConfig` values.
        feature_store: `FeatureStoreConfig` values (None: the run's SQLite store).
        api_key: The key clients send.
        model_version: Reported with each decision.
        metrics_dir: The replicas' shared multiprocess metrics folder (None: this replica's own
            metrics).
    """

    def __init__(
        self,
        run_dir: str,
        serving: dict[str, Any],
        feature_store: dict[str, Any] | None,
        api_key: str,
        model_version: str | None,
        metrics_dir: str | None = None,
    ) -> None:
        from level4_fraud.feature_store import FeatureStoreConfig
        from level4_fraud.serving.app import run_app
        from level4_fraud.serving.config import ServingConfig
        from level4_fraud.serving.metrics import ServiceMetrics

        # Decisions in worker threads, not on the replica's event loop: that loop also carries
        # Ray Serve's own request and metrics traffic, and deciding on it cut the replicas'
        # throughput at the load test's 500 tx/s plateau from 69 to 12 tx/s.
        cfg = ServingConfig.model_validate({**serving, "decide_on_loop": False})
        fs = FeatureStoreConfig.model_validate(feature_store) if feature_store else None
        metrics = ServiceMetrics(multiprocess_dir=Path(metrics_dir)) if metrics_dir else None
        self._asgi = run_app(
            Path(run_dir),
            cfg,
            api_key=api_key,
            feature_store=fs,
            model_version=model_version,
            metrics=metrics,
            engine="ray",
        )
        from level4_fraud.serving.heap import freeze_startup_heap

        freeze_startup_heap()

    def __serve_build_asgi_app__(self) -> Any:
        return self._asgi


FraudScoringIngress = serve.ingress()(FraudScoringReplica)


def application(
    run_dir: Path,
    serving: Any,
    *,
    api_key: str,
    feature_store: Any = None,
    model_version: str | None = None,
    settings: RayServeSettings | None = None,
    metrics_dir: Path | None = None,
) -> Any:
    """The bound Ray Serve application (``serve.run`` it).

    Args:
        run_dir: The run folder.
        serving: The `ServingConfig`.
        api_key: The key clients send.
        feature_store: The `FeatureStoreConfig` (None: the run's SQLite store).
        model_version: Reported with each decision.
        settings: Replicas and autoscaling.
        metrics_dir: A multiprocess metrics folder every replica can write into (a local Ray:
            `metrics.worker_metrics_dir`), so each ``/metrics`` answers for all of them; None:
            each replica answers for itself.
    """
    settings = settings or serving.ray
    actor_options: dict[str, Any] = {"num_cpus": settings.replica_cpus}
    if metrics_dir is not None:
        # In the replica's environment from its start: prometheus_client picks its mode on import.
        actor_options["runtime_env"] = {"env_vars": {MULTIPROC_DIR_ENV: str(metrics_dir)}}
    deployment = serve.deployment(
        FraudScoringIngress,
        name=DEPLOYMENT,
        autoscaling_config=settings.autoscaling_config(),
        ray_actor_options=actor_options,
        max_ongoing_requests=settings.max_ongoing_requests,
    )
    fs = feature_store.model_dump(mode="json") if feature_store is not None else None
    return deployment.bind(
        str(Path(run_dir).resolve()),
        plain_values(serving),
        fs,
        api_key,
        model_version,
        metrics_dir=None if metrics_dir is None else str(metrics_dir),
    )


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for ``serve run level4_fraud.serving.ray_app:build_app`` and KubeRay's
    RayService (its ``import_path``): the same settings the uvicorn service reads.

    The level's config comes from ``L4__*`` environment variables (``L4__SERVING__API_KEY``,
    ``L4__SERVING__AUDIT_URL``, ...), as for ``python -m level4_fraud serve``; the application's
    ``args`` may add ``run`` (a run folder; default: the registered champion's, as ``serve``),
    ``profile`` and ``config`` (a config file).

    Args:
        args: The Serve application's ``args`` mapping.

    Returns:
        The bound application (deployment `DEPLOYMENT`).
    """
    from level4_fraud.config import FraudConfig
    from level4_fraud.serve import resolve_run, serving_config
    from level4_fraud.serving.config import resolve_api_key
    from shared.config import load_config

    cfg = load_config(FraudConfig, profile=args.get("profile"), path=args.get("config"))
    scfg = serving_config(cfg)
    run = args.get("run")
    run_dir, version = resolve_run(cfg, Path(run) if run else None)
    return application(
        run_dir,
        scfg,
        api_key=resolve_api_key(scfg),
        feature_store=cfg.feature_store_config(),
        model_version=version,
    )
