"""The run's `report.html`: every curve and table, with figures also saved as PNGs under ``figures/``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from level2_churn import evaluate as ev
from level2_churn.business import Economics
from level2_churn.train import ModellingResult, imbalance_table, profit_curves
from shared.atomic import atomic_write_bytes
from shared.plotting import png_bytes
from shared.report import Report, Section

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _add(section: Section, fig: Figure, fig_dir: Path, name: str, caption: str) -> None:
    data = png_bytes(fig)
    atomic_write_bytes(fig_dir / f"{name}.png", data)
    section.image(data, caption)


def _mean_std(df: pd.DataFrame, metrics: tuple[str, ...]) -> dict[str, str]:
    return {m: f"{df[m].mean():.4f} ± {df[m].std(ddof=1):.4f}" for m in metrics if m in df}


def plot_trials(trials: pd.DataFrame) -> Figure:
    """Objective per trial (pruned trials marked) and the running best."""
    fig, (ax,) = ev._fig(1, 8)
    done = trials[trials["state"] == "complete"]
    pruned = trials[trials["state"] == "pruned"]
    ax.scatter(done["trial"], done["pr_auc_mean"], label="complete", zorder=3)
    if len(pruned):
        ax.scatter(
            pruned["trial"],
            pruned["running_mean_when_stopped"],
            marker="x",
            c="grey",
            label="pruned (running mean when stopped)",
        )
    best = done.set_index("trial")["pr_auc_mean"].cummax()
    ax.step(best.index, best.to_numpy(), where="post", c="C3", label="best so far")
    ax.set(xlabel="trial", ylabel="walk-forward PR-AUC (mean over folds)", title="Optuna TPE search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _summary_section(rep: Report, res: ModellingResult) -> None:
    tm, bm = res.test_metrics, res.baseline_test_metrics
    cards: dict[str, Any] = {"test PR-AUC (LightGBM)": tm["pr_auc"], "test PR-AUC (logistic)": bm["pr_auc"]}
    if res.oracle_test is not None:
        cards["test PR-AUC (oracle)"] = res.oracle_test["pr_auc"]
        cards["share of oracle"] = f"{tm['pr_auc'] / res.oracle_test['pr_auc']:.1%}"
    cards |= {
        "test ROC-AUC": tm["roc_auc"],
        "top-decile lift": tm["top_decile_lift"],
        "campaign profit": f"{res.campaign['profit']:,.0f}",
        "contact everybody": f"{res.campaign['profit_everybody']:,.0f}",
        "random k": f"{res.campaign['profit_random_k']:,.0f}",
    }
    rep.section(
        "Summary", "Final test window, touched once after every choice was made on validation folds."
    ).metrics(cards)


def _data_sections(rep: Report, data_sections: list[tuple[str, str, list[Any]]] | None) -> None:
    for sec_title, intro, blocks in data_sections or []:
        sec = rep.section(sec_title, intro)
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                sec.table(block, index=False)
            else:
                sec.text(str(block))


def _evaluation_design_section(rep: Report, res: ModellingResult) -> None:
    sec = rep.section(
        "Evaluation design",
        "Walk-forward (expanding window): each fold trains on every snapshot month before its validation "
        "month minus a gap, so no training label is still open when the fold is scored. The latest "
        "months are the final test."
        if res.plan.kind == "walk_forward"
        else "No time axis: a stratified hold-out test set and stratified folds on the rest.",
    )
    sec.table(res.plan.describe(), index=False)


def _per_fold_section(rep: Report, res: ModellingResult, fig_dir: Path) -> None:
    per_fold = pd.concat(
        [res.baseline.per_fold.assign(model="logistic"), res.tuned.per_fold.assign(model="lightgbm (tuned)")]
        + ([res.oracle_folds.assign(model="oracle")] if res.oracle_folds is not None else []),
        ignore_index=True,
    )
    sec = rep.section("Baseline vs LightGBM per fold", "Every metric per validation fold; mean ± std below.")
    cols = ["model", "fold", "pr_auc", "roc_auc", "top_decile_lift", "brier", "base_rate", "rows"]
    sec.table(per_fold[cols], index=False)
    spread = pd.DataFrame(
        {
            name: _mean_std(g, ("pr_auc", "roc_auc", "top_decile_lift", "brier"))
            for name, g in per_fold.groupby("model")
        }
    ).T
    sec.table(spread, caption="mean ± std over folds")
    _add(sec, ev.plot_fold_metrics(per_fold, "pr_auc"), fig_dir, "folds_pr_auc", "PR-AUC per fold")


def _imbalance_section(rep: Report, res: ModellingResult) -> None:
    sec = rep.section(
        "Class imbalance",
        f"Default LightGBM under each treatment, applied to training windows only. Chosen: "
        f"{res.imbalance_choice} (the simplest treatment within the tolerance of the best mean PR-AUC; "
        "order: none, class weights, undersampling, SMOTE).",
    )
    sec.table(imbalance_table(res.imbalance_runs))


def _selection_section(rep: Report, res: ModellingResult) -> None:
    sec = rep.section(
        "Feature selection",
        "Constant and near-duplicate features dropped, then permutation importance measured on the latest "
        "part of each fold's training window; the fold's validation window never takes part. "
        + (
            "Selection is used (it costs no PR-AUC)."
            if res.selection_used
            else "Selection is not used: it cost PR-AUC."
        ),
    )
    if len(res.selection_table):
        sec.table(res.selection_table, index=False)
    kept = pd.DataFrame({"feature": res.model.features})
    if len(res.final_selection.importance):
        kept["permutation_importance"] = res.final_selection.importance.reindex(kept["feature"]).to_numpy()
    sec.table(kept, caption="features of the final model", index=False)
    if res.final_selection.dropped:
        sec.table(pd.Series(res.final_selection.dropped, name="reason").to_frame(), caption="dropped")


def _search_section(rep: Report, res: ModellingResult, fig_dir: Path) -> None:
    sec = rep.section(
        "Bayesian search (Optuna TPE)",
        "Each trial trains on the folds in order and reports its running mean PR-AUC; the median pruner "
        "stops trials below the median of earlier trials at the same fold. Every trial is an MLflow run.",
    )
    _add(sec, plot_trials(res.trials), fig_dir, "search", "trial values")
    sec.table(res.trials, index=False)
    sec.table(pd.Series(res.best_params, name="value").to_frame(), caption="best parameters")


def _calibration_section(rep: Report, res: ModellingResult, fig_dir: Path) -> None:
    sec = rep.section(
        "Calibration",
        f"Isotonic vs Platt scaling, each fitted on validation folds the scored fold never joined. Chosen: "
        f"{res.calibration_method} (lower log loss).",
    )
    sec.table(res.calibration_table)
    curves = {
        "lightgbm calibrated": res.test_probs,
        "lightgbm raw": res.test_raw,
        "logistic": res.baseline_test_probs,
    }
    if res.test_oracle_probs is not None:
        curves["oracle"] = res.test_oracle_probs
    _add(
        sec, ev.plot_calibration(res.y_test, curves), fig_dir, "calibration", "reliability on the test window"
    )


def _test_window_section(rep: Report, res: ModellingResult, fig_dir: Path) -> None:
    tm, bm = res.test_metrics, res.baseline_test_metrics
    sec = rep.section("Test window", "PR and ROC curves, cumulative gain and lift.")
    test_tab = pd.DataFrame(
        {"lightgbm": tm, "logistic": bm} | ({"oracle": res.oracle_test} if res.oracle_test else {})
    )
    sec.table(test_tab)
    rank_curves = {"lightgbm": res.test_probs, "logistic": res.baseline_test_probs}
    if res.test_oracle_probs is not None:
        rank_curves["oracle"] = res.test_oracle_probs
    _add(sec, ev.plot_pr_roc(res.y_test, rank_curves), fig_dir, "pr_roc", "precision-recall and ROC")
    _add(sec, ev.plot_gain_lift(res.y_test, rank_curves), fig_dir, "gain_lift", "cumulative gain and lift")


def _campaign_section(rep: Report, res: ModellingResult, econ: Economics, fig_dir: Path) -> None:
    sec = rep.section(
        "Business metric: retention campaign",
        f"Contact cost {econ.contact_cost:g}, save rate {econ.save_rate:g}, customer lifetime value "
        f"{econ.clv:g}. Contacting pays when the churn probability exceeds {econ.breakeven_probability:.3f}. "
        f"The threshold ({res.threshold:.3f}) was chosen on calibrated validation predictions and applied "
        "once to the test window.",
    )
    camp = pd.DataFrame(
        {
            "policy": ["model (chosen threshold)", "nobody", "everybody", "random k", "hindsight best k"],
            "contacted": [
                res.campaign["k"],
                0,
                res.campaign["n"],
                res.campaign["k"],
                res.campaign["k_hindsight_best"],
            ],
            "profit": [
                res.campaign["profit"],
                0.0,
                res.campaign["profit_everybody"],
                res.campaign["profit_random_k"],
                res.campaign["profit_hindsight_best"],
            ],
        }
    )
    sec.table(camp, index=False, float_format="{:,.0f}")
    _add(
        sec,
        ev.plot_profit(profit_curves(res, econ), int(res.campaign["k"])),
        fig_dir,
        "profit",
        "profit by campaign size",
    )


def _shap_section(rep: Report, res: ModellingResult, fig_dir: Path) -> None:
    if res.shap is not None:
        sec = rep.section("SHAP summary", "TreeSHAP values of the final LightGBM on a test-window sample.")
        values, X = res.shap
        _add(sec, ev.plot_shap_summary(values, X), fig_dir, "shap_summary", "SHAP summary")


def _run_section(rep: Report, res: ModellingResult, registry: dict[str, Any] | None) -> None:
    sec = rep.section("Run")
    info = {f"seconds: {k}": f"{v:.1f}" for k, v in res.timings.items()}
    if registry:
        info |= {f"mlflow {k}": str(v) for k, v in registry.items()}
    sec.table(pd.Series(info, name="value").to_frame())


def build_report(
    res: ModellingResult,
    *,
    run_dir: Path,
    econ: Economics,
    title: str,
    subtitle: str,
    data_sections: list[tuple[str, str, list[Any]]] | None = None,
    registry: dict[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/report.html`` (and ``run_dir/figures/*.png``) and return its path.

    Args:
        res: The modelling result.
        run_dir: The run folder.
        econ: Campaign economics (for the profit curves).
        title: Report title.
        subtitle: One line under the title (data set, profile).
        data_sections: Extra leading sections: ``(title, intro, [DataFrame | str, ...])``; tables are
            shown without their index (give meaningful row labels as a column).
        registry: What was registered in MLflow (name, version, alias).
    """
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rep = Report(title, subtitle)
    # Section order is the report's reading order: headline numbers, the data, then each modelling
    # choice in the order it was made, the test window, and what the run cost.
    _summary_section(rep, res)
    _data_sections(rep, data_sections)
    _evaluation_design_section(rep, res)
    _per_fold_section(rep, res, fig_dir)
    _imbalance_section(rep, res)
    _selection_section(rep, res)
    _search_section(rep, res, fig_dir)
    _calibration_section(rep, res, fig_dir)
    _test_window_section(rep, res, fig_dir)
    _campaign_section(rep, res, econ, fig_dir)
    _shap_section(rep, res, fig_dir)
    _run_section(rep, res, registry)
    return rep.write(run_dir / "report.html")
