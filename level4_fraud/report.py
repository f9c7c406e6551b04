"""``report.html`` of a level-4 run, built from the run folder's files alone.

It reads what the stages wrote (`train.py`: ``comparison.csv``, ``scores/fold<k>.parquet``,
``run.json``, ``metrics.json``; the deep stage: ``deep/*.csv``), so ``python -m level4_fraud report
--run RUN`` rebuilds it at any time. Sections:

* the comparison table (test metrics per model, mean over the prequential folds) and how to read it;
* precision-recall and ROC curves per model (test rows of every fold pooled);
* recall per fraud scenario at each model's cost-optimal threshold (chosen on validation);
* score distributions of genuine and fraudulent test transactions per model;
* the ensemble: members, method, validation AP of the candidates;
* from the deep stage when it ran: its models, the mixture of experts' routing, the distillation /
  quantization table, the LoRA comparison and the Ray runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from level4_fraud import schema
from level4_fraud.train import COMPARISON_FILE, ENSEMBLE, METRICS_FILE, RUN_FILE, SCORES_DIR
from shared.errors import InputFileError
from shared.report import Report

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
DEEP_TABLES = {
    "metrics": "PyTorch models (fold 0)",
    "routing": "Mixture of experts: share of rows routed to each expert",
    "distillation": "Fast models for the real-time path: teacher, student, int8, ONNX",
    "lora": "Adapting the sequence model to a new bank: LoRA vs full fine-tuning vs scratch",
    "tune": "Ray Tune trials (Optuna search, ASHA early stopping)",
    "data_parallel": "Ray Train data-parallel run",
}
READING = (
    "Average precision (AP) is the area under the precision-recall curve: with 0.1-1 % fraud, "
    "ROC-AUC looks good for almost any model, AP does not. Card precision at 100 (CP@100) is the "
    "share of real frauds among the 100 cards a team of investigators could check each day (the "
    "Handbook's operational metric; its ceiling is the number of compromised cards a day / 100, "
    "so small populations cap it). Recall at 1 % FPR: share of frauds caught when 1 % of genuine "
    "transactions are flagged. Savings: fraud amount caught minus the review cost of every alert, "
    "at the threshold chosen on validation. Figures are means over the prequential test folds; "
    "_std columns give their spread."
)


def _read_scores(run_dir: Path) -> pd.DataFrame:
    files = sorted((run_dir / SCORES_DIR).glob("fold*.parquet"))
    if not files:
        return pd.DataFrame()
    parts = []
    for f in files:
        df = pd.read_parquet(f)
        df["fold"] = int(f.stem.removeprefix("fold"))
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def _models(scores: pd.DataFrame) -> list[str]:
    names = [c.removeprefix("score_") for c in scores.columns if c.startswith("score_")]
    return [m for m in names if m != ENSEMBLE] + ([ENSEMBLE] if ENSEMBLE in names else [])


def _curves_figure(test: pd.DataFrame, models: list[str]) -> Any:
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y = test[schema.TX_FRAUD].to_numpy(dtype=np.float64)
    fig, (ax_pr, ax_roc) = plt.subplots(1, 2, figsize=(12, 5))
    for m in models:
        s = test[f"score_{m}"].to_numpy()
        has = ~np.isnan(s)  # a model scored on some folds only (the deep stage's, by default)
        p, r, _ = precision_recall_curve(y[has], s[has])
        f, t, _ = roc_curve(y[has], s[has])
        width = 2.5 if m == ENSEMBLE else 1.2
        folds = "" if has.all() else f", {int(test.loc[has, 'fold'].nunique())} fold"
        ax_pr.plot(r, p, lw=width, label=f"{m} (AP {average_precision_score(y[has], s[has]):.3f}{folds})")
        ax_roc.plot(f, t, lw=width, label=f"{m} (AUC {roc_auc_score(y[has], s[has]):.3f}{folds})")
    ax_pr.axhline(y.mean(), ls=":", c="grey", label=f"fraud rate {y.mean():.2%}")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (test folds pooled)")
    ax_roc.plot([0, 1], [0, 1], ls=":", c="grey")
    ax_roc.set(
        xlabel="false-positive rate", ylabel="true-positive rate", title="ROC", xscale="log", xlim=(1e-4, 1)
    )
    ax_pr.legend(fontsize=8)
    ax_roc.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _scenario_recall(
    test: pd.DataFrame, models: list[str], thresholds: dict[int, dict[str, float]]
) -> pd.DataFrame:
    """Recall per scenario and model, each fold's rows alerted at that fold's threshold."""
    if not thresholds:
        return pd.DataFrame()
    alert = pd.DataFrame(np.nan, index=test.index, columns=models)
    for fold, thr in thresholds.items():
        rows = (test["fold"] == fold).to_numpy()
        for m in models:
            if m in thr:  # folds where the model was not scored stay NaN (left out of the mean)
                alert.loc[rows, m] = (test.loc[rows, f"score_{m}"].to_numpy() >= thr[m]).astype(float)
    scen = test[schema.TX_FRAUD_SCENARIO].to_numpy()
    codes = sorted(set(scen.tolist()) - {0, schema.SCENARIO_UNKNOWN})
    table = pd.DataFrame({schema.SCENARIO_NAMES.get(c, str(c)): alert[scen == c].mean() for c in codes})
    if not table.empty:
        table.loc["frauds in test"] = [float((scen == c).sum()) for c in codes]
    return table


def _scenario_figure(table: pd.DataFrame) -> Any:
    import matplotlib.pyplot as plt

    data = table.drop(index="frauds in test", errors="ignore")
    fig, ax = plt.subplots(figsize=(12, 4.5))
    data.T.plot.bar(ax=ax, width=0.8)
    ax.set(ylabel="recall at the validation threshold", ylim=(0, 1.05), title="Recall per fraud scenario")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return fig


def _distribution_figure(test: pd.DataFrame, models: list[str]) -> Any:
    import matplotlib.pyplot as plt

    n = len(models)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    y = test[schema.TX_FRAUD].to_numpy() == 1
    bins = np.linspace(-6, 0, 49)
    for ax, m in zip(axes.ravel(), models, strict=False):
        raw = test[f"score_{m}"].to_numpy(dtype=np.float64)
        has = ~np.isnan(raw)
        s = np.log10(np.clip(raw, 1e-6, 1))
        ax.hist(s[~y & has], bins=bins, density=True, alpha=0.6, label="genuine")
        ax.hist(s[y & has], bins=bins, density=True, alpha=0.6, label="fraud")
        ax.set(title=m, xlabel="log10 score")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Score distributions on the test folds (density)")
    fig.tight_layout()
    return fig


def _routing_figure(routing: pd.DataFrame) -> Any | None:
    import matplotlib.pyplot as plt

    experts = [c for c in routing.columns if c.startswith("expert_")]
    if not experts or "grouping" not in routing.columns:
        return None
    groupings = list(dict.fromkeys(routing["grouping"]))
    fig, axes = plt.subplots(
        1, len(groupings), figsize=(5.5 * len(groupings), 4), squeeze=False, constrained_layout=True
    )
    for ax, g in zip(axes.ravel(), groupings, strict=True):
        part = routing[routing["grouping"] == g].set_index("group")[experts].astype(float)
        im = ax.imshow(part.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set(title=f"routing by {g}", xticks=range(len(experts)), yticks=range(len(part)))
        ax.set_xticklabels([e.removeprefix("expert_") for e in experts])
        ax.set_yticklabels([str(i) for i in part.index], fontsize=8)
        ax.set_xlabel("expert")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="share of rows")
    return fig


def _save(fig: Any, folder: Path, name: str) -> bytes:
    from shared.plotting import png_bytes

    data = png_bytes(fig)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.png").write_bytes(data)
    return data


def build_report(run_dir: str | Path, *, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write ``report.html`` (and its figures as PNG under ``figures/``) for a run folder.

    Raises:
        InputFileError: The folder holds no comparison table (nothing evaluated yet).
    """
    run_dir = Path(run_dir)
    comparison = run_dir / COMPARISON_FILE
    if not comparison.is_file():
        raise InputFileError(f"{comparison} not found: evaluate the run first (`run` or `evaluate`)")
    table = pd.read_csv(comparison, index_col=0)
    info = json.loads((run_dir / RUN_FILE).read_text()) if (run_dir / RUN_FILE).is_file() else {}
    metrics = json.loads((run_dir / METRICS_FILE).read_text()) if (run_dir / METRICS_FILE).is_file() else {}
    figures = run_dir / FIGURES_DIR
    report = Report(
        title or "Level 4 — card-fraud detection", f"run {run_dir.name} · {metrics.get('dataset', '')}"
    )

    head = report.section("Results", READING)
    shown = ["average_precision", "card_precision_at_k", "roc_auc", "recall_at_fpr", "savings", "n_alerts"]
    cols = [c for c in shown if c in table.columns] + [f"{c}_std" for c in shown[:2] if f"{c}_std" in table]
    if ENSEMBLE in table.index:
        head.metrics(
            {
                "ensemble AP": float(table.loc[ENSEMBLE, "average_precision"]),
                "ensemble CP@100": float(table.loc[ENSEMBLE, "card_precision_at_k"]),
                "best member": str(metrics.get("best_member", "")),
                "folds": int(table.loc[ENSEMBLE, "folds"]) if "folds" in table else 0,
            }
        )
    head.table(table[cols], "Test metrics per model, mean over the prequential folds")

    scores = _read_scores(run_dir)
    test = (
        scores[(scores.get("split") == "test") & scores.get("evaluated", True)]
        if not scores.empty
        else scores
    )
    if not test.empty:
        test = test[test[schema.TX_FRAUD].notna()]
        models = _models(test)
        curves = report.section(
            "Precision-recall and ROC",
            "Every model's test scores (known-compromised cards removed, as in the protocol). The "
            "ROC's x axis is logarithmic: only the first percent of false positives matters to a bank.",
        )
        curves.image(_save(_curves_figure(test, models), figures, "pr_roc"))
        recall = _scenario_recall(test, models, _fold_thresholds(scores, run_dir))
        if not recall.empty:
            sec = report.section(
                "Recall per fraud scenario",
                "Share of each scenario's test frauds alerted at the model's cost-optimal threshold "
                "(chosen on validation, each fold its own). Compromised terminals and cards are "
                "learnt from the delayed terminal risk and card history; account takeover and card "
                "testing need the richer fields (new device, bursts of small amounts).",
            )
            sec.image(_save(_scenario_figure(recall), figures, "recall_by_scenario"))
            sec.table(recall, "Recall per scenario (last row: number of test frauds)")
        dist = report.section(
            "Score distributions",
            "How far each model separates fraud from genuine transactions; the ensemble's scores are "
            "calibrated probabilities.",
        )
        dist.image(_save(_distribution_figure(test, models), figures, "score_distributions"))

    ens = info.get("ensemble") or (metrics.get("ensembles") or [None])[0]
    if ens:
        sec = report.section(
            "The ensemble",
            "Members and combination chosen by blocked cross-validation on the validation week "
            "(rank averaging or stacking over every subset of two or more models), then calibrated.",
        )
        sec.metrics({"method": ens["method"], "members": ", ".join(ens["members"])})
        cand = pd.Series(ens.get("validation_average_precision", {}), name="validation AP").to_frame()
        if not cand.empty:
            sec.table(cand, "Best candidates (out-of-block validation AP)")
        if info.get("threshold") is not None:
            sec.text(f"Cost-optimal alert threshold (validation): {info['threshold']:.4g}")

    deep_dir = run_dir / "deep"
    if deep_dir.is_dir():
        sec = report.section("Deep models, fast path, LoRA and Ray", "The deep stage on fold 0 (`deep.py`).")
        for name, caption in DEEP_TABLES.items():
            path = deep_dir / f"{name}.csv"
            if not path.is_file():
                continue
            frame = pd.read_csv(path)
            if name == "routing":
                fig = _routing_figure(frame)
                if fig is not None:
                    sec.image(_save(fig, figures, "moe_routing"), caption)
            sec.table(frame, caption, index=False)
    return report.write(Path(out) if out else run_dir / "report.html")


def _fold_thresholds(scores: pd.DataFrame, run_dir: Path) -> dict[int, dict[str, float]]:
    """Each fold's validation thresholds, recomputed from its validation scores (cost-optimal)."""
    from level4_fraud import evaluate
    from level4_fraud.evaluate import EvaluationConfig

    review_cost = EvaluationConfig().review_cost
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():
        review_cost = float(json.loads(metrics_path.read_text()).get("review_cost", review_cost))
    out: dict[int, dict[str, float]] = {}
    for fold, part in scores.groupby("fold"):
        valid = part[part["split"] == "valid"]
        if valid.empty or valid[schema.TX_FRAUD].sum() == 0:
            continue
        out[int(fold)] = {
            m: evaluate.cost_optimal_threshold(
                valid[schema.TX_FRAUD].to_numpy(),
                valid[f"score_{m}"].to_numpy(),
                valid[schema.TX_AMOUNT].to_numpy(),
                review_cost,
            ).threshold
            for m in _models(valid)
            if valid[f"score_{m}"].notna().all()
        }
    return out
