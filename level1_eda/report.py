"""The run's HTML report: one section per step, figures inline, one self-contained file.

Each ``add_*`` function appends one section to a `shared.report.Report` from
results computed elsewhere; nothing here computes a metric.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import pandas as pd

from level1_eda import explore
from level1_eda.schema import NEAR_UNIQUE, Schema
from shared.report import Report, Section

if TYPE_CHECKING:
    from level1_eda.config import L1Config
    from level1_eda.missing import MissingComparison
    from level1_eda.results import Evaluation, Explored
    from level1_eda.train import Split, Trained


def _table(sec: Section, df: pd.DataFrame, caption: str = "") -> Section:
    # The index becomes a first column: one header row instead of pandas' two.
    return sec.table(df.reset_index() if df.index.name else df, caption, index=not df.index.name)


def _memory(mib: float) -> str:
    return f"{mib:,.1f} MiB" if mib >= 1 else f"{mib * 1024:,.0f} KiB"


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def new_report(explored: Explored, *, title: str) -> Report:
    """A report titled with the dataset, its shape and its target."""
    shape = f"{explored.profile.overview['rows']:,} rows × {explored.profile.overview['columns']} columns"
    subtitle = f"{explored.dataset} · {shape} · target {explored.schema.target!r} ({explored.schema.task})"
    return Report(title, subtitle)


def add_overview(report: Report, explored: Explored) -> Section:
    """Step 1: shape, memory, how the file was read, and every warning."""
    ov = explored.profile.overview
    loaded = explored.loaded
    sec = report.section(
        "Overview",
        "What was loaded and how. Warnings flag odd but valid input that was handled for you.",
    )
    sec.metrics(
        {
            "rows": f"{ov['rows']:,}",
            "columns": ov["columns"],
            "in memory": _memory(ov["memory_mib"]),
            "missing cells": f"{ov['missing_cells_pct']:.2f}%",
            "rows with a gap": f"{ov['rows_with_missing']:,}",
            "duplicate rows": f"{ov['duplicate_rows']:,}",
            "task": explored.schema.task,
        }
    )
    sec.text(
        f"File {loaded.path.name} ({_memory(loaded.size_bytes / 2**20)}) read as {loaded.encoding} "
        f"with delimiter {loaded.delimiter!r}. Text columns are held as pandas 'category' (each distinct "
        "value stored once), which is why memory is small."
    )
    if explored.warnings:
        sec.html("<p><strong>Warnings</strong></p>" + _list(explored.warnings))
    else:
        sec.text("No warnings: the file is clean enough to use as is.")
    return sec


def add_schema(report: Report, explored: Explored) -> Section:
    """Step 1: dtypes and inferred roles of every column."""
    schema = explored.schema
    sec = report.section(
        "Schema and column roles",
        "A CSV stores only text; pandas guesses a dtype and we infer a role from the values. "
        "The role decides how a column is used: numbers are scaled, categories one-hot encoded, "
        "identifiers, free text and dates are left out of this first model.",
    )
    roles = pd.Series(explored.profile.overview["roles"], name="columns").rename_axis("role").to_frame()
    _table(sec, roles, "Columns per role")
    _table(
        sec, schema.table(), "Every column: dtype, role, gaps, distinct values and whether the model uses it"
    )
    return sec


def add_quality(report: Report, explored: Explored) -> Section:
    """Step 2: missing values, duplicates, constants, IQR outliers, target balance."""
    prof, schema = explored.profile, explored.schema
    sec = report.section(
        "Data quality",
        "Gaps, repeats, useless columns, extreme values and the balance of the target: "
        "each changes what a model can learn or how its score should be read.",
    )
    if len(prof.missing):
        _table(sec, prof.missing, "Missing values per column")
        sec.figure(explore.missing_bar(prof.missing), "Share of rows missing each column")
    else:
        sec.text("No missing values.")
    dup = prof.overview["duplicate_rows"]
    sec.text(
        f"Duplicate rows: {dup:,} ({100 * dup / max(prof.overview['rows'], 1):.2f}% of rows). "
        "Exact repeats inflate a score when one copy lands in training and the other in the test set."
    )
    sec.text(
        "Constant columns (carry no information): "
        + (", ".join(prof.constant_columns) if prof.constant_columns else "none")
        + "."
    )
    if len(prof.outliers):
        _table(
            sec,
            prof.outliers,
            "Outliers by Tukey's rule: values beyond 1.5 × IQR outside the quartiles. "
            "They are flagged, not removed: a long tail is often real (prices, counts).",
        )
    _table(sec, prof.target_balance, f"Target {schema.target!r}")
    sec.figure(explore.target_plot(explored.frame[schema.target], schema.task))
    if schema.task == "classification":
        shares = prof.target_balance["share %"]
        sec.text(
            f"The most frequent class holds {shares.max():.1f}% of rows: always predicting it "
            f"(the baseline) is right {shares.max():.1f}% of the time."
        )
    return sec


def add_exploration(report: Report, explored: Explored, cfg: L1Config) -> Section:
    """Step 3-4: summaries, distributions, counts, correlations, Cramér's V, pair plot, plotly."""
    df, schema, prof = explored.frame, explored.schema, explored.profile
    target, task = schema.target, schema.task
    plot_rows = explore.sample(df, cfg.plot_rows, cfg.seed)
    stat_rows = explore.sample(df, cfg.stats_rows, cfg.seed)
    sampled = len(plot_rows) < len(df)
    note = f" (random sample of {len(plot_rows):,} rows)" if sampled else ""
    sec = report.section(
        "Exploration",
        "Summary statistics on every row; figures on a random sample when the file is large. "
        "Look for columns whose distributions differ between classes: those are the useful features.",
    )
    if len(prof.numeric_summary):
        _table(sec, prof.numeric_summary, "Numeric columns (skew > 1 means a long right tail)")
    if len(prof.categorical_summary):
        _table(sec, prof.categorical_summary, "Categorical columns")
    ranked = explore.rank_features(stat_rows, schema.numeric, target, task)
    top_numeric = list(ranked.index[: cfg.max_plot_columns])
    if top_numeric:
        how = "ANOVA F, between-class over within-class variance" if task == "classification" else "|r|"
        _table(
            sec,
            ranked.rename("score").to_frame().head(20),
            f"Numeric columns ranked by link to target ({how})",
        )
        sec.figure(
            explore.numeric_distributions(plot_rows, top_numeric, target, task),
            f"Distributions of the {len(top_numeric)} most target-related numeric columns{note}",
        )
    cats = [c for c in schema.categorical if c != target][: cfg.max_plot_columns]
    if cats:
        sec.figure(explore.categorical_counts(plot_rows, cats, target, task), f"Category counts{note}")
    corr_cols = schema.numeric + ([target] if task == "regression" else [])
    corr_cols = corr_cols[:16]
    if len(corr_cols) >= 2:
        corr = explore.correlations(stat_rows, corr_cols)
        sec.figure(
            explore.heatmap(corr, "Pearson correlation (numeric columns)"),
            "Correlation: +1 rise together, −1 one rises as the other falls, 0 no linear link"
            + (f" (on {len(stat_rows):,} sampled rows)" if len(stat_rows) < len(df) else ""),
        )
    assoc_cols = ([target] if task == "classification" else []) + cats
    if len(assoc_cols) >= 2:
        cv = explore.cramers_v_matrix(stat_rows, assoc_cols[:12])
        sec.figure(
            explore.heatmap(cv, "Cramér's V (categorical columns)", vmin=0, vmax=1, cmap="rocket_r"),
            "Cramér's V, bias-corrected: 0 no association, 1 one column determines the other",
        )
    pair_cols = top_numeric[:4]
    if len(pair_cols) >= 2:
        pair_rows = explore.sample(df, cfg.pairplot_rows, cfg.seed)
        sec.figure(
            explore.pair_plot(pair_rows, pair_cols, target, task),
            f"Pair plot of the {len(pair_cols)} most target-related numeric columns, {len(pair_rows):,} rows",
        )
        small = explore.sample(df, min(cfg.plot_rows, 2_000), cfg.seed)
        sec.plotly(
            explore.interactive_scatter(small, pair_cols[0], pair_cols[1], target, task),
            "Interactive (plotly): zoom with the mouse, hover for a row, click the legend to hide a class",
        )
        if task == "classification":
            sec.plotly(explore.interactive_boxes(small, top_numeric[:4], target))
    return sec


def add_missing(report: Report, comparison: MissingComparison, metric: str) -> Section:
    """Step 5: drop rows vs mean/median + most-frequent fill."""
    from level1_eda.missing import strategy_plot

    sec = report.section(
        "Missing values: drop or fill?",
        "The same model trained three ways on the training rows. Dropping keeps only complete rows; "
        "filling keeps every row and replaces gaps with the column's mean or median (numbers) or most "
        "frequent value (categories), learned from training rows only.",
    )
    _table(
        sec,
        comparison.scores,
        "Score of each strategy (cross-validated on training rows, then on the test rows)",
    )
    sec.figure(strategy_plot(comparison.scores, metric))
    if len(comparison.numeric_shift):
        _table(
            sec,
            comparison.numeric_shift,
            "How filling changes the numbers: the mean stays put (mean fill) but the spread shrinks, "
            "because every filled value sits at the centre",
        )
    if len(comparison.class_shift):
        _table(
            sec,
            comparison.class_shift,
            "Class shares before and after dropping incomplete rows: if gaps are not random, dropping "
            "changes the population the model learns from",
        )
    return sec


def add_features(report: Report, schema: Schema, names: list[str], split: Split) -> Section:
    """Step 6: the preprocessing pipeline and the one-hot columns it produced."""
    sec = report.section(
        "Features: one-hot encoding in a pipeline",
        "Numbers: median fill, then standard scaling. Categories: most-frequent fill, then one-hot "
        "encoding (one 0/1 column per level). Both live in one scikit-learn ColumnTransformer inside a "
        "Pipeline, fitted on the training rows only: the test rows never influence a fill value, a "
        "scaling factor or the list of categories (no leakage). A category never seen in training "
        "becomes all zeros instead of an error.",
    )
    sec.metrics(
        {
            "numeric features": len(schema.numeric),
            "categorical features": len(schema.categorical),
            "model inputs after one-hot": len(names),
            "training rows": f"{len(split.X_train):,}",
            "test rows": f"{len(split.X_test):,}",
        }
    )
    dropped = schema.dropped
    if dropped:
        sec.text("Not used: " + ", ".join(f"{c} ({r})" for c, r in dropped.items()) + ".")
    if schema.near_unique:
        notes = ", ".join(
            f"{c} {schema.columns[c].note.removeprefix(NEAR_UNIQUE).strip()}" for c in schema.near_unique
        )
        sec.text(
            f"Near-unique text, dropped like identifiers: {notes}. Almost every value of such a column "
            "(a ticket code, a cabin number) sits on one or two rows, so one-hot encoding would keep its "
            "most frequent values as noise features the model can only memorise, and most new rows would "
            "hold a value never seen in training."
        )
    shown = names[:300]
    chips = " ".join(f"<code>{html.escape(n)}</code>" for n in shown)
    more = f" … and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    sec.html(
        f"<p><strong>The {len(names)} model inputs</strong> (<code>num__</code>: scaled number, "
        f"<code>cat__column_level</code>: one-hot 0/1 column):</p>"
        f"<p style='line-height:1.9'>{chips}{more}</p>"
    )
    if split.notes:
        sec.html(_list(split.notes))
    return sec


def add_model(
    report: Report, trained: Trained, ev: Evaluation, task: str, *, fitted_on_rows: int | None = None
) -> Section:
    """Step 7: model vs baseline, test and cross-validation, and what the saved model was fitted on.

    Args:
        report: The report to add the section to.
        trained: Model and baseline fitted on the training rows, with their CV scores.
        ev: Their scores on the test rows.
        task: ``classification`` or ``regression``.
        fitted_on_rows: Rows the saved model was refitted on after the test, if it was.
    """
    metric = trained.cv_model["metric"]
    sec = report.section(
        "Model against baseline",
        (
            "LogisticRegression with default settings against a DummyClassifier that always predicts "
            "the most frequent class."
            if task == "classification"
            else "LinearRegression against a DummyRegressor that always predicts the training mean."
        )
        + f" Cross-validation: {trained.cv_model['folds']} folds on the training rows (mean ± std); "
        "test: the held-out rows, scored once.",
    )
    sec.metrics(
        {
            f"test {metric}": f"{ev.test[metric]:.3f}",
            f"baseline test {metric}": f"{ev.baseline_test[metric]:.3f}",
            f"cv {metric}": f"{trained.cv_model['mean']:.3f} ± {trained.cv_model['std']:.3f}",
            f"baseline cv {metric}": f"{trained.cv_baseline['mean']:.3f} ± {trained.cv_baseline['std']:.3f}",
        }
    )
    table = pd.DataFrame({"model": ev.test, "baseline": ev.baseline_test}).rename_axis("test metric")
    _table(sec, table, "Every test metric, model and baseline")
    folds = pd.DataFrame(
        {"model": trained.cv_model["scores"], "baseline": trained.cv_baseline["scores"]},
        index=pd.Index(range(1, trained.cv_model["folds"] + 1), name="fold"),
    )
    _table(sec, folds, f"{metric} per cross-validation fold: the spread shows how much one split can vary")
    if fitted_on_rows is not None:
        sec.text(
            f"The saved model (model.joblib) is this same pipeline refitted on all {fitted_on_rows:,} "
            f"labelled rows once the {len(ev.y_test):,} test rows had been scored: the test rows have done "
            "their job, and a model that learns from more rows is expected to do at least as well on new "
            "data. The scores above are those of the model fitted on the training rows only, the honest "
            "estimate for the saved one."
        )
    return sec


def add_evaluation(report: Report, trained: Trained, ev: Evaluation, task: str) -> Section:
    """Step 8: confusion matrix, per-class table / residuals, coefficients."""
    from level1_eda.evaluate import coefficient_plot, confusion_plot, residual_plot

    sec = report.section(
        "Evaluation",
        "Where the model is right and wrong on the test rows, and what it learned.",
    )
    if task == "classification":
        sec.figure(confusion_plot(ev.confusion), "Rows: true class. Columns: predicted class.")
        _table(
            sec,
            ev.per_class,
            "Precision: of the rows predicted as the class, the share right. Recall: of the rows of the "
            "class, the share found. F1: their harmonic mean.",
        )
    else:
        sec.figure(
            residual_plot(ev.y_test, ev.y_pred),
            "Residual plot: points should scatter evenly around zero; a curve or a funnel means the "
            "straight line misses a pattern",
        )
    sec.figure(
        coefficient_plot(ev.coefficients),
        "Coefficients on standardised numbers and 0/1 categories, so their sizes compare",
    )
    _table(sec, ev.coefficients.head(30), "Coefficients with feature names (largest first)")
    return sec


def add_timings(report: Report, timings: dict[str, Any]) -> None:
    """Run details at the bottom of the report."""
    report.meta.update({k: (f"{v:.2f} s" if isinstance(v, float) else v) for k, v in timings.items()})
