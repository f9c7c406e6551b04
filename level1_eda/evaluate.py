"""Evaluation on the held-out test rows: metrics, tables and their figures.

Pure functions of ``(y_true, y_pred)`` so they can be checked against known
answers; the figures only draw what the tables hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from level1_eda.features import feature_names
from level1_eda.results import Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from level1_eda.train import Split, Trained


def classification_metrics(y_true: pd.Series, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy (share right), balanced accuracy (mean recall per class) and macro F1."""
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def regression_metrics(y_true: pd.Series, y_pred: np.ndarray) -> dict[str, float]:
    """R² (share of variance explained), MAE and RMSE (in the target's units)."""
    return {
        "r2": float(skm.r2_score(y_true, y_pred)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
    }


def task_metrics(task: str, y_true: pd.Series, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics of a task (classification or regression)."""
    if task == "classification":
        return classification_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


def per_class_table(y_true: pd.Series, y_pred: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 and support per class."""
    labels = sorted(pd.unique(pd.concat([pd.Series(y_true), pd.Series(y_pred)])), key=str)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s}, index=[str(c) for c in labels])
    table.index.name = "class"
    return table


def confusion_table(y_true: pd.Series, y_pred: np.ndarray, labels: list[Any]) -> pd.DataFrame:
    """Counts of (true class, predicted class): the diagonal holds the right answers."""
    m = skm.confusion_matrix(y_true, y_pred, labels=labels)
    names = [str(c) for c in labels]
    return pd.DataFrame(
        m, index=pd.Index(names, name="true class"), columns=pd.Index(names, name="predicted class")
    )


def coefficients(model: Pipeline) -> pd.DataFrame:
    """The linear model's coefficients, one row per input feature (one column per class).

    Features are standardised (numbers) or 0/1 (one-hot), so sizes compare:
    a coefficient is the change in log-odds (classification) or in the target
    (regression) for one standard deviation, or for having that category.
    """
    est = model.named_steps["model"]
    names = feature_names(model)
    coef = np.atleast_2d(est.coef_)
    if coef.shape[0] == 1:
        col = "coefficient"
        if hasattr(est, "classes_") and len(est.classes_) == 2:
            col = f"coefficient (towards {est.classes_[1]})"
        table = pd.DataFrame({col: coef[0]}, index=names)
    else:
        table = pd.DataFrame(coef.T, index=names, columns=[str(c) for c in est.classes_])
    table.index.name = "feature"
    order = table.abs().max(axis=1).sort_values(ascending=False).index
    return table.loc[order]


def evaluate_test(trained: Trained, split: Split, task: str) -> Evaluation:
    """Score the model fitted on the training rows, and the baseline, on the held-out test rows.

    Args:
        trained: The model and baseline fitted on ``split``'s training rows only.
        split: Train and test rows; only the test rows are scored.
        task: ``classification`` or ``regression``.
    """
    y_pred = trained.model.predict(split.X_test)
    base_pred = trained.baseline.predict(split.X_test)
    test = task_metrics(task, split.y_test, y_pred)
    baseline_test = task_metrics(task, split.y_test, base_pred)
    if task == "classification":
        labels = list(trained.model.named_steps["model"].classes_)
        per_class = per_class_table(split.y_test, y_pred)
        confusion = confusion_table(split.y_test, y_pred, labels)
    else:
        per_class = confusion = pd.DataFrame()
    return Evaluation(
        test, baseline_test, split.y_test, y_pred, per_class, confusion, coefficients(trained.model)
    )


# ---------------------------------------------------------------------------- figures


def confusion_plot(table: pd.DataFrame) -> Figure:
    """The confusion matrix as counts, shaded by the share of each true class."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    shares = table.div(table.sum(axis=1).replace(0, 1), axis=0)
    n = len(table)
    fig, ax = plt.subplots(figsize=(2.2 + 0.9 * n, 1.6 + 0.75 * n))
    annot = table.astype(str) + "\n" + (100 * shares).round(0).astype(int).astype(str) + "%"
    sns.heatmap(shares, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax, linewidths=0.5)
    ax.set_title("Confusion matrix (test rows)")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(axis="x", rotation=0)
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def coefficient_plot(table: pd.DataFrame, top: int = 20) -> Figure:
    """Largest coefficients as a heatmap (one column per class) or a bar chart (one column)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    shown = table.head(top)
    if shown.shape[1] == 1:
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(shown) + 1.2))
        values = shown.iloc[:, 0]
        colors = ["#55A868" if v > 0 else "#C44E52" for v in values]
        ax.barh(shown.index[::-1], values[::-1], color=colors[::-1])
        ax.axvline(0, color="#444", lw=0.8)
        ax.set_xlabel(shown.columns[0])
    else:
        fig, ax = plt.subplots(figsize=(2.5 + 1.1 * shown.shape[1], 0.32 * len(shown) + 1.4))
        lim = float(np.abs(shown.to_numpy()).max()) or 1.0
        sns.heatmap(shown, annot=True, fmt=".2f", cmap="vlag", vmin=-lim, vmax=lim, ax=ax, cbar=False)
        ax.set_xlabel("class")
    ax.set_ylabel("")
    ax.set_title(f"Largest coefficients (top {len(shown)} of {len(table)})")
    fig.tight_layout()
    return fig


def residual_plot(y_true: pd.Series, y_pred: np.ndarray) -> Figure:
    """Predicted against actual, and residuals against predicted (should look like noise)."""
    import matplotlib.pyplot as plt

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if len(y_true) > 5000:  # a scatter of 5,000 points shows the pattern and keeps the PNG small
        idx = np.random.default_rng(0).choice(len(y_true), 5000, replace=False)
        y_true, y_pred = y_true[idx], y_pred[idx]
    resid = y_true - y_pred
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.scatter(y_true, y_pred, s=10, alpha=0.5, edgecolor="none")
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    a.plot([lo, hi], [lo, hi], color="#C44E52", lw=1, label="perfect prediction")
    a.set_xlabel("actual")
    a.set_ylabel("predicted")
    a.legend(loc="upper left")
    a.set_title("Predicted against actual (test rows)")
    b.scatter(y_pred, resid, s=10, alpha=0.5, edgecolor="none")
    b.axhline(0, color="#C44E52", lw=1)
    b.set_xlabel("predicted")
    b.set_ylabel("residual (actual − predicted)")
    b.set_title("Residuals: no pattern means the line fits")
    fig.tight_layout()
    return fig
