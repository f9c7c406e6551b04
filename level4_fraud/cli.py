"""Command line of level 4: ``python -m level4_fraud --help``.

The verbs every level shares: `generate` (simulate to a folder), `train`, `evaluate`, `report`,
`predict`, `register` and `run` (the whole flow). Training and scoring on folders in the Fraud
Detection Handbook's layout have exactly the interface of the issue::

    python -m level4_fraud train --fdh-folder DIR [--labels-available FILE] [--out RUN]
    python -m level4_fraud predict --run RUN --fdh-folder TEST_DIR --history DIR \\
        [--labels-available FILE] --out scores.csv

Options mean the same in every command: ``--out`` is where a command writes, ``--run`` the run
folder it reads (default: the newest one), ``--profile``, ``--seed``, ``--config``. User mistakes
(a missing folder, a wrong schema, an empty day, a run folder that does not exist) end with one
``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
from shared.errors import InputFileError

if TYPE_CHECKING:
    import pandas as pd

    from level4_fraud.config import FraudConfig

app = new_app(
    "level4_fraud",
    "Level 4: card-fraud detection — simulate, train, evaluate, predict on Handbook-layout folders.",
)

FdhFolderOpt = Annotated[
    Path,
    typer.Option(
        "--fdh-folder", help="Folder of daily files YYYY-MM-DD.pkl/.parquet (the Handbook's layout)."
    ),
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        "--labels-available",
        help="Late labels (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_FRAUD, "
        "LABEL_AVAILABLE_FROM): CSV, Parquet or pickle.",
    ),
]


def _config(profile: str = "quick", config: Path | None = None, **overrides: Any) -> FraudConfig:
    from level4_fraud.config import FraudConfig

    return load_level_config(FraudConfig, profile, config, overrides)


def _table(df: pd.DataFrame) -> str:
    cols = [
        c
        for c in ("average_precision", "card_precision_at_k", "roc_auc", "recall_at_fpr", "savings")
        if c in df.columns
    ]
    return str(df[cols].to_string(float_format=lambda v: f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"))


def print_comparison(table: pd.DataFrame) -> None:
    """The comparison table with rich (plain text when the output is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    cols = [
        ("average_precision", "AP"),
        ("card_precision_at_k", "CP@100"),
        ("roc_auc", "ROC-AUC"),
        ("recall_at_fpr", "recall@1%FPR"),
        ("savings", "savings"),
        ("folds", "folds"),
    ]
    t = Table(title="Test metrics (mean over prequential folds)")
    t.add_column("model")
    for _, label in cols:
        t.add_column(label, justify="right")
    best = table["average_precision"].idxmax()
    for model, row in table.iterrows():
        cells = []
        for c, _ in cols:
            v = row.get(c)
            fmt = "{:,.0f}" if c in ("savings", "folds") else "{:.4f}"
            cells.append("—" if v is None or v != v else fmt.format(v))
        style = "bold green" if model == best else None
        t.add_row(str(model), *cells, style=style)
    Console(width=100).print(t)


def _resolve_run(run: Path | None, cfg: FraudConfig) -> Path:
    """`run`, or the newest run folder (holding ``run.json``) under the artifacts."""
    if run is not None:
        return run
    artifacts = cfg.paths().artifacts
    found = (
        [p.parent for p in artifacts.rglob("run.json") if "mlflow" not in p.parts]
        if artifacts.is_dir()
        else []
    )
    if not found:
        raise InputFileError(f"no run under {artifacts}; pass --run FOLDER (or train first)")
    return max(found, key=lambda p: (p / "run.json").stat().st_mtime)


# ---------------------------------------------------------------------------------- data
@app.command()
@handle_user_errors
def generate(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="Daily file format: parquet or pkl.")] = "parquet",
) -> None:
    """Simulate card transactions into a folder in the Handbook's layout.

    Writes --out (default: data/raw/simulation): transactions/YYYY-MM-DD.parquet,
    customers.parquet, terminals.parquet, simulation.json.
    """
    from level4_fraud.simulate import simulate_to_folder

    cfg = _config(profile, config, seed=seed)
    folder = out or cfg.paths().raw / "simulation"
    summary = simulate_to_folder(cfg.simulator_config(), folder, fmt, progress=cfg.show_progress)  # type: ignore[arg-type]
    say("wrote", folder)
    say(
        "transactions",
        f"{summary.n_transactions:,} over {summary.n_days} days ({summary.fraud_rate:.2%} fraud)",
    )
    say("daily files", folder / "transactions")


# ---------------------------------------------------------------------------------- train / predict
@app.command()
@handle_user_errors
def train(
    fdh_folder: FdhFolderOpt,
    labels_available: LabelsOpt = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Learn from the labelled transactions of a Handbook-layout folder (days without TX_FRAUD
    are history only).

    Writes the run folder --out (default: a new one under artifacts/) and prints it.
    """
    from level4_fraud.predict import train_from_folder
    from level4_fraud.train import ENSEMBLE

    cfg = _config(profile, config, seed=seed)
    if not fdh_folder.exists():
        raise InputFileError(f"{fdh_folder}: no such folder")
    folder = out or cfg.paths().run_dir(f"train-{fdh_folder.name}")
    folder.mkdir(parents=True, exist_ok=True)
    run, summary = train_from_folder(cfg, fdh_folder, folder, labels_file=labels_available)
    assert run.ensemble is not None
    say(
        "transactions",
        f"{summary['transactions']:,} ({summary['labelled']:,} labelled, {summary['frauds']:,} frauds)",
    )
    say("ensemble", f"{run.ensemble.method} of {', '.join(run.ensemble.members)}")
    thr = run.thresholds.get(ENSEMBLE)
    if thr is not None:
        say("threshold", thr.threshold)
    say("run", folder)


@app.command()
@handle_user_errors
def predict(
    fdh_folder: FdhFolderOpt,
    history: Annotated[
        Path, typer.Option("--history", help="Folder of earlier daily files: features read their history.")
    ],
    run: RunOpt = None,
    labels_available: LabelsOpt = None,
    out: OutOpt = None,
) -> None:
    """Score every transaction of the test days, as the real-time system would (features from the
    history and the test days in time order; no label of the test days is read).

    Writes --out (default: scores.csv): TRANSACTION_ID,score.
    """
    from level4_fraud.predict import load_run, score_folder, write_scores_csv

    model = load_run(_resolve_run(run, _config()))
    scores = score_folder(model.folder, fdh_folder, history, labels_file=labels_available, model=model)
    target = write_scores_csv(scores, out or Path("scores.csv"))
    say("wrote", target)
    say("transactions", f"{len(scores):,} scored")
    if model.threshold is not None:
        say(
            "alerts",
            f"{int((scores['score'] >= model.threshold).sum()):,} at threshold {model.threshold:.4g}",
        )


# ---------------------------------------------------------------------------------- evaluate / report
@app.command()
@handle_user_errors
def evaluate(
    data: Annotated[
        Path | None,
        typer.Option(help="A `generate` folder or a labelled Handbook-layout folder (default: simulate)."),
    ] = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Prequential evaluation of every model and the ensemble (the Handbook's protocol).

    Writes --out (default: a new run folder): comparison.csv, metrics.json, scores, the models of
    the latest fold, report.html.
    """
    from level4_fraud import pipeline
    from level4_fraud.report import build_report

    cfg = _config(profile, config, seed=seed)
    folder = out or cfg.paths().run_dir(f"evaluate-{cfg.profile}")
    folder.mkdir(parents=True, exist_ok=True)
    source = data if data is not None else pipeline.generate(cfg, folder / "data")[1]
    if not source.exists():
        raise InputFileError(f"{source}: no such folder")
    tx, customers, terminals = pipeline.read_simulation(source)
    folds = pipeline.features(cfg, tx, customers, terminals)
    runs = [pipeline.train_fold(cfg, f) for f in folds]
    table, metrics = pipeline.finish_run(
        cfg, runs, folder, dataset="simulated" if data is None else "fdh-folder"
    )
    report_path = build_report(folder)
    typer.echo(_table(table))
    say("metrics", metrics)
    say("report", report_path)
    say("run", folder)


@app.command()
@handle_user_errors
def report(run: RunOpt = None, out: OutOpt = None) -> None:
    """Rebuild report.html from a run folder's files.

    Writes --out (default: RUN/report.html).
    """
    from level4_fraud.report import build_report

    folder = _resolve_run(run, _config())
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such run folder")
    say("report", build_report(folder, out=out))


@app.command()
@handle_user_errors
def register(
    run: RunOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Log a run folder to MLflow and register its ensemble with alias `champion`."""
    import pandas as pd

    from level4_fraud.pipeline import log_and_register
    from level4_fraud.predict import load_run
    from level4_fraud.train import COMPARISON_FILE

    cfg = _config(profile, config)
    folder = _resolve_run(run, cfg)
    load_run(folder)  # a clear error before MLflow starts
    comparison = folder / COMPARISON_FILE
    table = pd.read_csv(comparison, index_col=0) if comparison.is_file() else pd.DataFrame()
    reg = log_and_register(cfg, folder, table)
    assert reg is not None
    say("registry", cfg.mlflow_store()[0])
    say(reg.get("alias", "model"), f"{reg.get('name', '')} v{reg.get('version', '')} ({reg.get('uri', '')})")


# ---------------------------------------------------------------------------------- everything
@app.command("run")
@handle_user_errors
def run_all(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Use this `generate` folder instead of simulating.")
    ] = None,
) -> None:
    """End to end: simulate -> features (Feast) -> train every model -> deep models, distillation,
    quantization, LoRA, Ray -> evaluate -> register -> report.

    Writes the run folder --out (default: a new one under artifacts/).
    """
    from level4_fraud.pipeline import level4_flow

    cfg = _config(profile, config, seed=seed)
    summary = level4_flow(cfg, out=out, data_dir=data)
    print_comparison(summary.table)
    if summary.deep is not None and summary.deep.get("distillation") is not None:
        dist = summary.deep["distillation"]
        if hasattr(dist, "empty") and not dist.empty:
            typer.echo(dist.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if summary.registered:
        say("registry", f"{summary.registered.get('name', '')} v{summary.registered.get('version', '')} "
            f"alias {summary.registered.get('alias', '')}")  # fmt: skip
    say("seconds", ", ".join(f"{k} {v:.0f}" for k, v in summary.seconds.items()))
    say("metrics", summary.metrics)
    if summary.report:
        say("report", summary.report)
    say("headline", f"average_precision = {summary.headline_value:.4f} (ensemble)")


# --------------------------------------------------------------------------- production commands
# The production half of the level (serve, stream, monitor, retrain, abtest, audit) keeps its
# commands next to its code: each module below has ``register(app)``, imported lazily enough that
# ``--help`` stays fast (the modules import their heavy libraries inside the commands).
def _register_production_commands() -> None:
    import importlib

    for module in PRODUCTION_COMMANDS:
        importlib.import_module(f"level4_fraud.{module}").register(app)


# One entry per command module, added as each lands.
PRODUCTION_COMMANDS: tuple[str, ...] = ("cli_audit", "cli_serve", "cli_abtest", "cli_stream", "cli_retrain")
_register_production_commands()
