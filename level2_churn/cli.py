"""``python -m level2_churn``: run the whole level, or one stage at a time (the DVC stages call these)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.cli import handle_user_errors, new_app

app = new_app(
    "level2_churn",
    "Level 2 — customer churn: simulate messy sources, clean, build point-in-time features, train with "
    "walk-forward validation and Bayesian search, judge by campaign profit.",
)

Profile = Annotated[str, typer.Option(help="Config profile: quick (CI, make level2) or full.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="YAML/TOML config file (e.g. params.yaml).")
]
Root = Annotated[
    Path | None, typer.Option(help="Level root holding data/ and artifacts/ (default: the package folder).")
]
Seed = Annotated[int | None, typer.Option(help="Seed for every generator and model (overrides the config).")]


def _prepare() -> None:
    # Before prefect/mlflow are imported: quiet, offline, private Prefect home.
    from shared.logs import setup_logging
    from shared.runtime import configure_environment

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Prefect's default 20 s for its ephemeral server to start is too short on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    configure_environment()
    setup_logging("WARNING")


def _config(profile: str, config: Path | None, overrides: dict[str, Any]) -> Any:
    from level2_churn.config import ChurnConfig
    from shared.config import load_config

    return load_config(ChurnConfig, profile=profile, path=config, overrides=_clean(overrides))


def _clean(overrides: dict[str, Any]) -> dict[str, Any]:
    """Drop options the user did not give (None, or a section with nothing set)."""
    return {k: v for k, v in overrides.items() if v is not None and v != {}}


def _layout(root: Path | None) -> Any:
    from level2_churn.pipeline import Layout

    return Layout.at(root)


def _nested(**sections: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in values.items() if v is not None} for name, values in sections.items()}


def _say(label: str, value: Any) -> None:
    if isinstance(value, float):
        value = f"{value:,.4f}" if abs(value) < 100 else f"{value:,.0f}"
    typer.echo(f"{label:<28} {value}")


@app.command()
@handle_user_errors
def run(
    profile: Profile = "quick",
    config: ConfigFile = None,
    root: Root = None,
    seed: Seed = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials (overrides search.n_trials).")] = None,
    customers: Annotated[
        int | None, typer.Option(help="Simulated customers (overrides the profile).")
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="Run folder name under artifacts/.")] = None,
) -> None:
    """Run the whole level through the Prefect flow and print PR-AUC, oracle PR-AUC and campaign profit."""
    # Cached task results live with the level's artifacts, so a second `make level2` reuses the data
    # stages even though every run gets a fresh temporary PREFECT_HOME.
    level_root = root or Path(__file__).resolve().parent
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(level_root / "artifacts" / "prefect-results"))
    _prepare()
    from level2_churn.pipeline import churn_flow

    overrides = {"seed": seed, **_nested(search={"n_trials": trials}, simulator={"customers": customers})}
    _config(profile, config, overrides)  # fail fast on a bad config, before Prefect starts
    out = churn_flow(
        profile=profile,
        root=str(root) if root else None,
        config_path=str(config) if config else None,
        overrides=_clean(overrides),
        run_name=run_name,
    )
    _say("test PR-AUC (LightGBM)", out["pr_auc"])
    if "oracle_pr_auc" in out:
        _say("test PR-AUC (oracle)", out["oracle_pr_auc"])
        _say("share of oracle", f"{out['pr_auc'] / out['oracle_pr_auc']:.1%}")
    _say("test ROC-AUC", out["roc_auc"])
    _say("top-decile lift", out["top_decile_lift"])
    _say("campaign profit", out["campaign_profit"])
    _say("  contact everybody", out["profit_everybody"])
    _say("  contact random k", out["profit_random_k"])
    _say("model registered", f"{out['registry']['uri']} (version {out['registry']['version']})")
    _say("retention list", out["score"]["path"])
    _say("metrics", out["metrics"])
    _say("report", out["report"])


@app.command()
@handle_user_errors
def generate(
    customers: Annotated[int | None, typer.Option(help="Number of customers.")] = None,
    months: Annotated[int | None, typer.Option(help="Months of history.")] = None,
    seed: Seed = None,
    profile: Profile = "quick",
    config: ConfigFile = None,
    root: Root = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: data/raw).")] = None,
) -> None:
    """Simulate the raw sources (customers.csv, billing/, support/, usage/) and the hidden truth."""
    _prepare()
    from level2_churn.pipeline import generate_data

    cfg = _config(
        profile, config, {"seed": seed, **_nested(simulator={"customers": customers, "months": months})}
    )
    target = out or _layout(root).raw
    summary = generate_data(cfg, target)
    _say("customers", summary["customers"])
    _say("monthly churn rate", summary["monthly_churn_rate"])
    _say("rows", summary["rows"])
    _say("raw data", target)


@app.command()
@handle_user_errors
def ingest(
    root: Root = None,
    raw: Annotated[Path | None, typer.Option(help="Raw folder (default: data/raw).")] = None,
    out: Annotated[Path | None, typer.Option(help="Clean folder (default: data/interim/clean).")] = None,
    profile: Profile = "quick",
    config: ConfigFile = None,
) -> None:
    """Validate and clean the raw sources; bad rows go to quarantine; write dq_report.json."""
    _prepare()
    from level2_churn.pipeline import ingest_data, validate_clean

    cfg = _config(profile, config, {})
    lay = _layout(root)
    target = out or lay.clean
    res = ingest_data(raw or lay.raw, target)
    validate_clean(target, cfg.max_quarantine_share)
    _say("rows in", res["rows_in"])
    _say("rows out", res["rows_out"])
    _say("quarantined", res["quarantined"])
    _say("clean data", target)


@app.command()
@handle_user_errors
def features(
    root: Root = None,
    clean: Annotated[Path | None, typer.Option(help="Clean folder (default: data/interim/clean).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Parquet file (default: data/processed/snapshots.parquet).")
    ] = None,
    profile: Profile = "quick",
    config: ConfigFile = None,
) -> None:
    """Build labelled point-in-time monthly snapshots."""
    _prepare()
    from level2_churn.pipeline import build_features

    cfg = _config(profile, config, {})
    lay = _layout(root)
    target = out or lay.snapshots
    rows = build_features(clean or lay.clean, target, cfg)
    _say("snapshot rows", rows)
    _say("snapshots", target)


def _run_dir(root: Path | None, run_dir: Path | None, prefix: str) -> Path:
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    return _layout(root).paths.run_dir(f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}")


def _latest_run(root: Path | None) -> Path:
    from shared.errors import InputFileError

    lay = _layout(root)
    found = sorted(lay.artifacts.glob("*/modelling.joblib"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise InputFileError(f"no trained run under {lay.artifacts}; run `train` first")
    return found[-1].parent


@app.command()
@handle_user_errors
def train(
    profile: Profile = "quick",
    config: ConfigFile = None,
    root: Root = None,
    seed: Seed = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials (overrides search.n_trials).")] = None,
    snapshots: Annotated[
        Path | None, typer.Option(help="Snapshot Parquet (default: data/processed).")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default: a new one under artifacts/).")
    ] = None,
    mlflow_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (sqlite:/// or postgresql://).")
    ] = None,
) -> None:
    """Baseline, imbalance comparison, selection, Optuna search (MLflow), calibration, final model."""
    _prepare()
    from level2_churn.pipeline import train_model

    cfg = _config(
        profile,
        config,
        {"seed": seed, **_nested(search={"n_trials": trials}, mlflow={"tracking_uri": mlflow_uri})},
    )
    lay = _layout(root)
    target = _run_dir(root, run_dir, "train")
    res = train_model(
        cfg, snapshots or lay.snapshots, target, artifacts_dir=lay.artifacts, truth_dir=lay.raw / "_truth"
    )
    _say("test PR-AUC", res["pr_auc"])
    _say("MLflow store", res["tracking_uri"])
    _say("run folder", target)


@app.command()
@handle_user_errors
def evaluate(
    profile: Profile = "quick",
    config: ConfigFile = None,
    root: Root = None,
    run_dir: Annotated[Path | None, typer.Option(help="Trained run folder (default: the newest).")] = None,
) -> None:
    """Write metrics.json and report.html (PR, ROC, calibration, gain/lift, SHAP, profit) for a run."""
    _prepare()
    from level2_churn.pipeline import evaluate_run

    cfg = _config(profile, config, {})
    target = run_dir or _latest_run(root)
    out = evaluate_run(cfg, target, clean_dir=_layout(root).clean)
    for key in ("pr_auc", "oracle_pr_auc", "campaign_profit", "profit_everybody", "profit_random_k"):
        if key in out:
            _say(key, out[key])
    _say("metrics", out["metrics"])
    _say("report", out["report"])


@app.command()
@handle_user_errors
def register(
    profile: Profile = "quick",
    config: ConfigFile = None,
    root: Root = None,
    run_dir: Annotated[Path | None, typer.Option(help="Trained run folder (default: the newest).")] = None,
    mlflow_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (sqlite:/// or postgresql://).")
    ] = None,
) -> None:
    """Register the run's model in the MLflow registry and set the alias (default: champion)."""
    _prepare()
    from level2_churn.pipeline import register_model

    cfg = _config(profile, config, _nested(mlflow={"tracking_uri": mlflow_uri}))
    info = register_model(cfg, run_dir or _latest_run(root), artifacts_dir=_layout(root).artifacts)
    _say("registered", f"{info['uri']} (version {info['version']})")


@app.command()
@handle_user_errors
def score(
    snapshot: Annotated[
        str, typer.Option(help="'latest' (end of the data) or a date YYYY-MM-DD.")
    ] = "latest",
    model: Annotated[Path | None, typer.Option(help="model.joblib (default: the newest run's).")] = None,
    out: Annotated[Path | None, typer.Option(help="CSV to write (default: next to the model).")] = None,
    root: Root = None,
    profile: Profile = "quick",
    config: ConfigFile = None,
) -> None:
    """Write the ranked retention list: customers by churn probability, with whom to contact."""
    _prepare()
    from level2_churn.pipeline import score_customers

    cfg = _config(profile, config, {})
    lay = _layout(root)
    model_path = model or lay.latest_model()
    target = out or model_path.parent / "retention_list.csv"
    res = score_customers(cfg, lay.clean, model_path, target, snapshot=snapshot)
    _say("snapshot", res["snapshot"])
    _say("customers ranked", res["customers"])
    _say("to contact", res["to_contact"])
    _say("retention list", res["path"])


@app.command()
@handle_user_errors
def telco(
    csv: Annotated[Path, typer.Option(help="CSV in the IBM Telco Customer Churn layout (with Churn).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: artifacts/telco-<time>).")] = None,
    profile: Profile = "quick",
    config: ConfigFile = None,
    root: Root = None,
    seed: Seed = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials (overrides search.n_trials).")] = None,
    mlflow: Annotated[bool, typer.Option(help="Log every trial to MLflow.")] = True,
    mlflow_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: SQLite).")] = None,
) -> None:
    """Run the modelling stages on a Telco CSV and save the fitted model (model.joblib)."""
    _prepare()
    from level2_churn.business import Economics
    from level2_churn.report import build_report
    from level2_churn.telco import load_telco, run_telco, save_model
    from level2_churn.train import summary_metrics
    from shared.metrics import write_metrics
    from shared.tracking import MlflowTracker

    cfg = _config(
        profile,
        config,
        {"seed": seed, **_nested(search={"n_trials": trials}, mlflow={"tracking_uri": mlflow_uri})},
    )
    lay = _layout(root)
    load_telco(csv)  # validate the file before creating any output folder
    target = _run_dir(root, out, "telco")
    tracker = None
    if mlflow:
        uri, artifact_location = cfg.mlflow.resolve(lay.artifacts)
        tracker = MlflowTracker(uri, cfg.mlflow.experiment + "-telco", artifact_location)
    if tracker is not None:
        with tracker.active():
            res = run_telco(csv, cfg, tracker=tracker)
    else:
        res = run_telco(csv, cfg)
    save_model(res.model, target / "model.joblib")
    m = summary_metrics(res)
    write_metrics(
        target / "metrics.json",
        level=2,
        dataset="telco",
        headline_metric="pr_auc",
        headline_value=m["pr_auc"],
        source=str(csv),
        **m,
    )
    econ = Economics(cfg.campaign.contact_cost, cfg.campaign.save_rate, cfg.campaign.clv)
    report = build_report(res, run_dir=target, econ=econ, title="Level 2 — Telco churn", subtitle=str(csv))
    _say("test PR-AUC (LightGBM)", m["pr_auc"])
    _say("test PR-AUC (logistic)", res.baseline_test_metrics["pr_auc"])
    _say("test ROC-AUC", m["roc_auc"])
    _say("campaign profit", m["campaign_profit"])
    _say("model", target / "model.joblib")
    _say("metrics", target / "metrics.json")
    _say("report", report)


@app.command("telco-predict")
@handle_user_errors
def telco_predict(
    model: Annotated[Path, typer.Option(help="model.joblib written by the telco command.")],
    csv: Annotated[Path, typer.Option(help="CSV in the Telco layout (Churn column optional, ignored).")],
    out: Annotated[Path, typer.Option(help="Where to write customerID,churn_probability.")],
) -> None:
    """Score a Telco-layout CSV with a saved model."""
    _prepare()
    from level2_churn.telco import predict_file

    preds = predict_file(model, csv, out)
    _say("customers scored", len(preds))
    _say("mean churn probability", float(preds["churn_probability"].mean()))
    _say("predictions", out)


@app.command()
@handle_user_errors
def deployment(
    profile: Profile = "full",
) -> None:
    """Show the monthly Prefect deployment definition (serve it with `prefect.serve`)."""
    _prepare()
    from level2_churn.pipeline import monthly_deployment

    dep = monthly_deployment(profile=profile)
    _say("deployment", dep.name)
    _say("flow", dep.flow_name)
    _say("schedule (cron)", ", ".join(s.schedule.cron for s in dep.schedules))
    _say("parameters", dep.parameters)
