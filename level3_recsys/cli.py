"""Command line of level 3: ``python -m level3_recsys --help``.

Stages as verbs (`generate`, `split`, `features`, `train`, `evaluate`,
`recommend`, `batch`, `report`), the MovieLens `benchmark`, and `run`, which
chains everything on the quick profile. Every command prints where its outputs
went; user mistakes end with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.cli import handle_user_errors, new_app
from shared.errors import ConfigError, InputFileError

app = new_app("level3_recsys", "Level 3: media recommendations — simulate, train, evaluate, register, batch.")

BEST_MODEL = {"simulated": "two_stage", "movielens": "ease"}

Profile = Annotated[str, typer.Option("--profile", help="Config profile: quick (CI) or full.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="YAML/TOML/JSON file with config overrides (params.yaml).")
]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed for every generator and model.")]


@app.callback()
def _runtime() -> None:
    """Level 3: media recommendations — simulate, train, evaluate, register, batch."""
    from shared.runtime import configure_environment

    configure_environment()
    # Prefect's temporary API server needs longer than its 20 s default on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow announces schema migrations at INFO on stderr; a CLI user needs only warnings.
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _config(profile: str, config: Path | None, **overrides: Any) -> Any:
    from level3_recsys.config import RecsysConfig
    from shared.config import load_config

    return load_config(RecsysConfig, profile=profile, path=config, overrides=overrides)


def _echo(label: str, value: object) -> None:
    typer.echo(f"{label:<12} {value}")


def _check_k(k: int) -> int:
    if not 1 <= k <= 100:
        raise ConfigError(f"--k must be between 1 and 100, got {k}")
    return k


def _table(df: Any) -> str:
    shown = df.copy()
    return shown.to_string(float_format=lambda v: f"{v:.4f}")


@app.command()
@handle_user_errors
def generate(
    profile: Profile = "quick",
    config: ConfigFile = None,
    seed: Seed = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: data/raw).")] = None,
) -> None:
    """Simulate the media platform: catalogue, users, impressions with clicks and watch time."""
    from level3_recsys.pipeline import generate as run_generate

    cfg = _config(profile, config, seed=seed)
    world, folder = run_generate(cfg, out)
    imps = world.impressions
    _echo("wrote", folder)
    _echo("impressions", f"{len(imps):,} ({imps['clicked'].mean():.2%} clicked)")
    _echo("catalogue", f"{len(world.items):,} items, {len(world.users):,} users")


@app.command()
@handle_user_errors
def split(
    profile: Profile = "quick",
    config: ConfigFile = None,
    raw: Annotated[Path | None, typer.Option(help="Folder `generate` wrote (default: data/raw).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: data/interim).")] = None,
) -> None:
    """Turn clicks into implicit feedback and cut them in time (train: past, test: next period)."""
    from level3_recsys import pipeline

    cfg = _config(profile, config)
    world = pipeline.read_world(raw or cfg.paths().raw)
    train, test = pipeline.split(cfg, world)
    folder = pipeline.write_dataset(train, test, out or cfg.paths().interim)
    _echo("wrote", folder)
    _echo("train", f"{len(train.interactions):,} interactions")
    _echo("test", f"{len(test.interactions):,} interactions (last {cfg.split.test_days:g} days)")


@app.command()
@handle_user_errors
def features(
    profile: Profile = "quick",
    config: ConfigFile = None,
    interim: Annotated[
        Path | None, typer.Option(help="Folder `split` wrote (default: data/interim).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: data/processed).")] = None,
) -> None:
    """Write the model inputs: dataset, item content features and dataset statistics."""
    from level3_recsys import pipeline

    cfg = _config(profile, config)
    train, test = pipeline.read_dataset(interim or cfg.paths().interim, "simulated")
    folder = out or cfg.paths().processed
    stats = pipeline.features(train, test, folder)
    _echo("wrote", folder)
    _echo("features", f"{stats['item_features']} content features per item, {stats['cold_items']} cold items")


@app.command()
@handle_user_errors
def train(
    movielens: Annotated[
        Path | None, typer.Option(help="A MovieLens folder (ml-100k or ml-latest-small layout) to train on.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model name, or 'all' for the config's `models` list (default: the best model for the data)."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Simulated data from `features` (default: data/processed).")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run folder to write (default: a new one).")] = None,
    profile: Profile = "quick",
    config: ConfigFile = None,
    seed: Seed = None,
    mlflow: Annotated[bool, typer.Option(help="Log every model to MLflow.")] = True,
) -> None:
    """Train model(s) on MovieLens (all the given ratings) or on the simulator's training period."""
    from level3_recsys import pipeline
    from level3_recsys.models import MODEL_NAMES

    cfg = _config(profile, config, seed=seed)
    dataset = "movielens" if movielens is not None else "simulated"
    name = model or BEST_MODEL[dataset]
    names = list(cfg.models) if name == "all" else [name]
    for n in names:
        if n not in MODEL_NAMES:
            raise ConfigError(f"unknown model {n!r}; choose one of: {', '.join(MODEL_NAMES)} or all")
    if movielens is not None:
        from level3_recsys.benchmark import benchmark_configs
        from level3_recsys.movielens import load_movielens

        train_data = load_movielens(movielens)
        # Ratings with no meaningful time order: the settings tuned on the MovieLens protocol.
        tuned = benchmark_configs(cfg.seed, cfg.show_progress)
        cfg = cfg.model_copy(
            update={
                "model_configs": cfg.model_configs.model_validate({**cfg.model_configs.model_dump(), **tuned})
            }
        )
    else:
        train_data, _ = pipeline.read_dataset(data or cfg.paths().processed, "simulated")
    folder = run_dir or cfg.paths().run_dir(f"train-{dataset}-{name}")
    folder.mkdir(parents=True, exist_ok=True)
    trained = pipeline.train_models(cfg, train_data, names, folder, log_to_mlflow=mlflow, dataset=dataset)
    _echo("run", folder)
    for n, secs in trained.seconds.items():
        _echo(n, f"trained in {secs:.1f} s" + (f", MLflow run {trained.mlflow_runs[n]}" if mlflow else ""))
    typer.echo(f"next: python -m level3_recsys recommend --run {folder} --k 10 --out recs.csv")


@app.command()
@handle_user_errors
def evaluate(
    run: Annotated[Path, typer.Option(help="Run folder `train` wrote.")],
    data: Annotated[
        Path | None, typer.Option(help="Simulated data from `features` (default: data/processed).")
    ] = None,
    raw: Annotated[
        Path | None, typer.Option(help="Folder with the simulated world (default: data/raw).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where metrics/report go (default: the run folder).")
    ] = None,
    register: Annotated[bool, typer.Option(help="Register the winner as champion/challenger.")] = True,
    profile: Profile = "quick",
    config: ConfigFile = None,
) -> None:
    """Offline metrics of every model in a run on the test period; register the winner."""
    from level3_recsys import pipeline
    from level3_recsys.report import build_report, write_run_metrics

    cfg = _config(profile, config)
    info = pipeline.read_run_file(run)
    if info["dataset"] != "simulated":
        raise InputFileError(
            f"{run} was trained on all of a MovieLens folder, so it has no held-out period; "
            "score your own held-out ratings against `recommend`, or use `benchmark --movielens FOLDER`"
        )
    models = pipeline.load_run_models(run)
    train_data, test_data = pipeline.read_dataset(data or cfg.paths().processed, "simulated")
    world = pipeline.read_world(raw or cfg.paths().raw)
    table = pipeline.evaluate(cfg, models, train_data, test_data, world)
    target = out or run
    target.mkdir(parents=True, exist_ok=True)
    table.to_csv(target / "comparison.csv")
    aliases: dict[str, str] = {}
    if register and info.get("mlflow_runs"):
        trained = pipeline.TrainedModels(
            models, info["train_seconds"], info["mlflow_runs"], info["model_uris"]
        )
        aliases = pipeline.log_evaluation(cfg, trained, table)
    metrics_path, best, value = write_run_metrics(
        target, table, metric=cfg.tracking.selection_metric, dataset="simulated"
    )
    report = build_report(
        target,
        table,
        title="Level 3 — offline evaluation",
        train_seconds=info["train_seconds"],
        aliases=aliases,
        dataset=train_data.summary(),
    )
    if register and info.get("mlflow_runs"):
        pipeline.attach_evaluation(cfg, trained, [target / "comparison.csv", report])
    typer.echo(_table(table))
    _echo("metrics", metrics_path)
    _echo("report", report)
    if aliases:
        _echo("registry", ", ".join(f"{a}=v{v}" for a, v in aliases.items()))
    _echo("best", f"{best} {cfg.tracking.selection_metric}={value:.4f}")


@app.command()
@handle_user_errors
def recommend(
    run: Annotated[Path, typer.Option(help="Run folder `train` wrote.")],
    out: Annotated[Path, typer.Option(help="CSV to write: user_id,item_id,rank,score.")] = Path("recs.csv"),
    k: Annotated[int, typer.Option(help="Items per user (1-100).")] = 10,
    model: Annotated[
        str | None, typer.Option(help="Model of the run (default: its best or only one).")
    ] = None,
) -> None:
    """Top-K for every user of the training data, seen items excluded, as a CSV."""
    import pandas as pd

    from level3_recsys import pipeline
    from shared.atomic import atomic_write_with

    _check_k(k)
    info = pipeline.read_run_file(run)
    name = model or _default_model(run, info)
    recommender = pipeline.load_run_models(run, [name])[name]
    recs: pd.DataFrame = recommender.recommend(None, k=k, exclude_seen=True)
    atomic_write_with(out, lambda p: recs.to_csv(p, index=False))
    _echo("wrote", out)
    _echo("rows", f"{len(recs):,} ({recs['user_id'].nunique():,} users × top {k} from {name})")


def _default_model(run: Path, info: dict[str, Any]) -> str:
    import pandas as pd

    if len(info["models"]) == 1:
        return str(info["models"][0])
    comparison = run / "comparison.csv"
    if comparison.is_file():
        table = pd.read_csv(comparison, index_col=0)
        if "ndcg@10" in table.columns:
            return str(table["ndcg@10"].idxmax())
    raise ConfigError(f"run {run} holds {info['models']}; choose one with --model")


@app.command()
@handle_user_errors
def batch(
    profile: Profile = "quick",
    config: ConfigFile = None,
    store: Annotated[
        str | None, typer.Option(help="Store URL: sqlite:///PATH or redis://HOST:PORT/DB.")
    ] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="Interaction log defining active users (default: processed train).")
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to score with.")] = "champion",
    k: Annotated[int | None, typer.Option(help="Items per user (1-100).")] = None,
) -> None:
    """The nightly batch (a Prefect flow): champion's top-K for every active user into the store."""
    from level3_recsys.batch import nightly_batch_flow
    from level3_recsys.tracking import alias_version

    cfg = _config(profile, config)
    k = _check_k(k if k is not None else cfg.batch.k)
    tracking = cfg.tracking_settings()
    source = interactions or cfg.paths().processed / "train.parquet"
    if not source.is_file():
        raise InputFileError(
            f"interactions file not found: {source}; run the pipeline first or pass --interactions"
        )
    alias_version(tracking, alias)  # fail fast, before the flow and its Prefect server start
    summary = nightly_batch_flow(
        tracking_uri=tracking.tracking_uri,
        artifact_location=tracking.artifact_location,
        store_url=store or cfg.store_url(),
        interactions_path=str(source),
        registered_model=tracking.registered_model,
        k=k,
        active_days=cfg.batch.active_days,
        alias=alias,
    )
    _echo("store", summary["store_url"])
    _echo("batch", f"{summary['batch_id']}: {summary['n_users']:,} users, top {summary['k']}")
    _echo("model", f"{summary['model_name']} v{summary['model_version']} at {summary['generated_at']}")


@app.command()
@handle_user_errors
def report(
    run: Annotated[Path, typer.Option(help="Run folder holding comparison.csv.")],
) -> None:
    """Rebuild report.html from a run's comparison table."""
    import pandas as pd

    from level3_recsys.report import build_report

    comparison = run / "comparison.csv"
    if not comparison.is_file():
        raise InputFileError(f"{comparison} not found; run `evaluate --run {run}` first")
    table = pd.read_csv(comparison, index_col=0)
    path = build_report(run, table, title="Level 3 — offline evaluation")
    _echo("report", path)


@app.command()
@handle_user_errors
def benchmark(
    movielens: Annotated[Path | None, typer.Option(help="The ml-100k (or ml-latest-small) folder.")] = None,
    bundled: Annotated[
        bool,
        typer.Option(
            help="Export the real MovieLens 100k bundled in the recbole wheel to data/raw/ml-100k and use it."
        ),
    ] = False,
    models: Annotated[str | None, typer.Option(help="Comma-separated models (default: every model).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the results (default: a new run folder).")
    ] = None,
    profile: Profile = "quick",
    config: ConfigFile = None,
) -> None:
    """Microsoft Recommenders MovieLens protocol (75/25 item-stratified, seed 42, top-10)."""
    from level3_recsys.benchmark import BENCHMARK_MODELS, PUBLISHED, run_benchmark
    from level3_recsys.models import MODEL_NAMES
    from level3_recsys.movielens import detect_layout, export_bundled_ml100k
    from level3_recsys.report import write_benchmark_report
    from shared.runtime import configure_environment

    configure_environment()
    if (movielens is None) == (not bundled):
        raise ConfigError("give either --movielens FOLDER or --bundled (the real ml-100k from recbole)")
    names = [m.strip() for m in models.split(",") if m.strip()] if models else list(BENCHMARK_MODELS)
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; choose from: {', '.join(MODEL_NAMES)}")
    paths = _config(profile, config).paths()
    if movielens is None:
        movielens = export_bundled_ml100k(paths.raw / "ml-100k")
        _echo("exported", f"{movielens} (MovieLens 100k from the recbole wheel)")
    dataset = detect_layout(movielens)
    table = run_benchmark(movielens, names)
    folder = out or paths.run_dir("benchmark-movielens")
    metrics, report_path = write_benchmark_report(
        folder, table, PUBLISHED, source=str(movielens), dataset=dataset
    )
    typer.echo(_table(table))
    typer.echo("published (same protocol):")
    typer.echo(_table(PUBLISHED))
    best = str(table["ndcg@10"].idxmax())
    _echo("report", report_path)
    _echo("metrics", metrics)
    _echo("headline", f"ndcg@10 = {table.loc[best, 'ndcg@10']:.4f} ({best})")


@app.command()
@handle_user_errors
def run(
    profile: Profile = "quick",
    config: ConfigFile = None,
    seed: Seed = None,
    name: Annotated[str | None, typer.Option(help="Run folder name (default: a timestamp).")] = None,
) -> None:
    """End to end: simulate -> split -> train -> evaluate -> register -> batch -> report."""
    from level3_recsys.pipeline import level3_flow

    cfg = _config(profile, config, seed=seed)
    summary = level3_flow(cfg, run_name=name)
    typer.echo(_table(summary.table))
    _echo("registry", ", ".join(f"{a}=v{v}" for a, v in summary.aliases.items()))
    _echo("batch", f"{summary.batch['n_users']:,} users -> {summary.batch['store_url']}")
    _echo("report", summary.report)
    _echo("metrics", summary.metrics)
    _echo("headline", f"{summary.headline_metric} = {summary.headline_value:.4f} ({summary.best_model})")
