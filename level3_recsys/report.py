"""`report.html` and `metrics.json` of a level-3 run.

The comparison table comes from `evaluate.evaluate_models` (one row per model).
Plots: ranking quality per model, coverage against novelty, cold-start
quality, expected CTR against the oracle, and popularity bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.errors import DataError
from shared.metrics import write_metrics
from shared.report import Report

LEVEL = 3


def _num(table: pd.DataFrame, col: str) -> pd.Series | None:
    if col not in table.columns:
        return None
    values = pd.to_numeric(table[col], errors="coerce")
    return None if values.isna().all() else values


def write_run_metrics(
    run_dir: Path,
    table: pd.DataFrame,
    *,
    metric: str = "ndcg@10",
    dataset: str = "simulated",
    extra: dict[str, Any] | None = None,
) -> tuple[Path, str, float]:
    """Write ``metrics.json``: the best model's metrics at the top level, every model under ``models``.

    Returns:
        The path, the best model's name and its headline value.
    """
    if metric not in table.columns or table.empty:
        raise DataError(f"the comparison table has no {metric!r} column to pick a winner by")
    best = str(pd.to_numeric(table[metric]).idxmax())
    row = {str(k): v for k, v in table.loc[best].items() if isinstance(v, int | float | np.number)}
    models = {
        str(name): {str(k): v for k, v in r.items() if isinstance(v, int | float | np.number)}
        for name, r in table.iterrows()
    }
    value = float(row[metric])
    path = write_metrics(
        run_dir / "metrics.json",
        level=LEVEL,
        dataset=dataset,
        headline_metric=metric,
        headline_value=value,
        best_model=best,
        **row,
        models=models,
        **(extra or {}),
    )
    return path, best, value


def _bar(ax: Any, values: pd.Series, title: str, color: str) -> None:
    ordered = values.sort_values()
    ax.barh(ordered.index.astype(str), ordered.to_numpy(), color=color)
    ax.set_title(title)
    for y, v in enumerate(ordered.to_numpy()):
        if np.isfinite(v):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=9)
    ax.margins(x=0.18)


def _label_points(ax: Any, names: list[str], xs: np.ndarray, ys: np.ndarray, marker_pt: float = 4.5) -> None:
    """Name each point of a scatter plot so that no label covers another label or a point.

    Greedy placement, densest first: each label tries beside its point (right, left, above,
    below), then further up or down with a thin leader line back to the point, and takes the
    first place that is inside the axes and clear of every point and every label placed so
    far. Models with near-equal coverage and novelty (ALS, EASE and the two-stage ranker
    usually are) stay readable.
    """
    fig = ax.figure
    fig.canvas.draw()  # text sizes are only known once there is a renderer
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    points = ax.transData.transform(np.column_stack([xs, ys]).astype(float))
    r = marker_pt * px_per_pt
    gap = 3.0 * px_per_pt
    obstacles = [(x - r, y - r, x + r, y + r) for x, y in points]
    frame = ax.get_window_extent(renderer)

    def clear(box: tuple[float, float, float, float]) -> bool:
        inside = box[0] >= frame.x0 and box[2] <= frame.x1 and box[1] >= frame.y0 and box[3] <= frame.y1
        return inside and all(
            box[2] <= o[0] or o[2] <= box[0] or box[3] <= o[1] or o[3] <= box[1] for o in obstacles
        )

    # the point with the most close neighbours picks first, while every side is still free
    crowd = [int(np.sum(np.hypot(*(points - pt).T) < 60 * px_per_pt)) for pt in points]
    for i in sorted(range(len(names)), key=lambda j: (-crowd[j], j)):
        probe = ax.text(0, 0, names[i], fontsize=9)
        box = probe.get_window_extent(renderer)
        probe.remove()
        w, h = box.width, box.height
        x, y = points[i]
        side = r + gap
        candidates = [(side + w / 2, 0.0), (-side - w / 2, 0.0), (0.0, side + h / 2), (0.0, -side - h / 2)]
        for step in range(1, 8):
            for sign in (1, -1):
                dy = sign * step * (h + gap)
                candidates += [(side + w / 2, dy), (-side - w / 2, dy)]
        cx, cy = candidates[0]
        for dx, dy in candidates:
            cand = (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
            if clear(cand):
                cx, cy = dx, dy
                break
        obstacles.append((x + cx - w / 2, y + cy - h / 2, x + cx + w / 2, y + cy + h / 2))
        leader = cx != 0.0 and cy != 0.0  # moved off its row: draw a line back to the point
        ax.annotate(
            names[i],
            (xs[i], ys[i]),
            textcoords="offset points",
            xytext=(cx / px_per_pt, cy / px_per_pt),
            ha="center",
            va="center",
            fontsize=9,
            arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.7, "shrinkA": 2, "shrinkB": marker_pt}
            if leader
            else None,
        )


def figures(table: pd.DataFrame, k: int = 10) -> dict[str, Any]:
    """The report's matplotlib figures, by caption (only those the table has data for)."""
    import matplotlib.pyplot as plt

    from shared.plotting import PALETTE, set_theme

    set_theme()
    out: dict[str, Any] = {}
    ndcg, recall = _num(table, f"ndcg@{k}"), _num(table, f"recall@{k}")
    if ndcg is not None and recall is not None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(table) + 2))
        _bar(axes[0], ndcg, f"NDCG@{k}", PALETTE[0])
        _bar(axes[1], recall, f"Recall@{k}", PALETTE[1])
        fig.tight_layout()
        out[f"Ranking quality per model on the test period (higher is better): NDCG@{k} and recall@{k}."] = (
            fig
        )
    coverage, nov = _num(table, "coverage"), _num(table, "novelty")
    if coverage is not None and nov is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ax.scatter(coverage, nov, s=80, color=PALETTE[2])
        ax.set_xlabel("catalogue coverage (share of items recommended to someone)")
        ax.set_ylabel("novelty (mean self-information, bits)")
        ax.set_title("Coverage vs novelty")
        # room for labels beside the outermost points; coverage is a share, so the axis starts near 0
        span = float(coverage.max() - coverage.min()) or 0.1
        ax.set_xlim(max(float(coverage.min()) - 0.08 * span, -0.02), float(coverage.max()) + 0.3 * span)
        ax.margins(y=0.15)
        fig.tight_layout()
        _label_points(ax, [str(n) for n in table.index], coverage.to_numpy(), nov.to_numpy())
        out["Coverage against novelty: up and to the right means less popularity-driven lists."] = fig
    cold = _num(table, f"cold_ndcg@{k}")
    if cold is not None:
        fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(table) + 2))
        _bar(ax, cold.fillna(0.0), f"Cold-start NDCG@{k} (items with no training clicks)", PALETTE[3])
        fig.tight_layout()
        out["Cold start: ranking only the items that had no interactions before the cutoff."] = fig
    ctr, oracle = _num(table, "expected_ctr"), _num(table, "oracle_ctr")
    if ctr is not None and oracle is not None:
        fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(table) + 2))
        _bar(ax, ctr, "Expected CTR of each model's slates", PALETTE[4])
        ax.axvline(float(oracle.max()), color="black", linestyle="--", label=f"oracle {oracle.max():.3f}")
        ax.legend(loc="lower right")
        fig.tight_layout()
        out[
            "The simulator's true click probability of each model's top-10 slates against the best possible."
        ] = fig
    bias = _num(table, "popularity_bias")
    if bias is not None:
        fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(table) + 2))
        _bar(ax, bias, "Popularity bias (mean popularity percentile of recommended items)", PALETTE[5])
        ax.axvline(0.5, color="grey", linestyle=":", label="uniform random ≈ 0.5")
        ax.legend(loc="lower right")
        fig.tight_layout()
        out["Popularity bias: 1 means only the most popular items; a random list sits near 0.5."] = fig
    return out


def build_report(
    run_dir: Path,
    table: pd.DataFrame,
    *,
    title: str,
    train_seconds: dict[str, float] | None = None,
    aliases: dict[str, str] | None = None,
    batch: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    k: int = 10,
    out: Path | None = None,
) -> Path:
    """Write a run's report (``run_dir/report.html`` unless `out` names another file) and return its path.

    The subtitle names the run by its folder name, not by the machine's absolute path.
    """
    report = Report(title, subtitle=f"run {run_dir.resolve().name}")
    best = str(pd.to_numeric(table[f"ndcg@{k}"]).idxmax()) if f"ndcg@{k}" in table.columns else ""
    cards: dict[str, Any] = {"best model": best}
    if best:
        cards[f"ndcg@{k}"] = float(table.loc[best, f"ndcg@{k}"])
        for col in ("expected_ctr", "oracle_ctr"):
            if col in table.columns and pd.notna(table.loc[best, col]):
                cards[col.replace("_", " ")] = float(table.loc[best, col])
    report.section(
        "Summary",
        "Every model is trained on the past and asked for 10 items per user for the next period, "
        "items the user already clicked excluded.",
    ).metrics(cards)
    shown = table.copy()
    if train_seconds:
        shown["train_seconds"] = pd.Series(train_seconds)
    report.section(
        "Comparison",
        "precision/recall/ndcg/map at 10 with binary relevance; `map` is Microsoft Recommenders' "
        "definition (divides by all of a user's test items); coverage, novelty and popularity bias "
        "describe the lists themselves; cold_ndcg ranks only items with no training clicks; "
        "expected_ctr is the simulator's true click probability of each slate (position bias included).",
    ).table(shown, float_format="{:.4f}")
    plots = report.section("Plots")
    for caption, fig in figures(table, k).items():
        plots.figure(fig, caption)
    if dataset:
        report.section("Data").table(pd.Series(dataset, name="value").to_frame(), float_format="{:.4g}")
    if aliases or batch:
        ops = report.section(
            "Registry and nightly batch",
            "The best model by ndcg@10 is registered in MLflow with alias `champion`, the runner-up "
            "`challenger`; the nightly batch scores every active user with the champion.",
        )
        if aliases:
            ops.table(pd.Series(aliases, name="version").to_frame())
        if batch:
            ops.table(pd.Series({k: str(v) for k, v in batch.items()}, name="value").to_frame())
    return report.write(out or run_dir / "report.html")


def write_benchmark_report(
    folder: Path, table: pd.DataFrame, published: pd.DataFrame, *, source: str, dataset: str = "movielens"
) -> tuple[Path, Path]:
    """``metrics.json`` and ``report.html`` of a MovieLens benchmark run.

    Returns:
        The metrics path and the report path.
    """
    import matplotlib.pyplot as plt

    from shared.plotting import PALETTE, set_theme

    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "benchmark.csv")
    metrics, best, value = write_run_metrics(
        folder, table.drop(columns=["beats_published"], errors="ignore"), dataset=dataset
    )
    # the data folder by name, not by where it sits on this machine
    report = Report(
        "Level 3 — MovieLens benchmark (Microsoft Recommenders protocol)",
        subtitle=f"{dataset} from folder {Path(source).name}",
    )
    report.section(
        "Protocol",
        "Items stratified 75/25 with seed 42, every rating relevant, top-10 with seen items removed, "
        "Recommenders' metric definitions (its `map` divides by all of a user's test items).",
    ).metrics(
        {"best model": best, "ndcg@10": value, "best published ndcg@10": float(published["ndcg@10"].max())}
    )
    report.section("Our models").table(table, float_format="{:.4f}")
    report.section("Published figures on the same split").table(published, float_format="{:.4f}")
    set_theme()
    both = pd.concat(
        [
            table["ndcg@10"].rename(lambda n: f"ours: {n}"),
            published["ndcg@10"].rename(lambda n: f"published: {n}"),
        ]
    ).sort_values()
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(both) + 1.5))
    colors = [PALETTE[0] if name.startswith("ours") else PALETTE[7] for name in both.index]
    ax.barh(both.index, both.to_numpy(), color=colors)
    ax.set_xlabel("NDCG@10")
    fig.tight_layout()
    report.section("NDCG@10, ours against published").figure(fig, "Blue: this run; grey: published figures.")
    return metrics, report.write(folder / "report.html")
