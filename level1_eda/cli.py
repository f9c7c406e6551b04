"""Command line: `python -m level1_eda run | profile | predict`.

Options are the project's shared ones (`shared.cli`): ``--out`` where a command
writes, ``--run`` the run folder `predict` reads its model from, ``--profile``,
``--seed``, ``--config``. Result lines go through `shared.cli.say`; warnings go
to stderr as ``warning: ...`` lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from level1_eda.config import L1Config
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
from shared.paths import LevelPaths

app = new_app("level1_eda", "Level 1 — EDA and first models on any CSV (default: Palmer penguins).")

CsvOpt = Annotated[
    Path | None, typer.Option("--csv", help="CSV file to analyse; default: the Palmer penguins data.")
]
TargetOpt = Annotated[str | None, typer.Option(help="Column to predict (default: species).")]
TaskOpt = Annotated[
    str | None, typer.Option(help="classification, regression or auto (inferred from the target).")
]


def _config(profile: str, config: Path | None, **overrides: object) -> L1Config:
    return load_level_config(L1Config, profile, config, overrides)


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
    """Everything end to end: profile, explore, compare missing-value strategies, train, evaluate, save.

    The model is scored on held-out test rows; the saved model.joblib is then refitted on every row.

    Writes report.html, metrics.json and model.joblib to --out (default: artifacts/<dataset>-<time>).
    """
    cfg = _config(profile, config, target=target, task=task, seed=seed)
    _check_input(csv)
    from level1_eda.pipeline import run as run_level

    result = run_level(csv, cfg, out=out)
    _warn(result.warnings)
    m = result.metrics
    metric = m["headline_metric"]
    say("report", result.report)
    say("metrics", result.run_dir / "metrics.json")
    say("model", f"{result.model} (refitted on all {m['fitted_on_rows']:,} labelled rows after the test)")
    say(f"test {metric}", m["headline_value"])
    say(f"baseline test {metric}", m["baseline"][metric])
    cv = m["cv"]
    say(f"{cv['folds']}-fold cv {metric}", f"{cv[metric + '_mean']:.4f} ± {cv[metric + '_std']:.4f}")
    say("test rows", f"{m['test_rows']:,}")


@app.command()
@handle_user_errors
def profile(
    csv: CsvOpt = None,
    target: TargetOpt = None,
    task: TaskOpt = None,
    profile: ProfileOpt = "quick",
    out: OutOpt = None,
    config: ConfigOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Read, type and profile a CSV (steps 1-4) and write the report, without training a model."""
    cfg = _config(profile, config, target=target, task=task, seed=seed)
    _check_input(csv)
    from level1_eda.pipeline import run_profile

    result = run_profile(csv, cfg, out=out)
    _warn(result.warnings)
    ov = result.metrics["overview"]
    t = result.metrics["timings"]
    say("report", result.report)
    say("shape", f"{ov['rows']:,} rows × {ov['columns']} columns")
    say("missing cells", f"{ov['missing_cells_pct']:.2f}%")
    say("duplicate rows", f"{ov['duplicate_rows']:,}")
    say(
        "seconds",
        f"read {t['read_s']:.2f}, types {t['types_s']:.2f}, profile {t['profile_s']:.2f}, "
        f"report {t['report_s']:.2f}",
    )


@app.command()
@handle_user_errors
def predict(
    csv: Annotated[Path, typer.Option("--csv", help="CSV with new rows (the target column may be absent).")],
    model: Annotated[Path | None, typer.Option(help="model.joblib written by `run` (or use --run).")] = None,
    run_dir: RunOpt = None,
    out: OutOpt = None,
) -> None:
    """Predict every row of a new CSV with a saved model; one output row per input row, in order.

    Model: --model FILE, else model.joblib in --run RUN_FOLDER, else the newest run's.

    Predictions go to --out (default: predictions.csv).
    """
    load_level_config(L1Config, "quick")  # runtime and logging only: predicting needs no settings
    from level1_eda.predict import predict_csv, resolve_model

    model_path = resolve_model(model, run_dir, LevelPaths.for_package(__file__).artifacts)
    summary = predict_csv(model_path, csv, out or Path("predictions.csv"))
    _warn(summary["warnings"])
    say("model", summary["model"])
    say("predictions", f"{summary['out']} ({summary['rows']:,} rows)")
    for metric in ("accuracy", "r2"):
        if metric in summary:
            say(f"{metric}, labelled rows", summary[metric])  # rows of the file that have the target
