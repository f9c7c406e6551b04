"""Missing values: drop the rows, or fill them in? Compare both on the same data.

* **drop rows** — keep only complete rows. Simple and honest, but it throws
  away every row with a single gap (often most of them, when many columns each
  miss a little), can shift the class balance if gaps are not random, and
  cannot help at prediction time: a new row with a gap still needs a value.
* **mean / median fill** for numbers and **most-frequent** fill for
  categories — keep every row. The filled values pull each column towards its
  centre (the spread shrinks), which the table below shows. The median is
  robust to outliers; the mean is not.

The fill values are learned inside the pipeline from the training rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from level1_eda.config import L1Config
from level1_eda.evaluate import task_metrics
from level1_eda.schema import Schema
from level1_eda.train import build_model, cross_validate, scoring

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from level1_eda.train import Split

STRATEGIES = ("drop rows", "mean fill", "median fill")


@dataclass
class MissingComparison:
    """How each strategy changes the data and the model's score."""

    scores: pd.DataFrame
    numeric_shift: pd.DataFrame
    class_shift: pd.DataFrame


def numeric_shift(X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean and standard deviation of each numeric column with gaps: observed, after each strategy."""
    rows = {}
    complete = X.dropna()
    for col in columns:
        v = pd.to_numeric(X[col], errors="coerce")
        if not v.isna().any():
            continue
        mean_fill = v.fillna(v.mean())
        median_fill = v.fillna(v.median())
        dropped = pd.to_numeric(complete[col], errors="coerce")
        rows[col] = {
            "missing": int(v.isna().sum()),
            "mean (observed)": v.mean(),
            "std (observed)": v.std(),
            "std after mean fill": mean_fill.std(),
            "mean after median fill": median_fill.mean(),
            "std after median fill": median_fill.std(),
            "mean after drop rows": dropped.mean(),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "column"
    return table


def class_shift(X: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    """Class shares among all rows and among complete rows (what dropping keeps)."""
    complete = X.notna().all(axis=1)
    table = pd.DataFrame(
        {
            "all rows %": 100 * y.value_counts(normalize=True),
            "complete rows %": 100 * y[complete].value_counts(normalize=True),
        }
    ).fillna(0.0)
    table["change (points)"] = table["complete rows %"] - table["all rows %"]
    table.index = table.index.map(str)
    table.index.name = "class"
    return table


def compare_strategies(
    split: Split, schema: Schema, cfg: L1Config, *, max_rows: int = 20_000
) -> MissingComparison:
    """Cross-validate and test the same model under each missing-value strategy.

    Args:
        split: Train/test rows; the comparison uses at most `max_rows` training rows.
        schema: Feature columns and task.
        cfg: Seed and folds.
        max_rows: Cap on training rows (3 strategies × k folds refit the model).
    """
    X, y = split.X_train, split.y_train
    if len(X) > max_rows:
        X = X.sample(n=max_rows, random_state=cfg.seed)
        y = y.loc[X.index]
    metric = scoring(schema.task)
    rows = []
    for strategy in STRATEGIES:
        if strategy == "drop rows":
            keep = X.notna().all(axis=1)
            Xs, ys = X[keep], y[keep]
            model = build_model(schema, cfg)  # imputers see no gaps in training
        else:
            Xs, ys = X, y
            model = build_model(schema, cfg, numeric_strategy=strategy.split()[0])
        row: dict[str, object] = {
            "strategy": strategy,
            "training rows": len(Xs),
            "rows lost %": 100 * (1 - len(Xs) / max(len(X), 1)),
        }
        usable = len(Xs) >= 10 and (schema.task != "classification" or ys.value_counts().min() >= 2)
        if usable and (schema.task != "classification" or ys.nunique() >= 2):
            cv = cross_validate(model, Xs, ys, schema.task, cfg)
            model.fit(Xs, ys)
            row[f"cv {metric} mean"] = cv["mean"]
            row[f"cv {metric} std"] = cv["std"]
            row[f"test {metric}"] = task_metrics(schema.task, split.y_test, model.predict(split.X_test))[
                metric
            ]
        rows.append(row)
    scores = pd.DataFrame(rows).set_index("strategy")
    shifts = numeric_shift(X, schema.numeric)
    classes = class_shift(X, y) if schema.task == "classification" else pd.DataFrame()
    return MissingComparison(scores, shifts, classes)


def strategy_plot(scores: pd.DataFrame, metric: str) -> Figure:
    """Cross-validated score (mean ± std) and share of training rows kept, per strategy."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.0))
    names = list(scores.index)
    mean_col, std_col = f"cv {metric} mean", f"cv {metric} std"
    if mean_col in scores:
        a.barh(names, scores[mean_col], xerr=scores[std_col], color="#4C72B0", capsize=4)
        lo = float((scores[mean_col] - scores[std_col]).min())
        a.set_xlim(
            max(0.0, lo - 0.05) if metric == "accuracy" else lo - 0.05,
            min(1.0, float(scores[mean_col].max()) + 0.05),
        )
        for i, v in enumerate(scores[mean_col]):
            a.annotate(f"{v:.3f}", (v, i), xytext=(6, 6), textcoords="offset points", fontsize=9)
    a.set_title(f"Cross-validated {metric} (mean ± std)")
    a.invert_yaxis()
    kept = 100 - scores["rows lost %"]
    b.barh(names, kept, color="#55A868")
    b.set_xlim(0, 110)
    for i, v in enumerate(kept):
        b.annotate(f"{v:.1f}%", (v, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
    b.set_title("Training rows kept")
    b.invert_yaxis()
    b.set_yticklabels([])
    fig.tight_layout()
    return fig
