"""Metrics and curves: PR, ROC, calibration, cumulative gain and lift, SHAP summary.

The metric functions are pure (arrays in, numbers out); the plot functions return matplotlib figures
for the report. PR-AUC is average precision (the step-wise area, no optimistic interpolation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _both_classes(y: np.ndarray) -> bool:
    return 0 < int(np.sum(y)) < len(y)


def pr_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision; NaN when only one class is present."""
    y = np.asarray(y)
    return float(average_precision_score(y, scores)) if _both_classes(y) else float("nan")


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC; NaN when only one class is present."""
    y = np.asarray(y)
    return float(roc_auc_score(y, scores)) if _both_classes(y) else float("nan")


def lift_at(y: np.ndarray, scores: np.ndarray, fraction: float = 0.1) -> float:
    """Churn rate among the top `fraction` by score divided by the overall churn rate.

    Top-decile lift (``fraction=0.1``) is bounded by ``1 / base_rate``.
    """
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or y.sum() == 0:
        return float("nan")
    k = max(1, int(np.ceil(fraction * len(y))))
    top = np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def cumulative_gain(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of all churners caught (y axis) when contacting the top share of customers (x axis)."""
    y = np.asarray(y, dtype=float)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    caught = np.concatenate([[0.0], np.cumsum(y[order])]) / max(y.sum(), 1.0)
    share = np.arange(len(y) + 1) / max(len(y), 1)
    return share, caught


def classification_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The per-window metric set: PR-AUC, ROC-AUC, top-decile lift, Brier, log loss, base rate."""
    y = np.asarray(y).astype(int)
    scores = np.clip(np.asarray(scores, dtype=float), 1e-7, 1 - 1e-7)
    both = _both_classes(y)
    return {
        "pr_auc": pr_auc(y, scores),
        "roc_auc": roc_auc(y, scores),
        "top_decile_lift": lift_at(y, scores, 0.1),
        "brier": float(brier_score_loss(y, scores)),
        "log_loss": float(log_loss(y, scores, labels=[0, 1])) if both else float("nan"),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "rows": len(y),
    }


def summarise_folds(
    per_fold: pd.DataFrame, metrics: tuple[str, ...] = ("pr_auc", "roc_auc")
) -> dict[str, float]:
    """Mean and standard deviation of each metric across folds (``pr_auc_mean``, ``pr_auc_std``)."""
    out: dict[str, float] = {}
    for m in metrics:
        if m in per_fold:
            out[f"{m}_mean"] = float(per_fold[m].mean())
            out[f"{m}_std"] = float(per_fold[m].std(ddof=1)) if len(per_fold) > 1 else 0.0
    return out


def calibration_table(y: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn rate in quantile bins of the prediction."""
    df = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(probs, dtype=float)})
    df["bin"] = pd.qcut(df["p"].rank(method="first"), q=min(n_bins, len(df)), labels=False)
    return df.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"), rows=("y", "size"))


# ---------------------------------------------------------------- figures


def _fig(ncols: int = 1, width: float = 6.0) -> tuple[Figure, np.ndarray]:
    import matplotlib.pyplot as plt

    from shared.plotting import set_theme

    set_theme()
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.6), squeeze=False)
    return fig, axes[0]


def plot_pr_roc(y: np.ndarray, curves: dict[str, np.ndarray], title: str = "") -> Figure:
    """PR and ROC curves of several scorers (name -> scores) on the same labels."""
    fig, (ax_pr, ax_roc) = _fig(2)
    y = np.asarray(y).astype(int)
    for name, scores in curves.items():
        p, r, _ = precision_recall_curve(y, scores)
        ax_pr.step(r, p, where="post", label=f"{name} (AP {pr_auc(y, scores):.3f})")
        fpr, tpr, _ = roc_curve(y, scores)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y, scores):.3f})")
    ax_pr.axhline(y.mean(), ls=":", c="grey", label=f"base rate {y.mean():.3f}")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax_roc.plot([0, 1], [0, 1], ls=":", c="grey")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax_pr.legend(fontsize=8)
    ax_roc.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_calibration(y: np.ndarray, curves: dict[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Reliability diagram: mean predicted vs observed churn rate per quantile bin."""
    fig, (ax,) = _fig(1, 6.5)
    hi = 0.0
    for name, probs in curves.items():
        tab = calibration_table(y, probs, n_bins)
        brier = brier_score_loss(np.asarray(y).astype(int), np.clip(probs, 0, 1))
        ax.plot(tab["predicted"], tab["observed"], marker="o", label=f"{name} (Brier {brier:.4f})")
        hi = max(hi, float(tab[["predicted", "observed"]].to_numpy().max()))
    hi = min(1.0, hi * 1.05 + 1e-3)
    ax.plot([0, hi], [0, hi], ls=":", c="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gain_lift(y: np.ndarray, curves: dict[str, np.ndarray]) -> Figure:
    """Cumulative gain and lift by contacted share."""
    fig, (ax_g, ax_l) = _fig(2)
    y = np.asarray(y).astype(float)
    for name, scores in curves.items():
        share, caught = cumulative_gain(y, scores)
        ax_g.plot(share, caught, label=name)
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = np.where(share > 0, caught / share, np.nan)
        ax_l.plot(share[1:], lift[1:], label=f"{name} (top decile {lift_at(y, scores):.2f})")
    ax_g.plot([0, 1], [0, 1], ls=":", c="grey", label="random")
    ax_g.set(xlabel="share contacted", ylabel="share of churners caught", title="Cumulative gain")
    ax_l.axhline(1, ls=":", c="grey")
    ax_l.axvline(0.1, ls="--", c="grey", lw=0.8)
    ax_l.set(xlabel="share contacted", ylabel="lift", title="Lift", xlim=(0, 1))
    ax_g.legend(fontsize=8)
    ax_l.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_profit(curves: dict[str, np.ndarray], chosen_k: int | None = None) -> Figure:
    """Campaign profit against the number of customers contacted (top-k by score)."""
    fig, (ax,) = _fig(1, 8)
    for name, curve in curves.items():
        ax.plot(np.arange(len(curve)), curve, label=name)
    if chosen_k is not None:
        ax.axvline(chosen_k, ls="--", c="grey", label=f"chosen k = {chosen_k}")
    ax.axhline(0, c="black", lw=0.6)
    ax.set(xlabel="customers contacted (top-k)", ylabel="profit", title="Campaign profit by campaign size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_fold_metrics(per_fold: pd.DataFrame, metric: str = "pr_auc") -> Figure:
    """One metric per fold for each model (long table with columns model, fold, metric)."""
    import seaborn as sns

    fig, (ax,) = _fig(1, 7.5)
    sns.barplot(data=per_fold, x="fold", y=metric, hue="model", ax=ax)
    ax.set(title=f"Walk-forward {metric} per fold", ylabel=metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def shap_values(booster: object, X: pd.DataFrame) -> np.ndarray:
    """Exact TreeSHAP values from LightGBM itself (``pred_contrib``), without the bias column."""
    contrib = booster.predict(X, pred_contrib=True)  # type: ignore[attr-defined]
    return np.asarray(contrib)[:, :-1]


def plot_shap_summary(values: np.ndarray, X: pd.DataFrame, max_display: int = 15) -> Figure:
    """SHAP beeswarm summary; categorical columns are shown by category code."""
    import matplotlib.pyplot as plt
    import shap

    from shared.plotting import set_theme

    set_theme()
    shown = X.copy()
    for c in shown.columns:
        if isinstance(shown[c].dtype, pd.CategoricalDtype):
            shown[c] = shown[c].cat.codes.replace(-1, np.nan).astype(float)
    shown = shown.astype(float)
    plt.figure(figsize=(8, 0.35 * min(max_display, X.shape[1]) + 1.5))
    shap.summary_plot(values, shown, max_display=max_display, show=False, plot_size=None)
    fig = plt.gcf()
    fig.suptitle("SHAP summary (test window)")
    fig.tight_layout()
    return fig
