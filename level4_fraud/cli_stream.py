"""``stream``: replay transactions in time order to the scoring service, directly or through a
Redis Stream read by a consumer group; ``stream-consumer``: one scorer of that group.

    python -m level4_fraud stream --tps 500 [--data DIR | --fdh-folder DIR] [--limit N]
        [--url http://127.0.0.1:PORT --api-key KEY]                      # direct to the API
        [--broker redis://127.0.0.1:6379/0 --consumers N] [--run RUN]   # through Redis Streams

Both print what they measured: transactions sent and decided, errors, achieved rate, end-to-end
latency p50/p99 (from each transaction's scheduled time to its decision).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.cli import ConfigOpt, OutOpt, ProfileOpt, RunOpt, handle_user_errors, load_level_config, say

if TYPE_CHECKING:
    from level4_fraud.config import FraudConfig
    from level4_fraud.stream.config import StreamConfig
    from level4_fraud.stream.consumer import Decider, FeatureSink
    from level4_fraud.stream.stats import ReplayStats

log = logging.getLogger(__name__)

BrokerOpt = Annotated[
    str | None,
    typer.Option(
        "--broker", help="Redis Stream broker, redis://127.0.0.1:6379/0 (default: call the API directly)."
    ),
]


def _config(profile: str, config: Path | None, **stream: Any) -> FraudConfig:
    from level4_fraud.config import FraudConfig

    return load_level_config(FraudConfig, profile, config, {"stream": stream})


def _stream_config(cfg: FraudConfig) -> StreamConfig:
    from level4_fraud.stream.config import StreamConfig

    return cfg.section("stream", StreamConfig)


def _resolve_run(run: Path | None, cfg: FraudConfig) -> Path:
    from level4_fraud.cli import _resolve_run as newest_run

    return newest_run(run, cfg)


@handle_user_errors
def stream(
    tps: Annotated[float | None, typer.Option("--tps", help="Transactions per second (default 500).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="A `generate` folder to replay.")] = None,
    fdh_folder: Annotated[
        Path | None, typer.Option("--fdh-folder", help="A Handbook-layout folder of daily files to replay.")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First day to replay, YYYY-MM-DD.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Replay the first N transactions only.")
    ] = None,
    broker: BrokerOpt = None,
    consumers: Annotated[
        int | None, typer.Option("--consumers", help="Scorer processes to start (0: they run elsewhere).")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="Scoring API base URL (direct mode).")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="The API's key (X-API-Key).")] = None,
    run: RunOpt = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Replay transactions in time order at --tps: to the API, or through a Redis Stream.

    Without --broker every transaction is POSTed to --url/v1/score (keep-alive, X-API-Key). With
    it, they are published to the stream and --consumers scorer processes (the model of --run)
    read, score, push card activity to the online store and acknowledge once the audit log holds
    the decision. --out writes the figures as JSON.
    """
    from level4_fraud.stream.replay import encode, load_replay, payloads, replay_folder

    cfg = _config(profile, config, tps=tps, broker=broker, consumers=consumers, url=url, api_key=api_key)
    sc = _stream_config(cfg)
    folder = replay_folder(data, fdh_folder, cfg.paths().raw / "simulation")
    bodies = [encode(p) for p in payloads(load_replay(folder, start=start, limit=limit))]
    say("replaying", f"{len(bodies):,} transactions from {folder} at {sc.tps:g} tps")
    from level4_fraud.serving.heap import freeze_startup_heap

    freeze_startup_heap()  # a full collection of this heap would stall the replay's schedule
    if sc.broker is None:
        stats = _direct(bodies, sc, cfg)
    else:
        stats = _brokered(bodies, sc, cfg, run, profile, config)
    for label, value in stats.summary().items():
        say(label, value)
    if out is not None:
        from shared.atomic import atomic_write_json

        say(
            "wrote",
            atomic_write_json(out, {"mode": "direct" if sc.broker is None else "redis", **stats.summary()}),
        )


def _direct(bodies: list[bytes], sc: StreamConfig, cfg: FraudConfig) -> ReplayStats:
    from level4_fraud.stream.direct import check_ready, replay_direct

    key = sc.api_key or cfg.serving.get("api_key")
    check_ready(sc.url, key)
    say("scoring API", sc.url)
    return replay_direct(
        bodies, url=sc.url, api_key=key, tps=sc.tps, concurrency=sc.concurrency, timeout_s=sc.timeout_s
    )


def _brokered(
    bodies: list[bytes],
    sc: StreamConfig,
    cfg: FraudConfig,
    run: Path | None,
    profile: str,
    config: Path | None,
) -> ReplayStats:
    import uuid

    from level4_fraud.stream.group import ConsumerProcesses, consumer_command, consumer_names
    from level4_fraud.stream.producer import (
        connect,
        ensure_group,
        publish,
        read_all,
        stats_from_results,
        wait_drained,
    )

    assert sc.broker is not None
    client = connect(sc.broker)
    ensure_group(client, sc.key, sc.group)
    procs = None
    if sc.consumers:
        run_dir = _resolve_run(run, cfg)
        names = consumer_names(sc.consumers)
        # Beside the model they score with, so a run kept elsewhere (--run) keeps its own logs.
        log_dir = run_dir / "stream" / datetime.now().strftime("%Y%m%d-%H%M%S")
        port = sc.metrics_port
        commands = {
            n: consumer_command(run_dir, sc.broker, n, profile, config, port + i if port else None)
            for i, n in enumerate(names)
        }
        procs = ConsumerProcesses(commands, log_dir)
        say("consumers", f"{sc.consumers} scoring with {run_dir} (logs: {log_dir})")
    reply = f"{sc.key}:results:{uuid.uuid4().hex[:12]}"
    try:
        if procs is not None:
            procs.wait_joined(client, sc.key, sc.group, sc.ready_timeout_s)
        say("stream", f"{sc.broker} {sc.key} group {sc.group}")
        published = publish(client, sc.key, bodies, tps=sc.tps, maxlen=sc.maxlen, reply=reply)
        alive = procs.alive if procs is not None else (lambda: True)
        wait_drained(client, sc.key, sc.group, published.last_id, timeout_s=sc.drain_timeout_s, alive=alive)
        return stats_from_results(read_all(client, reply), published, sc.tps)
    finally:
        if procs is not None:
            procs.stop(client, sc.key, sc.group)
        client.delete(reply)
        client.close()


@handle_user_errors
def stream_consumer(
    broker: BrokerOpt = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Consumer name, unique in the group (default host-pid).")
    ] = None,
    run: RunOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
    ] = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """One scorer of the stream's consumer group, until SIGTERM: read (XREADGROUP), decide with the
    model of --run, push card activity to the online store, acknowledge (XACK) once the audit log
    holds the decision; entries a dead consumer left pending are claimed (XAUTOCLAIM)."""
    from level4_fraud.stream.consumer import run_consumer_process
    from shared.errors import ConfigError

    cfg = _config(profile, config, broker=broker)
    # The consumer's own events (joined, claimed, stopped) at INFO; libraries stay at WARNING.
    logging.getLogger("level4_fraud.stream").setLevel(logging.INFO)
    sc = _stream_config(cfg)
    if sc.broker is None:
        raise ConfigError("stream-consumer needs --broker (or stream.broker in the config)")
    run_dir = _resolve_run(run, cfg)
    counts = run_consumer_process(
        run_dir,
        sc,
        broker=sc.broker,
        name=name,
        build_decider=lambda path: build_service(path, cfg),
        build_features=lambda path: build_feature_store(path, cfg),
        metrics_port=metrics_port,
    )
    say("consumer", counts)


def build_service(run_dir: Path, cfg: FraudConfig) -> Decider:
    """The run's `ScoringService` with the ``serving`` settings (audit log, thresholds, ...), reading
    the online store the ``feature_store`` section configures (the one card activity is pushed to)."""
    from level4_fraud.serving.config import ServingConfig
    from level4_fraud.serving.service import ScoringService

    serving = cfg.section("serving", ServingConfig)
    return ScoringService.from_run(run_dir, serving, feature_store=cfg.feature_store_config())


def build_feature_store(run_dir: Path, cfg: FraudConfig) -> FeatureSink | None:
    """The run's Feast store, to push card activity to (None when the run has no registry)."""
    from level4_fraud.feature_store import FraudFeatureStore

    store = FraudFeatureStore(run_dir, cfg.feature_store_config())
    if not store.layout.registry.is_file():
        log.warning("%s has no Feast registry: card activity is not pushed", store.layout.root)
        return None
    return store


def register(app: typer.Typer) -> None:
    """Add ``stream`` and ``stream-consumer`` to the level's CLI."""
    app.command("stream")(stream)
    app.command("stream-consumer")(stream_consumer)
