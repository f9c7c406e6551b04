"""The level end to end: load → schema → profile → explore → missing → features → train → evaluate.

`explore_csv` does the first half (everything a profile needs), `run_profile`
writes that as a report, and `run` goes on to train, evaluate and save the
model. Each stage is timed; the timings go to the report and `metrics.json`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from level1_eda import report as rpt
from level1_eda.config import L1Config
from level1_eda.data import load_csv, penguins_csv
from level1_eda.profile import profile_frame
from level1_eda.results import Evaluation, Explored, RunResult
from level1_eda.schema import clean_target, coerce_types, infer_schema
from shared.atomic import atomic_path, atomic_write_json
from shared.metrics import write_metrics
from shared.paths import LevelPaths
from shared.plotting import set_theme

if TYPE_CHECKING:
    from level1_eda.train import Split, Trained

log = logging.getLogger(__name__)
PATHS = LevelPaths.for_package(__file__)


def resolve_csv(csv: Path | None) -> tuple[Path, str]:
    """The CSV to use and the dataset name: the given file, or penguins written to data/raw."""
    if csv is None:
        return penguins_csv(PATHS.raw), "penguins"
    return Path(csv), Path(csv).stem


def explore_csv(csv: Path, cfg: L1Config, *, dataset: str | None = None) -> Explored:
    """Load a CSV, infer types and roles, and compute every data-quality fact.

    Raises:
        shared.errors.UserError: Any input problem (file, target, no features), before anything is written.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    loaded = load_csv(csv)
    timings["read_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    frame, type_warnings = coerce_types(loaded.frame, target=cfg.target)
    schema = infer_schema(frame, cfg.target, cfg, cfg.task)
    timings["types_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prof = profile_frame(frame, schema)
    timings["profile_s"] = time.perf_counter() - t
    warnings = [*loaded.warnings, *type_warnings, *schema.warnings]
    return Explored(dataset or Path(csv).stem, loaded, frame, schema, prof, warnings, timings)


def _run_dir(out: Path | None, dataset: str) -> Path:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return out
    return PATHS.run_dir(f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_profile(csv: Path | None, cfg: L1Config, *, out: Path | None = None) -> RunResult:
    """Steps 1-4 only: read, type, profile and explore; write ``report.html`` and ``profile.json``."""
    set_theme()
    path, dataset = resolve_csv(csv)
    explored = explore_csv(path, cfg, dataset=dataset)
    run_dir = _run_dir(out, explored.dataset)
    t = time.perf_counter()
    report = rpt.new_report(explored, title="Level 1 — data profile")
    rpt.add_overview(report, explored)
    rpt.add_schema(report, explored)
    rpt.add_quality(report, explored)
    rpt.add_exploration(report, explored, cfg)
    explored.timings["report_s"] = time.perf_counter() - t
    rpt.add_timings(report, {**explored.timings, "seed": cfg.seed, "profile": cfg.profile})
    report_path = report.write(run_dir / "report.html")
    facts = {**explored.profile.to_dict(), "timings": explored.timings, "warnings": explored.warnings}
    atomic_write_json(run_dir / "profile.json", facts)
    return RunResult(run_dir, report_path, facts, warnings=explored.warnings)


def run(csv: Path | None, cfg: L1Config, *, out: Path | None = None) -> RunResult:
    """The whole level: profile, compare missing-value strategies, train, evaluate, save.

    The model is evaluated as fitted on the training rows; the saved model is the
    same pipeline refitted on every labelled row once the test rows have been scored
    (``fitted_on_rows`` in ``metrics.json`` and in the saved bundle).

    Args:
        csv: A CSV file, or ``None`` for the penguins data.
        cfg: The run's config (target, task, seed, sample sizes).
        out: Run folder; defaults to ``artifacts/<dataset>-<time>``.

    Returns:
        A `RunResult` with the report, metrics and model paths.
    """
    # The modelling stack (scikit-learn) is imported here, so `profile` never pays for it.
    import joblib
    import sklearn

    from level1_eda.evaluate import evaluate_test
    from level1_eda.features import feature_names
    from level1_eda.missing import compare_strategies
    from level1_eda.train import fit_final, scoring, split_data, train

    # Every random step (split, folds, samples, solver) takes cfg.seed explicitly, so no global
    # seeding is needed (shared.seeding.seed_everything would also import torch, ~2 s).
    set_theme()
    started = time.perf_counter()
    path, dataset = resolve_csv(csv)
    explored = explore_csv(path, cfg, dataset=dataset)
    schema = explored.schema
    # Features go to the pipeline raw (it coerces them itself, as it will for new files);
    # the target as typed (numbers written as text become numbers).
    raw = explored.loaded.frame.assign(**{schema.target: explored.frame[schema.target]})
    modelling, target_warnings = clean_target(raw, schema)
    warnings = [*explored.warnings, *target_warnings]
    explored.warnings = warnings
    timings = explored.timings

    t = time.perf_counter()
    split = split_data(modelling, schema, cfg)
    comparison = compare_strategies(split, schema, cfg)
    timings["missing_s"] = time.perf_counter() - t
    t = time.perf_counter()
    trained = train(split, schema, cfg)
    timings["train_s"] = time.perf_counter() - t
    ev = evaluate_test(trained, split, schema.task)
    # The test rows have been scored once; the saved model now learns from every labelled row.
    t = time.perf_counter()
    final = fit_final(split, schema, cfg)
    fitted_on_rows = len(split.X_train) + len(split.X_test)
    timings["refit_s"] = time.perf_counter() - t

    run_dir = _run_dir(out, explored.dataset)
    t = time.perf_counter()
    metric = scoring(schema.task)
    report = rpt.new_report(explored, title="Level 1 — EDA and first models")
    rpt.add_overview(report, explored)
    rpt.add_schema(report, explored)
    rpt.add_quality(report, explored)
    rpt.add_exploration(report, explored, cfg)
    rpt.add_missing(report, comparison, metric)
    rpt.add_features(report, schema, feature_names(trained.model), split)
    rpt.add_model(report, trained, ev, schema.task, fitted_on_rows=fitted_on_rows)
    rpt.add_evaluation(report, trained, ev, schema.task)
    timings["report_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started
    rpt.add_timings(report, {**timings, "seed": cfg.seed, "profile": cfg.profile, "csv": str(path)})

    model_path = run_dir / "model.joblib"
    bundle = {
        "pipeline": final,
        "fitted_on_rows": fitted_on_rows,
        "target": schema.target,
        "task": schema.task,
        "features": schema.features,
        "classes": [str(c) for c in getattr(final.named_steps["model"], "classes_", [])],
        "dataset": explored.dataset,
        "sklearn_version": sklearn.__version__,
    }
    with atomic_path(model_path) as tmp:
        joblib.dump(bundle, tmp)
    report_path = report.write(run_dir / "report.html")
    metrics = _metrics(explored, trained, ev, comparison.scores, split, timings)
    write_metrics(run_dir / "metrics.json", **metrics)
    return RunResult(run_dir, report_path, metrics, model_path, warnings)


def _metrics(
    explored: Explored,
    trained: Trained,
    ev: Evaluation,
    strategies: pd.DataFrame,
    split: Split,
    timings: dict[str, float],
) -> dict[str, Any]:
    metric = trained.cv_model["metric"]
    cv = {
        f"{metric}_mean": trained.cv_model["mean"],
        f"{metric}_std": trained.cv_model["std"],
        "folds": trained.cv_model["folds"],
        f"baseline_{metric}_mean": trained.cv_baseline["mean"],
        f"baseline_{metric}_std": trained.cv_baseline["std"],
    }
    missing = {
        name.replace(" ", "_"): {
            k.replace(" ", "_").replace("%", "pct"): v for k, v in row.items() if not pd.isna(v)
        }
        for name, row in strategies.to_dict(orient="index").items()
    }
    return {
        "level": 1,
        "dataset": explored.dataset,
        "headline_metric": metric,
        "headline_value": ev.test[metric],
        "task": explored.schema.task,
        "target": explored.schema.target,
        "rows": explored.profile.overview["rows"],
        "train_rows": len(split.X_train),
        "test_rows": len(split.X_test),
        "fitted_on_rows": len(split.X_train) + len(split.X_test),
        "test": ev.test,
        "baseline": ev.baseline_test,
        "cv": cv,
        "missing_strategies": missing,
        "seconds": {k.removesuffix("_s"): round(v, 3) for k, v in timings.items()},
    }
