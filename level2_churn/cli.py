"""``python -m level2_churn``: run the whole level, or one stage at a time (the DVC stages call these).

Verbs: ``generate``, ``ingest``, ``features``, ``train``, ``evaluate``, ``report``, ``register``,
``predict`` and ``run`` (all of them). ``train``, ``predict`` and ``run`` also take a CSV in the IBM
Telco layout (``--telco-csv``) instead of the simulated business. Options: ``--out`` where a command
writes, ``--run`` the run folder it reads, ``--profile``, ``--seed``, ``--config``, ``--root``.
The older names stay as hidden aliases: ``score`` (``predict``), ``telco`` (``run --telco-csv``)
and ``telco-predict`` (``predict --telco-csv``).
"""

from __future__ import annotations

import os
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
from shared.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    from level2_churn.config import ChurnConfig
    from level2_churn.pipeline import Layout

app = new_app(
    "level2_churn",
    "Level 2 — customer churn: simulate messy sources, clean, build point-in-time features, train with "
    "walk-forward validation and Bayesian search, judge by campaign profit.",
)

RootOpt = Annotated[
    Path | None,
    typer.Option("--root", help="Level root holding data/ and artifacts/ (default: the package folder)."),
]
TrialsOpt = Annotated[int | None, typer.Option("--trials", help="Optuna trials (overrides search.n_trials).")]
MlflowUriOpt = Annotated[
    str | None,
    typer.Option("--mlflow-uri", help="MLflow tracking URI (sqlite:/// or postgresql+psycopg2://)."),
]
TelcoCsvOpt = Annotated[
    Path | None,
    typer.Option(
        "--telco-csv", help="A CSV in the IBM Telco Customer Churn layout instead of the simulated business."
    ),
]


def _config(profile: str, config: Path | None, overrides: dict[str, Any] | None = None) -> ChurnConfig:
    # Imported here: the config pulls in pandas and pyarrow, which `--help` does not need.
    from level2_churn.config import ChurnConfig

    return load_level_config(ChurnConfig, profile, config, overrides)


def _layout(root: Path | None) -> Layout:
    from level2_churn.pipeline import Layout

    return Layout.at(root)


def _new_run(root: Path | None, out: Path | None, prefix: str) -> Path:
    """The run folder a command writes: `out`, or a fresh ``artifacts/<prefix>-<time>``."""
    from datetime import datetime

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return out
    return _layout(root).paths.run_dir(f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}")


def _trained_run(root: Path | None, run: Path | None) -> Path:
    """The run folder a command reads: `run`, or the newest trained run under ``artifacts/``."""
    if run is not None:
        return run
    lay = _layout(root)
    found = sorted(lay.artifacts.glob("*/modelling.joblib"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise InputFileError(f"no trained run under {lay.artifacts}; run `train` first")
    return found[-1].parent


def _model_file(root: Path | None, run: Path | None, model: Path | None) -> Path:
    """The model a prediction uses: ``--model``, the ``--run`` folder's, or the newest run's."""
    if model is not None and run is not None:
        raise ConfigError("give --run or --model, not both")
    if model is not None:
        return model
    if run is not None:
        return run / "model.joblib"
    return _layout(root).latest_model()


def _not_for_telco(telco_csv: Path | None, **options: Any) -> None:
    given = [name for name, value in options.items() if value is not None]
    if telco_csv is not None and given:
        names = ", ".join("--" + n.replace("_", "-") for n in given)
        raise ConfigError(f"{names}: only for the simulated business, not with --telco-csv")


# ------------------------------------------------------------------------------------------ run


@app.command()
@handle_user_errors
def run(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    root: RootOpt = None,
    trials: TrialsOpt = None,
    customers: Annotated[
        int | None, typer.Option(help="Simulated customers (overrides the profile).")
    ] = None,
    telco_csv: TelcoCsvOpt = None,
    mlflow_uri: MlflowUriOpt = None,
    run_name: Annotated[
        str | None, typer.Option(hidden=True, help="Old option: the same as --out <root>/artifacts/NAME.")
    ] = None,
) -> None:
    """Run the whole level: the Prefect flow (generate … predict), or train+evaluate+report a Telco CSV."""
    _not_for_telco(telco_csv, customers=customers)
    if run_name is not None:
        if out is not None:
            raise ConfigError("give --out or --run-name, not both")
        out = _layout(root).artifacts / run_name
    overrides = {
        "seed": seed,
        "search": {"n_trials": trials},
        "simulator": {"customers": customers},
        "mlflow": {"tracking_uri": mlflow_uri},
    }
    if telco_csv is not None:
        cfg = _config(profile, config, overrides)
        _run_telco(cfg, telco_csv, root=root, out=out, track=True)
        return
    # Cached task results live with the level's artifacts, so a second `make level2` reuses the data
    # stages even though every run gets a fresh temporary PREFECT_HOME.
    level_root = root or Path(__file__).resolve().parent
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(level_root / "artifacts" / "prefect-results"))
    _config(profile, config, overrides)  # fail fast on a bad config, before Prefect starts
    from level2_churn.pipeline import churn_flow
    from shared.cli import drop_unset

    result = churn_flow(
        profile=profile,
        root=str(root) if root else None,
        config_path=str(config) if config else None,
        overrides=drop_unset(overrides),
        run_dir=str(out) if out else None,
    )
    say("test PR-AUC (LightGBM)", result["pr_auc"])
    if "oracle_pr_auc" in result:
        say("test PR-AUC (oracle)", result["oracle_pr_auc"])
        say("share of oracle", f"{result['pr_auc'] / result['oracle_pr_auc']:.1%}")
    say("test ROC-AUC", result["roc_auc"])
    say("top-decile lift", result["top_decile_lift"])
    say("campaign profit", result["campaign_profit"])
    say("  contact everybody", result["profit_everybody"])
    say("  contact random k", result["profit_random_k"])
    say("model registered", f"{result['registry']['uri']} (version {result['registry']['version']})")
    say("retention list", result["predict"]["path"])
    say("run", result["run_dir"])
    say("metrics", result["metrics"])
    say("report", result["report"])


def _run_telco(cfg: ChurnConfig, csv: Path, *, root: Path | None, out: Path | None, track: bool) -> None:
    """Train, evaluate and report on a Telco CSV in one go (no flow: the file is the only stage)."""
    from level2_churn.pipeline import evaluate_run, report_run, train_telco
    from level2_churn.telco import load_telco

    load_telco(csv)  # validate the file before creating any output folder
    target = _new_run(root, out, "telco")
    train_telco(cfg, csv, target, artifacts_dir=_layout(root).artifacts, track=track)
    metrics = evaluate_run(cfg, target)
    report = report_run(cfg, target)
    say("test PR-AUC (LightGBM)", metrics["pr_auc"])
    say("test PR-AUC (logistic)", metrics["baseline_pr_auc"])
    say("test ROC-AUC", metrics["roc_auc"])
    say("campaign profit", metrics["campaign_profit"])
    say("model", target / "model.joblib")
    say("metrics", metrics["metrics"])
    say("report", report["report"])


# ------------------------------------------------------------------------------------------ data


@app.command()
@handle_user_errors
def generate(
    customers: Annotated[int | None, typer.Option(help="Number of customers.")] = None,
    months: Annotated[int | None, typer.Option(help="Months of history.")] = None,
    seed: SeedOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    root: RootOpt = None,
    out: OutOpt = None,
) -> None:
    """Simulate the raw sources (customers.csv, billing/, support/, usage/) and the hidden truth."""
    cfg = _config(profile, config, {"seed": seed, "simulator": {"customers": customers, "months": months}})
    from level2_churn.pipeline import generate_data

    target = out or _layout(root).raw
    summary = generate_data(cfg, target)
    say("customers", summary["customers"])
    say("monthly churn rate", summary["monthly_churn_rate"])
    say("rows", summary["rows"])
    say("raw data", target)


@app.command()
@handle_user_errors
def ingest(
    root: RootOpt = None,
    raw: Annotated[Path | None, typer.Option(help="Raw folder (default: data/raw).")] = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Validate and clean the raw sources into --out (default: data/interim/clean); quarantine bad rows."""
    cfg = _config(profile, config)
    from level2_churn.pipeline import ingest_data, validate_clean

    lay = _layout(root)
    target = out or lay.clean
    res = ingest_data(raw or lay.raw, target)
    validate_clean(target, cfg.max_quarantine_share)
    say("rows in", res["rows_in"])
    say("rows out", res["rows_out"])
    say("quarantined", res["quarantined"])
    say("clean data", target)


@app.command()
@handle_user_errors
def features(
    root: RootOpt = None,
    clean: Annotated[Path | None, typer.Option(help="Clean folder (default: data/interim/clean).")] = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Build labelled point-in-time monthly snapshots (default --out: data/processed/snapshots.parquet)."""
    cfg = _config(profile, config)
    from level2_churn.pipeline import build_features

    lay = _layout(root)
    target = out or lay.snapshots
    rows = build_features(clean or lay.clean, target, cfg)
    say("snapshot rows", rows)
    say("snapshots", target)


# ------------------------------------------------------------------------------------------ model


@app.command()
@handle_user_errors
def train(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    root: RootOpt = None,
    trials: TrialsOpt = None,
    snapshots: Annotated[
        Path | None, typer.Option(help="Snapshot Parquet (default: data/processed/snapshots.parquet).")
    ] = None,
    telco_csv: TelcoCsvOpt = None,
    mlflow_uri: MlflowUriOpt = None,
    mlflow: Annotated[bool, typer.Option(help="Log every Optuna trial to MLflow.")] = True,
) -> None:
    """Baseline, imbalance comparison, selection, Optuna search, calibration, final model (model.joblib)."""
    _not_for_telco(telco_csv, snapshots=snapshots)
    cfg = _config(
        profile,
        config,
        {"seed": seed, "search": {"n_trials": trials}, "mlflow": {"tracking_uri": mlflow_uri}},
    )
    from level2_churn.pipeline import train_model, train_telco

    lay = _layout(root)
    if telco_csv is not None:
        from level2_churn.telco import load_telco

        load_telco(telco_csv)  # validate the file before creating any output folder
        target = _new_run(root, out, "telco")
        res = train_telco(cfg, telco_csv, target, artifacts_dir=lay.artifacts, track=mlflow)
    else:
        target = _new_run(root, out, "train")
        res = train_model(
            cfg,
            snapshots or lay.snapshots,
            target,
            artifacts_dir=lay.artifacts,
            truth_dir=lay.raw / "_truth",
            track=mlflow,
        )
    say("test PR-AUC", res["pr_auc"])
    if res["tracking_uri"]:
        say("MLflow store", res["tracking_uri"])
    say("run", target)


@app.command()
@handle_user_errors
def evaluate(
    run: RunOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Write the run's metrics.json: test-window metrics, every fold, the campaign, the oracle."""
    cfg = _config(profile, config)
    from level2_churn.pipeline import evaluate_run

    out = evaluate_run(cfg, _trained_run(root, run))
    keys = (
        "pr_auc",
        "baseline_pr_auc",
        "oracle_pr_auc",
        "campaign_profit",
        "profit_everybody",
        "profit_random_k",
    )
    for key in keys:
        if key in out:
            say(key, out[key])
    say("metrics", out["metrics"])


@app.command()
@handle_user_errors
def report(
    run: RunOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Write the run's report.html: data quality, PR, ROC, calibration, gain/lift, SHAP, profit."""
    cfg = _config(profile, config)
    from level2_churn.pipeline import report_run

    out = report_run(cfg, _trained_run(root, run), clean_dir=_layout(root).clean)
    say("report", out["report"])


@app.command()
@handle_user_errors
def register(
    run: RunOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    root: RootOpt = None,
    mlflow_uri: MlflowUriOpt = None,
) -> None:
    """Register the run's model in the MLflow registry and set the alias (default: champion)."""
    cfg = _config(profile, config, {"mlflow": {"tracking_uri": mlflow_uri}})
    from level2_churn.pipeline import register_model

    info = register_model(cfg, _trained_run(root, run), artifacts_dir=_layout(root).artifacts)
    say("registered", f"{info['uri']} (version {info['version']})")


@app.command()
@handle_user_errors
def predict(
    run: RunOpt = None,
    model: Annotated[
        Path | None,
        typer.Option(help="A model.joblib instead of a run folder's (default: the newest run's)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="CSV to write (default: retention_list.csv, with --telco-csv predictions.csv, by the model)."
        ),
    ] = None,
    snapshot: Annotated[
        str | None, typer.Option(help="'latest' (end of the data, the default) or a date YYYY-MM-DD.")
    ] = None,
    telco_csv: TelcoCsvOpt = None,
    root: RootOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Apply a saved model: the simulated customers' ranked retention list, or a Telco CSV's probabilities."""
    _not_for_telco(telco_csv, snapshot=snapshot)
    cfg = _config(profile, config)
    model_path = _model_file(root, run, model)
    if telco_csv is not None:
        _predict_telco(model_path, telco_csv, out or model_path.parent / "predictions.csv")
        return
    from level2_churn.pipeline import predict_customers

    target = out or model_path.parent / "retention_list.csv"
    res = predict_customers(cfg, _layout(root).clean, model_path, target, snapshot=snapshot or "latest")
    say("snapshot", res["snapshot"])
    say("customers ranked", res["customers"])
    say("to contact", res["to_contact"])
    say("retention list", res["path"])


def _predict_telco(model: Path, csv: Path, out: Path) -> None:
    from level2_churn.telco import predict_file

    preds = predict_file(model, csv, out)
    say("customers scored", len(preds))
    say("mean churn probability", float(preds["churn_probability"].mean()))
    say("predictions", out)


# ------------------------------------------------------------------------------------------ others


@app.command()
@handle_user_errors
def deployment(
    profile: ProfileOpt = "full",
) -> None:
    """Show the monthly Prefect deployment definition (serve it with `prefect.serve`)."""
    _config(profile, None)
    from level2_churn.pipeline import monthly_deployment

    dep = monthly_deployment(profile=profile)
    say("deployment", dep.name)
    say("flow", dep.flow_name)
    say("schedule (cron)", ", ".join(s.schedule.cron for s in dep.schedules))
    say("parameters", dep.parameters)


# The older names, kept working for scripts that use them (hidden from --help).
app.command("score", hidden=True)(predict)


@app.command("telco", hidden=True)
@handle_user_errors
def telco(
    csv: Annotated[Path, typer.Option(help="CSV in the IBM Telco Customer Churn layout (with Churn).")],
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    root: RootOpt = None,
    seed: SeedOpt = None,
    trials: TrialsOpt = None,
    mlflow: Annotated[bool, typer.Option(help="Log every trial to MLflow.")] = True,
    mlflow_uri: MlflowUriOpt = None,
) -> None:
    """Old name of ``run --telco-csv``."""
    cfg = _config(
        profile,
        config,
        {"seed": seed, "search": {"n_trials": trials}, "mlflow": {"tracking_uri": mlflow_uri}},
    )
    _run_telco(cfg, csv, root=root, out=out, track=mlflow)


@app.command("telco-predict", hidden=True)
@handle_user_errors
def telco_predict(
    model: Annotated[Path, typer.Option(help="model.joblib written by train --telco-csv.")],
    csv: Annotated[Path, typer.Option(help="CSV in the Telco layout (Churn column optional, ignored).")],
    out: Annotated[Path, typer.Option(help="Where to write customerID,churn_probability.")],
) -> None:
    """Old name of ``predict --telco-csv``."""
    _config("quick", None)  # runtime and logging, as every command sets them
    _predict_telco(model, csv, out)
