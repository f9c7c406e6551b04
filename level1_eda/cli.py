"""Command line: `python -m level1_eda run | profile | predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from level1_eda.config import L1Config
from shared.cli import handle_user_errors, new_app
from shared.config import load_config
from shared.logs import setup_logging
from shared.runtime import configure_environment

app = new_app("level1_eda", "Level 1 — EDA and first models on any CSV (default: Palmer penguins).")
console = Console()

CsvOpt = Annotated[
    Path | None, typer.Option("--csv", help="CSV file to analyse; default: the Palmer penguins data.")
]
TargetOpt = Annotated[str | None, typer.Option(help="Column to predict (default: species).")]
TaskOpt = Annotated[
    str | None, typer.Option(help="classification, regression or auto (inferred from the target).")
]
ProfileOpt = Annotated[str, typer.Option(help="Config profile: quick (CI, samples) or full.")]
OutOpt = Annotated[Path | None, typer.Option(help="Run folder; default: artifacts/<dataset>-<time>.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML/TOML file overriding config values.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for splits, samples and models.")]


def _config(profile: str, config: Path | None, **overrides: object) -> L1Config:
    configure_environment()
    setup_logging("WARNING")
    return load_config(L1Config, profile=profile, path=config, overrides=overrides)


def _check_input(csv: Path | None) -> None:
    # Fail on a missing or empty file before importing scikit-learn and matplotlib (seconds).
    if csv is not None:
        from level1_eda.data import check_file

        check_file(Path(csv))


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)


@app.command()
@handle_user_errors
def run(
    csv: CsvOpt = None,
    target: TargetOpt = None,
    task: TaskOpt = None,
    profile: ProfileOpt = "quick",
    out: OutOpt = None,
    config: ConfigOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Everything end to end: profile, explore, compare missing-value strategies, train, evaluate, save."""
    cfg = _config(profile, config, target=target, task=task, seed=seed)
    _check_input(csv)
    from level1_eda.pipeline import run as run_level

    result = run_level(csv, cfg, out=out)
    _warn(result.warnings)
    m = result.metrics
    metric = m["headline_metric"]
    console.print(f"report:  {result.report}")
    console.print(f"metrics: {result.run_dir / 'metrics.json'}")
    console.print(f"model:   {result.model}")
    console.print(
        f"{metric}: {m['headline_value']:.4f} on {m['test_rows']:,} test rows "
        f"(baseline {m['baseline'][metric]:.4f}; {m['cv']['folds']}-fold cv "
        f"{m['cv'][metric + '_mean']:.4f} ± {m['cv'][metric + '_std']:.4f})"
    )


@app.command()
@handle_user_errors
def profile(
    csv: CsvOpt = None,
    target: TargetOpt = None,
    task: TaskOpt = None,
    profile: ProfileOpt = "quick",
    out: OutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Read, type and profile a CSV (steps 1-4) and write the report, without training a model."""
    cfg = _config(profile, config, target=target, task=task)
    _check_input(csv)
    from level1_eda.pipeline import run_profile

    result = run_profile(csv, cfg, out=out)
    _warn(result.warnings)
    ov = result.metrics["overview"]
    t = result.metrics["timings"]
    console.print(f"report: {result.report}")
    console.print(
        f"{ov['rows']:,} rows × {ov['columns']} columns, {ov['missing_cells_pct']:.2f}% cells missing, "
        f"{ov['duplicate_rows']:,} duplicate rows; read {t['read_s']:.2f} s, types {t['types_s']:.2f} s, "
        f"profile {t['profile_s']:.2f} s, report {t['report_s']:.2f} s"
    )


@app.command()
@handle_user_errors
def predict(
    model: Annotated[Path, typer.Option(help="model.joblib written by `run`.")],
    csv: Annotated[Path, typer.Option("--csv", help="CSV with new rows (the target column may be absent).")],
    out: Annotated[Path, typer.Option(help="Where to write the predictions CSV.")] = Path("predictions.csv"),
) -> None:
    """Predict every row of a new CSV with a saved model; one output row per input row, in order."""
    from level1_eda.predict import predict_csv

    configure_environment()
    summary = predict_csv(model, csv, out)
    _warn(summary["warnings"])
    console.print(f"predictions: {summary['out']} ({summary['rows']:,} rows)")
    for metric in ("accuracy", "r2"):
        if metric in summary:
            console.print(f"{metric} on the rows that have a target: {summary[metric]:.4f}")
