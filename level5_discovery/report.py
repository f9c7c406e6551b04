"""``report.html`` of a level-5 run, built from the run folder's files alone.

It reads only the files `pipeline.py` writes into the run folder (``write_results``,
``write_run_metrics``, the LM's ``lm/losses.json``): ``metrics.json``, ``summary.csv``,
``curves.csv``, ``steps.csv``, ``relations.csv``, ``rejected.csv``, ``claims.csv``,
``contradictions.txt`` and ``graph.json``, so ``python -m level5_discovery report --run RUN``
rebuilds it at any time. Every file but
``metrics.json`` or ``summary.csv`` is optional: a section whose file is missing is left out (an
``investigate`` run has no ``lm/`` and no retrieval or LM metrics). Sections:

* the headline: edge F1 and SHD of the designed campaign against random and round-robin
  knockouts and observational PC at the same budget;
* F1 and SHD against the budget spent;
* the learned graph against the hidden truth (a cause x effect grid);
* the accepted relations with their evidence trail, and the rejected literature hypotheses;
* the experiments the loop chose (gene, expected information gain, candidate graphs);
* the literature side: retrieval recall/MRR per mode, the hypothesis LM (perplexities, parse
  rates, precision against the retrieval-only baseline, loss curves) and its claims.

Figures are saved as PNG beside the report (``curves.png``, ``graph.png``, ...) and inlined, each
linked to its file.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.atomic import atomic_write_bytes
from shared.errors import InputFileError
from shared.plotting import PALETTE, png_bytes, png_data_uri, set_theme
from shared.report import Block, Report, Section

REPORT_FILE = "report.html"
METHODS = {
    "designed": "designed",
    "random": "random",
    "round_robin": "round-robin",
    "observational_pc": "observational PC",
}
METHOD_COLOURS = {
    "designed": PALETTE[0],
    "random": PALETTE[1],
    "round_robin": PALETTE[2],
    "observational_pc": PALETTE[4],
}
MODES = ("hybrid", "bm25", "dense")
CLAIMS_SHOWN = 30
CONTRADICTIONS_OPEN = 8
# Cell colours of the graph grid; index = category code of `graph_categories`.
GRID_COLOURS = ["#ffffff", "#55A868", "#C44E52", "#DD8452", "#4C72B0", "#e4e7eb"]
GRID_LABELS = ["absent in both", "correct edge", "false edge", "reversed edge", "missed edge", "diagonal"]
ROW_GOOD, ROW_BAD = "#e7f4ea", "#fbe9e9"
# String columns: read as text so "3" and "3,7" (experiment ids) or "+" stay what they are.
TEXT_COLUMNS = ("cause", "effect", "sign", "experiments", "papers", "status", "reason", "target", "kind")

# Short: the shared template's navigation bar is one line.
TITLES = {
    "headline": "Headline",
    "curves": "F1 and SHD vs budget",
    "graph": "Learned graph vs truth",
    "relations": "Accepted relations",
    "rejected": "Rejected hypotheses",
    "steps": "Experiments chosen",
    "retrieval": "Literature retrieval",
    "lm": "Hypothesis LM",
    "claims": "Literature claims",
}


# ---------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_table(run_dir: Path, name: str) -> pd.DataFrame | None:
    """A CSV of the run folder; ``None`` when the file is missing, an empty frame when it is empty."""
    path = run_dir / name
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str))
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    for col in TEXT_COLUMNS:
        if col in frame:
            frame[col] = frame[col].fillna("")
    if "true_edge" in frame:
        frame["true_edge"] = frame["true_edge"].map(as_bool)
    return frame


def as_bool(value: Any) -> bool:
    """A CSV cell as a bool: text "true"/"1"/"yes", or a truthy non-NaN value."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def as_number(value: Any) -> float:
    """A metric as a float; JSON null (an undefined metric) becomes NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _label(method: str) -> str:
    return METHODS.get(method, method)


def _colour(method: str, i: int) -> str:
    return METHOD_COLOURS.get(method, PALETTE[(i + 5) % len(PALETTE)])


def _ordered(methods: Any) -> list[str]:
    """Methods in the house order (designed first), unknown ones after."""
    names = list(dict.fromkeys(str(m) for m in methods))
    return [m for m in METHODS if m in names] + [m for m in names if m not in METHODS]


def method_scores(metrics: dict[str, Any], summary: pd.DataFrame | None) -> pd.DataFrame:
    """Final precision, recall, F1, SHD, experiments and cost per method, designed first.

    The scores come from ``metrics.json``'s ``graph`` block (the numbers the benchmarks read),
    experiments and cost from ``summary.csv``; either file alone is enough.
    """
    frame = pd.DataFrame()
    if summary is not None and not summary.empty and "method" in summary:
        frame = summary.set_index(summary["method"].astype(str)).drop(columns="method")
    graph = metrics.get("graph") or {}
    if graph:
        scores = pd.DataFrame(
            {m: {k: as_number(v) for k, v in (s or {}).items()} for m, s in graph.items()}
        ).T
        frame = scores.combine_first(frame) if not frame.empty else scores
    if frame.empty:
        return frame
    frame = frame.loc[_ordered(frame.index)]
    cols = [c for c in ("precision", "recall", "f1", "shd", "experiments", "cost") if c in frame]
    return frame[cols].apply(pd.to_numeric, errors="coerce")


# ---------------------------------------------------------------------------------- figures
def curves_figure(curves: pd.DataFrame, budget: float | None = None) -> Any:
    """Two panels, edge F1 and SHD against the budget spent, one line per method."""
    import matplotlib.pyplot as plt

    fig, (ax_f1, ax_shd) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, method in enumerate(_ordered(curves["method"])):
        part = curves[curves["method"] == method].sort_values("spent")
        style = {
            "lw": 2.6 if method == "designed" else 1.5,
            "marker": "o",
            "ms": 4,
            "c": _colour(method, i),
            "zorder": 3 if method == "designed" else 2,  # the campaign on top of its baselines
        }
        ax_f1.plot(part["spent"], part["f1"], label=_label(method), **style)
        ax_shd.plot(part["spent"], part["shd"], label=_label(method), **style)
    for ax in (ax_f1, ax_shd):
        if budget is not None and math.isfinite(budget):
            ax.axvline(budget, ls=":", c="grey", lw=1)
        ax.set_xlabel("budget spent (cost units)")
        ax.set_xlim(left=0)
    ax_f1.set(ylabel="edge F1", title="Edge F1 (higher is better)", ylim=(0, 1.02))
    ax_shd.set(ylabel="SHD", title="Structural Hamming distance (lower is better)")
    ax_shd.set_ylim(bottom=0)
    ax_f1.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return fig


def graph_categories(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Code each (cause, effect) cell: 0 absent in both, 1 correct, 2 false, 3 reversed (learned
    against a true edge's direction), 4 missed, 5 the diagonal."""
    n = truth.shape[0]
    off = ~np.eye(n, dtype=bool)
    est, tru = estimated.astype(bool) & off, truth.astype(bool) & off
    cat = np.zeros((n, n), dtype=int)
    cat[est & tru] = 1
    cat[est & ~tru & ~tru.T] = 2
    cat[est & ~tru & tru.T] = 3
    cat[tru & ~est] = 4
    cat[~off] = 5
    return cat


def graph_figure(genes: list[str], cat: np.ndarray) -> Any:
    """The cause x effect grid coloured by `graph_categories`, with a legend of counts."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = len(genes)
    side = float(np.clip(0.3 * n + 1.5, 4.5, 13))
    fig, ax = plt.subplots(figsize=(side + 2.6, side))
    ax.imshow(cat, cmap=ListedColormap(GRID_COLOURS), vmin=-0.5, vmax=len(GRID_COLOURS) - 0.5)
    ticks = np.arange(n)
    small = 9 if n <= 20 else 7 if n <= 40 else 5
    ax.set_xticks(ticks, labels=genes, rotation=90, fontsize=small)
    ax.set_yticks(ticks, labels=genes, fontsize=small)
    ax.set_xticks(np.arange(-0.5, n), minor=True)
    ax.set_yticks(np.arange(-0.5, n), minor=True)
    ax.grid(False)
    ax.grid(which="minor", color="#c9ced6", lw=0.6)
    ax.tick_params(which="both", length=0)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.set(xlabel="effect", ylabel="cause (knocked out)")
    handles = [
        Patch(
            facecolor=GRID_COLOURS[k],
            edgecolor="#9aa5b1",
            label=f"{GRID_LABELS[k]} ({int((cat == k).sum())})",
        )
        for k in (1, 2, 3, 4)
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=9, frameon=False)
    ax.set_title("Designed estimate vs hidden truth", pad=12)
    fig.tight_layout()
    return fig


def steps_figure(steps: pd.DataFrame) -> Any:
    """Expected information gain of each chosen knockout (top) and the estimate's scores after it."""
    import matplotlib.pyplot as plt

    scores = [c for c in ("precision", "recall", "f1") if c in steps and steps[c].notna().any()]
    rows = 2 if scores else 1
    width = float(np.clip(0.38 * len(steps) + 4, 7, 14))
    fig, axes = plt.subplots(rows, 1, figsize=(width, 2.9 * rows), sharex=True, squeeze=False)
    x = np.arange(len(steps))
    eig = pd.to_numeric(steps["eig_bits"], errors="coerce").fillna(0).to_numpy()
    ax = axes[0, 0]
    # EIG 0: the candidates agreed on every outcome and the loop fell back to an untested gene.
    colours = [PALETTE[0] if v > 0 else PALETTE[7] for v in eig]
    bars = ax.bar(x, eig, color=colours)
    if len(steps) <= 30:
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in eig], fontsize=8, padding=2)
    ax.set(ylabel="EIG (bits)", title="Expected information gain of each knockout")
    ax.set_ylim(0, max(float(eig.max()), 0.1) * 1.15)
    ax.grid(axis="x", visible=False)
    if scores:
        low = axes[1, 0]
        for i, col in enumerate(scores):
            low.plot(
                x, steps[col], marker="o", ms=4, lw=2.4 if col == "f1" else 1.3, c=PALETTE[i + 1], label=col
            )
        low.set(ylabel="score", ylim=(0, 1.02), title="Designed estimate after each experiment")
        low.legend(fontsize=9, ncol=3, loc="lower right")
    bottom = axes[-1, 0]
    labels = [str(t) for t in steps.get("target", pd.Series([""] * len(steps)))]
    bottom.set_xticks(x, labels=labels, rotation=90 if len(steps) > 12 else 0, fontsize=8)
    bottom.set_xlabel("experiment (gene knocked out), in order")
    fig.tight_layout()
    return fig


def retrieval_figure(retrieval: pd.DataFrame) -> Any:
    """Grouped bars: each metric (recall@k, MRR) for each retrieval mode."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    metrics = list(retrieval.columns)
    width = 0.8 / max(len(retrieval), 1)
    for i, mode in enumerate(retrieval.index):
        pos = np.arange(len(metrics)) + (i - (len(retrieval) - 1) / 2) * width
        values = retrieval.loc[mode].to_numpy(dtype=float)
        bars = ax.bar(pos, values, width * 0.95, label=mode, color=PALETTE[i % len(PALETTE)])
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(np.arange(len(metrics)), labels=[_metric_label(m) for m in metrics])
    ax.set(ylim=(0, 1.08), ylabel="score", title="Retrieval on questions generated from the hidden world")
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # clear of bars near 1
    fig.tight_layout()
    return fig


def losses_figure(losses: dict[str, list[float]]) -> Any:
    """Training loss of the pretraining and the LoRA stage (raw, and a running mean)."""
    import matplotlib.pyplot as plt

    stages = [(k, [float(v) for v in losses.get(k) or []]) for k in ("pretrain", "lora")]
    stages = [(k, v) for k, v in stages if v]
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 3.6), squeeze=False)
    titles = {"pretrain": "Pretraining on the abstracts", "lora": "LoRA on instruction pairs"}
    for ax, (stage, values) in zip(axes.ravel(), stages, strict=True):
        steps = np.arange(1, len(values) + 1)
        window = max(1, len(values) // 20)
        ax.plot(steps, values, c=PALETTE[0], alpha=0.35 if window > 1 else 1.0, lw=1, label="per step")
        if window > 1:
            smooth = pd.Series(values).rolling(window, min_periods=1).mean()
            ax.plot(steps, smooth, c=PALETTE[0], lw=2, label=f"running mean ({window})")
            ax.legend(fontsize=8)
        ax.set(title=titles[stage], xlabel="step", ylabel="cross-entropy loss")
    fig.tight_layout()
    return fig


def _metric_label(name: str) -> str:
    """``mrr`` -> ``MRR``; ``recall_at_5`` (MLflow's spelling) -> ``recall@5``."""
    return "MRR" if name == "mrr" else name.replace("_at_", "@")


# ---------------------------------------------------------------------------------- html pieces
def add_figure(section: Section, fig: Any, folder: Path, name: str, caption: str) -> None:
    """Save ``fig`` as ``folder/name`` and add it inlined, linked to the file (full size)."""
    data = png_bytes(fig)
    atomic_write_bytes(folder / name, data)
    img = f"<img src='{png_data_uri(data)}' alt='{html.escape(caption, quote=True)}'>"
    add_html(section, f"<a href='{html.escape(name, quote=True)}'>{img}</a>", caption)


def add_html(section: Section, markup: str, caption: str = "") -> None:
    """Trusted markup with a caption (`Section.html` takes none)."""
    section.blocks.append(Block("html", markup, caption))


def contradictions_markup(contradictions: list[str]) -> str:
    """The contradictions as a list; a long one folds away (it is the trail behind the tables, not
    a result)."""
    items = "".join(f"<li>{html.escape(c)}</li>" for c in contradictions)
    if len(contradictions) <= CONTRADICTIONS_OPEN:
        return f"<ul>{items}</ul>"
    return f"<details><summary>show all {len(contradictions)}</summary><ul>{items}</ul></details>"


def cell_text(value: Any) -> str:
    """A table cell: a dash for missing, yes/no, integers plain, other numbers to 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        v = float(value)
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(value)


def marked_table(
    frame: pd.DataFrame, good: pd.Series | None, wrap: tuple[str, ...] = ("papers", "reason")
) -> str:
    """An HTML table whose rows are tinted green where ``good`` and red elsewhere (a verdict column
    says the same in words); untinted when ``good`` is None (no evaluation in the file).

    Text columns are left-aligned; only the ``wrap`` columns (long lists, sentences) may wrap, so
    a relation or an interval stays on one line.
    """
    styles = []
    for c in frame.columns:
        rules = [] if c in wrap else ["white-space:nowrap"]
        if frame[c].map(lambda v: isinstance(v, str)).all():
            rules.append("text-align:left")
        styles.append(f" style='{';'.join(rules)}'" if rules else "")
    head = "".join(f"<th{st}>{html.escape(str(c))}</th>" for c, st in zip(frame.columns, styles, strict=True))
    flags = [None] * len(frame) if good is None else list(good)
    rows = []
    for (_, row), ok in zip(frame.iterrows(), flags, strict=True):
        cells = "".join(
            f"<td{st}>{html.escape(cell_text(v))}</td>" for v, st in zip(row, styles, strict=True)
        )
        tint = "" if ok is None else f" style='background:{ROW_GOOD if ok else ROW_BAD}'"
        rows.append(f"<tr{tint}>{cells}</tr>")
    return f"<table class='table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _col(frame: pd.DataFrame, name: str, default: Any = "") -> pd.Series:
    """A column, or ``default`` on every row when the file does not have it."""
    if name in frame:
        return frame[name]
    return pd.Series([default] * len(frame), index=frame.index, dtype=object)


def _truth(frame: pd.DataFrame) -> pd.Series | None:
    """The ``true_edge`` evaluation column, when the file has one."""
    return frame["true_edge"].astype(bool) if "true_edge" in frame else None


def _spaced(ids: str, prefix: str = "") -> str:
    """``"P1,P7"`` -> ``"P1, P7"`` (lets long citation lists wrap)."""
    return ", ".join(f"{prefix}{p.strip()}" for p in str(ids).split(",") if p.strip())


# ---------------------------------------------------------------------------------- sections
def _headline(report: Report, metrics: dict[str, Any], scores: pd.DataFrame) -> None:
    sec = report.section(
        TITLES["headline"],
        "Edge F1 is the harmonic mean of precision (the share of learned edges that are real) and "
        "recall (the share of real edges found). SHD, the structural Hamming distance, counts the "
        "edge additions, deletions and reversals that turn the learned graph into the hidden one "
        "(0 is perfect). Every method spends the same budget; observational PC buys only "
        "unperturbed samples with it, and an edge it cannot orient counts as a coin flip (half right), "
        "so its F1 and SHD can be fractional.",
    )
    if scores.empty:
        sec.text("No method was scored in this run.")
        return
    cards: dict[str, Any] = {}
    for col, name in (("f1", "edge F1"), ("shd", "SHD")):
        if col in scores:
            cards.update({f"{name} · {_label(m)}": round(float(scores.loc[m, col]), 3) for m in scores.index})
    budget = as_number(metrics.get("budget"))
    if math.isfinite(budget):
        cards["budget"] = round(budget, 3)
    sec.metrics(cards)
    baselines = [m for m in scores.index if m != "designed"]
    if "designed" in scores.index and baselines and "f1" in scores:
        best = max(baselines, key=lambda m: float(scores.loc[m, "f1"]))
        ours, theirs = float(scores.loc["designed", "f1"]), float(scores.loc[best, "f1"])
        word = "above" if ours > theirs else "below" if ours < theirs else "level with"
        gap = f" by {abs(ours - theirs):.3f}" if ours != theirs else ""
        sec.text(
            f"The designed campaign's edge F1 is {ours:.3f}, {word} the best baseline "
            f"({_label(best)}, {theirs:.3f}){gap}."
        )
    table = scores.rename(index=_label).rename_axis("method").reset_index()
    sec.table(table, "Final scores per method at the shared budget", index=False, float_format="{:.3g}")


def _curves(report: Report, curves: pd.DataFrame, metrics: dict[str, Any], folder: Path) -> None:
    sec = report.section(
        TITLES["curves"],
        "How each method's estimate improves as it spends the budget: one point per experiment for "
        "the loops, and PC re-run on the wells bought up to each of six budget levels. A steeper early "
        "rise means each experiment taught more; the dotted line marks the whole budget.",
    )
    budget = as_number(metrics.get("budget"))
    add_figure(
        sec, curves_figure(curves, budget), folder, "curves.png", "Edge F1 and SHD against budget spent"
    )


def _graph(report: Report, graph: dict[str, Any], folder: Path) -> None:
    genes = [str(g) for g in graph["genes"]]
    est, tru = np.asarray(graph["estimated"], dtype=bool), np.asarray(graph["truth"], dtype=bool)
    sec = report.section(
        TITLES["graph"],
        "Each cell is a possible direct effect of the row gene on the column gene. Green: learned and "
        "real; red: learned but not in the hidden world; orange: learned in the wrong direction (its "
        "true direction then shows as a blue cell); blue: real but missed.",
    )
    if est.shape != tru.shape or est.shape != (len(genes), len(genes)):
        sec.text(f"graph.json is inconsistent: {len(genes)} genes, estimate {est.shape}, truth {tru.shape}.")
        return
    cat = graph_categories(est, tru)
    add_figure(sec, graph_figure(genes, cat), folder, "graph.png", "Learned adjacency vs the hidden truth")
    counts = {
        "true edges": int(tru[~np.eye(len(genes), dtype=bool)].sum()),
        "learned edges": int(est[~np.eye(len(genes), dtype=bool)].sum()),
        "correct": int((cat == 1).sum()),
        "false": int((cat == 2).sum()),
        "reversed": int((cat == 3).sum()),
        "missed": int((cat == 4).sum()),
    }
    sec.table(
        pd.DataFrame([counts], index=["designed estimate"]),
        "Edge counts (a reversal counts once as reversed, once as missed)",
    )


def _relations(report: Report, relations: pd.DataFrame) -> None:
    sec = report.section(
        TITLES["relations"],
        "The edges the designed campaign accepted, each with its evidence trail: the knockout "
        "experiments in which removing the cause significantly shifted the effect (the lab numbers "
        "them from 0 in the order they ran, so #0 is step 1 of Experiments chosen), the mean shift "
        "with its confidence interval and the largest FDR-adjusted q, the BIC improvement when the "
        "cause joins the effect's parents, and the papers that claimed it. The verdict against the "
        "hidden world is evaluation only: the loop never saw it.",
    )
    if relations.empty:
        sec.text("The campaign accepted no relation.")
        return
    truth = _truth(relations)
    cards: dict[str, Any] = {"accepted": len(relations)}
    if truth is not None:
        cards.update({"true edges": int(truth.sum()), "precision": round(float(truth.mean()), 3)})
    cards["tested by knockout"] = int((_col(relations, "status") == "tested").sum())
    sec.metrics(cards)
    nan = float("nan")
    shown = pd.DataFrame(
        {
            "relation": relations["cause"] + " → " + relations["effect"],
            "sign": _col(relations, "sign"),
            "experiments": _col(relations, "experiments").map(lambda s: _spaced(s, "#")),
            "knockout shift": _col(relations, "knockout_effect", nan),
            "95% CI": [
                _ci(lo, hi)
                for lo, hi in zip(
                    _col(relations, "ci_low", nan), _col(relations, "ci_high", nan), strict=True
                )
            ],
            "q": _col(relations, "q", nan),
            "ΔBIC": _col(relations, "delta_bic", nan),
            "papers": _col(relations, "papers").map(_spaced),
            "status": _col(relations, "status"),
        }
    )
    if truth is not None:
        shown["verdict"] = ["✓ true edge" if t else "✗ not in the truth" for t in truth]
    add_html(
        sec, marked_table(shown, truth), "Accepted relations (green: real edge, red: not in the hidden world)"
    )


def _ci(lo: Any, hi: Any) -> str:
    lo, hi = as_number(lo), as_number(hi)
    if math.isnan(lo) or math.isnan(hi):
        return "—"
    return f"[{lo:.3g}, {hi:.3g}]"


def _rejected(report: Report, rejected: pd.DataFrame | None, contradictions: list[str] | None) -> None:
    sec = report.section(
        TITLES["rejected"],
        "Literature hypotheses the campaign did not accept, and why: refuted (knocking out the cause "
        "left the effect unchanged with enough power to see it), indirect (the cause acts through "
        "other genes), reversed (experiments put the effect upstream) or unsupported (no evidence "
        "either way). A rejected hypothesis that is a real edge (red) is a miss.",
    )
    if rejected is not None and not rejected.empty:
        truth = _truth(rejected)
        reason = _col(rejected, "reason").astype(str)
        per_reason = pd.DataFrame({"reason": reason.str.split(":").str[0].str.strip()})
        per_reason["real edges among them"] = 0 if truth is None else truth.astype(int).to_numpy()
        by_reason = per_reason.groupby("reason").agg(
            hypotheses=("real edges among them", "size"), real=("real edges among them", "sum")
        )
        by_reason = by_reason.rename(columns={"real": "of which real edges"}).sort_values(
            "hypotheses", ascending=False
        )
        if truth is None:
            by_reason = by_reason.drop(columns="of which real edges")
        sec.table(by_reason.reset_index(), "Rejected hypotheses per reason", index=False)
        shown = pd.DataFrame(
            {
                "hypothesis": rejected["cause"] + " → " + rejected["effect"],
                "sign": _col(rejected, "sign"),
                "confidence": pd.to_numeric(
                    _col(rejected, "confidence", float("nan")), errors="coerce"
                ).round(2),
                "papers": _col(rejected, "papers").map(_spaced),
                "reason": reason,
            }
        )
        if truth is not None:
            shown["verdict"] = ["✗ real edge (missed)" if t else "✓ not an edge" for t in truth]
        good = None if truth is None else ~truth
        add_html(sec, marked_table(shown, good), "Rejected hypotheses (red: the hidden world has this edge)")
    elif rejected is not None:
        sec.text("No literature hypothesis was rejected.")
    if contradictions is not None:
        if contradictions:
            title = (
                f"Contradictions the knowledge base found and how it resolved them ({len(contradictions)})"
            )
            add_html(sec, contradictions_markup(contradictions), title)
        else:
            sec.text("The knowledge base found no contradiction between the literature and the experiments.")


def _steps(report: Report, steps: pd.DataFrame, folder: Path) -> None:
    sec = report.section(
        TITLES["steps"],
        "The designed loop's experiments in order. Before each one it draws candidate graphs "
        "consistent with what it knows and picks the knockout whose outcome they disagree on most: "
        "the expected information gain (EIG, in bits) about which candidate is right. An EIG of 0 "
        "means the candidates agreed on every outcome and the loop knocked out a gene it had "
        "not yet perturbed.",
    )
    if steps.empty:
        sec.text("The loop ran no experiment (the budget did not cover one).")
        return
    targets = steps.get("target", pd.Series(dtype=str))
    sec.metrics(
        {
            "experiments": len(steps),
            "genes knocked out": int(targets.nunique()),
            "mean EIG (bits)": round(float(pd.to_numeric(steps["eig_bits"], errors="coerce").mean()), 3)
            if "eig_bits" in steps
            else "—",
            "spent": round(float(steps["spent"].max()), 3) if "spent" in steps else "—",
        }
    )
    if "eig_bits" in steps:
        add_figure(
            sec, steps_figure(steps), folder, "steps.png", "EIG per experiment and the estimate after it"
        )
    cols = [
        c
        for c in (
            "step",
            "target",
            "kind",
            "cost",
            "spent",
            "eig_bits",
            "n_candidates",
            "n_shifted",
            "f1",
            "shd",
        )
        if c in steps
    ]
    names = {"eig_bits": "EIG (bits)", "n_candidates": "candidate graphs", "n_shifted": "genes shifted"}
    sec.table(steps[cols].rename(columns=names), "Experiments in order", index=False, float_format="{:.3g}")


def _retrieval(report: Report, retrieval: dict[str, Any], folder: Path) -> None:
    sec = report.section(
        TITLES["retrieval"],
        "How well each retriever finds the papers that state a relation, on questions generated from "
        "the hidden world. Recall@k: the share of a question's relevant papers found in the top k "
        "(a question can have many, so it stays low when k is small); MRR: the mean of 1 / rank of "
        "the first relevant paper (1 when it is always first). Hybrid fuses BM25 (exact gene names) "
        "with dense embeddings (paraphrases).",
    )
    modes = [m for m in MODES if m in retrieval] + [m for m in retrieval if m not in MODES]
    table = pd.DataFrame({m: {k: as_number(v) for k, v in (retrieval[m] or {}).items()} for m in modes}).T
    add_figure(sec, retrieval_figure(table), folder, "retrieval.png", "Recall@k and MRR per retrieval mode")
    shown = table.rename(columns=_metric_label).rename_axis("mode").reset_index()
    sec.table(shown, "Retrieval per mode", index=False, float_format="{:.3f}")


def _lm(report: Report, lm: dict[str, Any], losses: dict[str, Any] | None, folder: Path) -> None:
    sec = report.section(
        TITLES["lm"],
        "A small causal LM pretrained on the corpus's abstracts, then LoRA-tuned to answer a question "
        "about a gene with cited hypotheses. Perplexity (exp of the mean token loss, lower is better) "
        "on held-out text shows what each stage learnt; the parse rate is the share of answers that "
        "are well-formed hypotheses; precision is the share of proposed relations that are real "
        "edges, against a retrieval-only baseline that extracts relations from the same passages "
        "without an LM.",
    )
    cards: dict[str, Any] = {}
    if "n_params" in lm:
        cards["parameters"] = _count(as_number(lm["n_params"]))
    if "n_trainable" in lm:
        cards["trainable in LoRA"] = _count(as_number(lm["n_trainable"]))
    if "n_pairs" in lm:
        cards["instruction pairs"] = int(as_number(lm["n_pairs"]))
    for key, name in (("pretrain_seconds", "pretraining"), ("lora_seconds", "LoRA tuning")):
        if key in lm:
            cards[name] = f"{as_number(lm[key]):.1f} s"
    if cards:
        sec.metrics(cards)
    ppl_rows = {
        "held-out abstracts (pretraining)": ("pretrain_ppl_before", "pretrain_ppl_after"),
        "held-out answers (LoRA)": ("target_ppl_before_lora", "target_ppl_after_lora"),
    }
    ppl = pd.DataFrame(
        {
            name: {"before": as_number(lm.get(b)), "after": as_number(lm.get(a))}
            for name, (b, a) in ppl_rows.items()
        }
    ).T
    ppl = ppl[ppl.notna().any(axis=1)]
    if not ppl.empty:
        ppl["before / after"] = ppl["before"] / ppl["after"]
        sec.table(
            ppl.rename_axis("perplexity on").reset_index(),
            "Perplexity before and after each stage",
            index=False,
            float_format="{:,.4g}",
        )
    quality = pd.DataFrame(
        {
            "LM": {
                "parse rate, constrained decoding": as_number(lm.get("constrained_parse_rate")),
                "parse rate, free decoding": as_number(lm.get("free_parse_rate")),
                "precision (edge)": as_number(lm.get("lm_precision")),
                "precision (edge and sign)": as_number(lm.get("lm_signed_precision")),
            },
            "retrieval-only baseline": {
                "precision (edge)": as_number(lm.get("baseline_precision")),
                "precision (edge and sign)": as_number(lm.get("baseline_signed_precision")),
            },
        }
    )
    quality = quality[quality.notna().any(axis=1)]
    if not quality.empty:
        sec.table(
            quality.rename_axis("measure").reset_index(),
            "Hypothesis quality: LM vs retrieval-only extraction",
            index=False,
            float_format="{:.3f}",
        )
    curves = {k: v for k, v in (losses or {}).items() if k in ("pretrain", "lora") and v}
    if curves:
        add_figure(sec, losses_figure(curves), folder, "lm_losses.png", "Training loss per step")


def _count(n: float) -> str:
    """``105664`` -> ``"106 k"``, ``1.4e6`` -> ``"1.40 M"``."""
    if not math.isfinite(n):
        return "—"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.0f} k" if n >= 1e4 else f"{n:,.0f}"


def _claims(report: Report, claims: pd.DataFrame | None, scores: dict[str, Any] | None) -> None:
    sec = report.section(
        TITLES["claims"],
        "The literature hypotheses the investigation started from: each relation proposed from the "
        "retrieved passages, its confidence aggregated over the passages that support it, and the "
        "papers cited. A true edge means the hidden world has cause → effect (whatever the sign); "
        "the loop treats these only as priors to test.",
    )
    if scores:
        names = {"lm": "LM", "baseline": "retrieval-only baseline"}
        table = pd.DataFrame(
            {names.get(k, k): {m: as_number(v) for m, v in s.items()} for k, s in scores.items()}
        ).T
        table = table.rename(columns={"precision_top": "precision (confidence ≥ 0.5)", "n_claims": "claims"})
        sec.table(
            table.rename_axis("claims from").reset_index(),
            "Claim precision (right edge and sign) and recall of the true signed edges",
            index=False,
            float_format="{:.3g}",
        )
    if claims is None:
        return
    if claims.empty:
        sec.text("No claim was extracted from the literature.")
        return
    confidence = pd.to_numeric(_col(claims, "confidence", float("nan")), errors="coerce")
    top = claims.assign(confidence=confidence).sort_values("confidence", ascending=False, kind="stable")
    top = top.head(CLAIMS_SHOWN)
    truth = _truth(top)
    shown = pd.DataFrame(
        {
            "claim": top["cause"] + " → " + top["effect"],
            "sign": _col(top, "sign"),
            "confidence": top["confidence"].round(3),
            "papers": _col(top, "papers").map(_spaced),
        }
    )
    if truth is not None:
        shown["verdict"] = ["✓ true edge" if t else "✗ not an edge" for t in truth]
        n_true = int(claims["true_edge"].astype(bool).sum())
        sec.text(f"{len(claims)} claims, {n_true} of them true edges{_shown(len(top), len(claims))}")
    else:
        sec.text(f"{len(claims)} claims{_shown(len(top), len(claims))}")
    add_html(sec, marked_table(shown, truth), "Most confident claims (green: a real edge)")


def _shown(n: int, total: int) -> str:
    return "." if n == total else f"; the {n} most confident:"


# ---------------------------------------------------------------------------------- the report
def build_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a level-5 run folder, and its figures as PNG beside it.

    Args:
        run_dir: The run folder (`pipeline.py`'s layout).
        out: The HTML file to write (default ``RUN/report.html``); figures go in its folder.

    Returns:
        The path of the report.

    Raises:
        InputFileError: The folder has neither ``metrics.json`` nor ``summary.csv`` (nothing was
            investigated there).
    """
    run_dir = Path(run_dir)
    metrics = _read_json(run_dir / "metrics.json")
    summary = read_table(run_dir, "summary.csv")
    if metrics is None and summary is None:
        raise InputFileError(f"{run_dir}: no metrics.json or summary.csv; run `run` or `investigate` first")
    metrics = metrics or {}
    target = Path(out) if out else run_dir / REPORT_FILE
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    set_theme()

    subtitle = [f"run {run_dir.name}", str(metrics.get("dataset", ""))]
    if "n_genes" in metrics:
        subtitle.append(f"{metrics['n_genes']} genes")
    if "n_papers" in metrics:
        subtitle.append(f"{metrics['n_papers']} papers")
    report = Report("Level 5 — autonomous discovery", " · ".join(s for s in subtitle if s))
    report.meta = _meta(metrics)

    _headline(report, metrics, method_scores(metrics, summary))
    curves = read_table(run_dir, "curves.csv")
    if curves is not None and not curves.empty:
        _curves(report, curves, metrics, folder)
    graph = _read_json(run_dir / "graph.json")
    if graph:
        _graph(report, graph, folder)
    relations = read_table(run_dir, "relations.csv")
    if relations is not None:
        _relations(report, relations)
    rejected = read_table(run_dir, "rejected.csv")
    contradictions_file = run_dir / "contradictions.txt"
    contradictions = (
        [line for line in contradictions_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if contradictions_file.is_file()
        else None
    )
    if rejected is not None or contradictions is not None:
        _rejected(report, rejected, contradictions)
    steps = read_table(run_dir, "steps.csv")
    if steps is not None:
        _steps(report, steps, folder)
    if metrics.get("retrieval"):
        _retrieval(report, metrics["retrieval"], folder)
    losses = _read_json(run_dir / "lm" / "losses.json")
    if metrics.get("lm") or losses:
        _lm(report, metrics.get("lm") or {}, losses, folder)
    claims = read_table(run_dir, "claims.csv")
    if claims is not None or metrics.get("claims"):
        _claims(report, claims, metrics.get("claims"))
    return report.write(target)


def _meta(metrics: dict[str, Any]) -> dict[str, Any]:
    """Run details for the report's last table (no machine paths)."""
    names = {
        "profile": "profile",
        "seed": "seed",
        "n_genes": "genes",
        "n_papers": "papers",
        "budget": "budget",
    }
    meta = {name: metrics[k] for k, name in names.items() if k in metrics}
    for stage, seconds in (metrics.get("seconds") or {}).items():
        meta[f"seconds: {stage}"] = f"{as_number(seconds):.1f}"
    return meta
