"""``report.html`` of a finished autonomous campaign, built from the campaign folder's files alone.

It reads only what the campaign wrote (``result.json``, ``state.json``, ``claims.csv``,
``logic.csv``, ``contradictions.txt``, ``policy/curve.csv``, ``experiments.csv``, ``graph.json``,
``targets.csv``, ``chosen_target.json``, ``assays.csv``, ``compounds.csv``, ``validation.csv``,
``metrics.json``), plus, for the graph figure only, the hidden world of the dataset folder that
``state.json`` names, so it can be rebuilt at any time. Only ``result.json`` is required; a section
whose file is missing is left out. Sections:

* the headline: causal F1 of the RL-chosen experiments against random ones, the target and whether
  it truly drives the phenotype, the best designed compound's true pIC50 against the library's,
  the budget spent;
* the agent's causal graph against the hidden truth, with its calls on which genes lie upstream of
  the phenotype;
* the RL policy: its learning curve on training worlds and the experiments it chose here;
* the target choice and the reason for each candidate;
* compound design: measured potency per round and the best designed structures (drawn with RDKit);
* the cell tests of the best compounds;
* the literature claims, the logic's derived paths and its contradictions;
* the steps and their provenance (``state.json``).

Figures are saved as PNG beside the report (``graph.png``, ``policy.png``, ...) and inlined, each
linked to its file; molecule structures are inlined as SVG (a PNG grid of them is saved too).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from level5_discovery.report import (
    GRID_COLOURS,
    GRID_LABELS,
    add_figure,
    add_html,
    as_bool,
    as_number,
    cell_text,
    contradictions_markup,
    graph_categories,
    read_table,
)
from level5_discovery.truth import phenotype_ancestor_mask
from shared.atomic import atomic_write_bytes
from shared.errors import InputFileError
from shared.plotting import PALETTE, set_theme
from shared.report import Report, Section

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
# Short: the shared template's navigation bar is one line.
TITLES = {
    "headline": "Headline",
    "graph": "Causal graph",
    "policy": "RL policy",
    "target": "Target choice",
    "design": "Compound design",
    "cells": "Cell tests",
    "literature": "Literature & logic",
    "steps": "Steps",
}
MOLECULES_SHOWN = 8
CLAIMS_SHOWN = 12
MOL_SIZE = (200, 145)
HIDDEN = "hidden truth, evaluation only"
CHOSEN_TINT, LIBRARY_TINT, BAD_TINT = "#fff4d6", "#eaf0f8", "#fbe9e9"
# The side strip of the graph figure: the agent's (and the truth's) call on phenotype ancestry.
UPSTREAM_COLOURS = ["#ffffff", "#8172B3", "#d5d9e0"]  # not upstream, upstream, undecided
UPSTREAM_LABELS = ["not upstream", "upstream of the phenotype", "undecided"]


# ---------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> Any:
    """A JSON file of the folder; ``None`` when it is missing."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc


def _read_lines(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _dataset_folder(folder: Path, state: dict[str, Any]) -> Path | None:
    """The dataset folder the campaign ran on (``state.json`` notes), when it still exists."""
    data = (state.get("notes") or {}).get("data") or (state.get("settings") or {}).get("data")
    if not data:
        return None
    path = Path(str(data))
    for candidate in [path] if path.is_absolute() else [path, folder / path]:
        if candidate.is_dir():
            return candidate
    return None


def load_truth(folder: Path, state: dict[str, Any]) -> dict[str, Any] | None:
    """The hidden world's genes, adjacency and phenotype ancestors, for evaluation only.

    Args:
        folder: The campaign folder (a relative dataset path is also tried against it).
        state: ``state.json``; its ``notes.data`` names the dataset folder.

    Returns:
        ``{"genes", "adjacency", "upstream"}`` (``upstream`` is None when the world has no
        phenotype weights), or None when the dataset folder or its ``truth/world.json`` is missing
        or unreadable: the report then draws the agent's graph alone.
    """
    data = _dataset_folder(folder, state)
    if data is None:
        return None
    try:
        world = _read_json(data / "truth" / "world.json")
    except InputFileError:
        return None
    if not world or "genes" not in world or "weights" not in world:
        return None
    genes = [str(g) for g in world["genes"]]
    adjacency = np.asarray(world["weights"], dtype=float) != 0
    if adjacency.shape != (len(genes), len(genes)):
        return None
    upstream = None
    if world.get("phenotype_weights") is not None:
        ancestors = phenotype_ancestor_mask(adjacency, np.asarray(world["phenotype_weights"], dtype=float))
        upstream = {g for g, a in zip(genes, ancestors, strict=True) if a}
    return {"genes": genes, "adjacency": adjacency, "upstream": upstream}


# ---------------------------------------------------------------------------------- figures
def campaign_graph_figure(
    genes: list[str],
    estimated: np.ndarray,
    truth: np.ndarray | None,
    calls: np.ndarray,
    true_calls: np.ndarray | None,
) -> Figure:
    """The cause x effect grid of the agent's graph and a strip of its phenotype-ancestry calls.

    Args:
        genes: Gene names (rows and columns).
        estimated: The agent's adjacency (cause x effect).
        truth: The hidden adjacency, or None to draw the estimate alone.
        calls: Per gene 1 upstream of the phenotype, 0 not upstream, 2 undecided (the agent's).
        true_calls: The same from the hidden world (1 or 0), or None.

    Returns:
        The figure; with ``truth`` the grid is coloured by `graph_categories` (correct, false,
        reversed, missed), without it the learned edges are one colour.
    """
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    n = len(genes)
    side = float(np.clip(0.3 * n + 1.5, 4.5, 13))
    fig, ax = plt.subplots(figsize=(side + 4.2, side))
    if truth is not None:
        cat = graph_categories(estimated, truth)
        colours, shown = GRID_COLOURS, [(k, GRID_LABELS[k]) for k in (1, 2, 3, 4)]
    else:
        cat = np.where(np.eye(n, dtype=bool), 5, np.where(estimated.astype(bool), 1, 0))
        colours = [GRID_COLOURS[0], PALETTE[0], *GRID_COLOURS[2:]]
        shown = [(1, "learned edge")]
    ax.imshow(cat, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5)
    _grid_axes(ax, genes, genes)
    ax.set(xlabel="effect", ylabel="cause")
    title = "Agent's causal model vs hidden truth" if truth is not None else "Agent's causal model"
    ax.set_title(title, pad=12)

    strip = calls[:, None] if true_calls is None else np.column_stack([calls, true_calls])
    # Strip columns as wide as a grid cell, but no wider than 0.35 in (a 4-gene grid has big cells).
    strip_in = strip.shape[1] * min(0.8 * side / n, 0.35)
    holder = make_axes_locatable(ax).append_axes("right", size=strip_in, pad=0.25)
    holder.imshow(strip, cmap=ListedColormap(UPSTREAM_COLOURS), vmin=-0.5, vmax=2.5, aspect="auto")
    columns = ["agent"] if true_calls is None else ["agent", "truth"]
    _grid_axes(holder, columns, [""] * n)
    holder.set_xlabel("upstream of\nthe phenotype?", fontsize=9)
    wrong = np.zeros(n, dtype=bool) if true_calls is None else (calls != 2) & (calls != true_calls)
    for i in np.flatnonzero(wrong):
        # A decided call that the hidden world contradicts; the white halo reads on any cell colour.
        holder.text(
            0, i, "✗", ha="center", va="center", color=PALETTE[3], fontsize=12, weight="bold",
            path_effects=[patheffects.withStroke(linewidth=3, foreground="white")],
        )  # fmt: skip

    handles = [
        Patch(facecolor=colours[k], edgecolor="#9aa5b1", label=f"{label} ({int((cat == k).sum())})")
        for k, label in shown
    ]
    handles += [
        Patch(facecolor=UPSTREAM_COLOURS[k], edgecolor="#9aa5b1", label=f"strip: {UPSTREAM_LABELS[k]}")
        for k in (1, 0, 2)
    ]
    if wrong.any():
        handles.append(Patch(facecolor="none", edgecolor="none", label="strip ✗: agent's call is wrong"))
    holder.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1 + 0.3 / strip_in, 1), fontsize=9, frameon=False
    )
    return fig


def _grid_axes(ax: Any, xlabels: list[str], ylabels: list[str]) -> None:
    """Tick labels on top and left, thin cell borders, no other grid."""
    small = 9 if len(ylabels) <= 20 else 7 if len(ylabels) <= 40 else 5
    ax.set_xticks(np.arange(len(xlabels)), labels=xlabels, rotation=90, fontsize=small)
    ax.set_yticks(np.arange(len(ylabels)), labels=ylabels, fontsize=small)
    ax.set_xticks(np.arange(-0.5, len(xlabels)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(ylabels)), minor=True)
    ax.grid(False)
    ax.grid(which="minor", color="#c9ced6", lw=0.6)
    ax.tick_params(which="both", length=0)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()


def _window(n: int) -> int:
    """Running-mean window: about a fifth of the points, at most 20."""
    return int(max(1, min(20, n // 5)))


def policy_figure(curve: pd.DataFrame | None, experiments: pd.DataFrame | None) -> Figure:
    """The policy's learning curve on training worlds and what its experiments taught here.

    Args:
        curve: ``policy/curve.csv`` (one row per training episode), or None.
        experiments: ``experiments.csv`` (one row per experiment of this campaign), or None.

    Returns:
        One panel per table given: the episode return (raw, and its running mean) against the
        training timesteps; the information (share of genes whose link to the phenotype is
        decided) against the budget spent, with each experiment's gain as a bar.
    """
    import matplotlib.pyplot as plt

    panels = [p for p in (curve, experiments) if p is not None and not p.empty]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 3.9), squeeze=False)
    ax_iter = iter(axes.ravel())
    if curve is not None and not curve.empty:
        ax = next(ax_iter)
        algos = curve["algo"].astype(str) if "algo" in curve else pd.Series(["policy"] * len(curve))
        for i, algo in enumerate(dict.fromkeys(algos)):
            part = curve[algos.to_numpy() == algo].sort_values("timesteps")
            ret = pd.to_numeric(part["episode_return"], errors="coerce")
            colour = PALETTE[i % len(PALETTE)]
            ax.scatter(part["timesteps"], ret, s=12, alpha=0.35, color=colour)
            window = _window(len(part))
            smooth = ret.rolling(window, min_periods=1).mean()
            ax.plot(
                part["timesteps"], smooth, color=colour, lw=2.2, label=f"{algo} (running mean of {window})"
            )
        ax.axhline(0, color="grey", lw=0.8, ls=":")
        ax.set(
            xlabel="training timesteps", ylabel="episode return", title="Learning curve on training worlds"
        )
        ax.legend(fontsize=8, loc="lower right")
    if experiments is not None and not experiments.empty:
        ax = next(ax_iter)
        spent = pd.to_numeric(experiments["spent"], errors="coerce")
        cost = pd.to_numeric(
            experiments.get("cost", pd.Series(1.0, index=experiments.index)), errors="coerce"
        )
        gain = pd.to_numeric(experiments["info_gain"], errors="coerce").fillna(0)
        info = pd.to_numeric(experiments["information"], errors="coerce")
        # Bars end at the experiment's spend: each spans the budget the experiment used.
        ax.bar(
            spent - cost / 2,
            gain,
            width=cost.fillna(1) * 0.85,
            color=PALETTE[2],
            label="gain of the experiment",
        )
        start = info.iloc[0] - gain.iloc[0]
        xs = np.concatenate([[0.0], spent.to_numpy(dtype=float)])
        ys = np.concatenate([[start], info.to_numpy(dtype=float)])
        ax.step(xs, ys, where="post", color=PALETTE[0], lw=2.2, label="information")
        ax.set(
            xlabel="budget spent on experiments",
            ylabel="share of genes decided",
            title="Experiments chosen by the policy here",
            ylim=(0, 1.02),
        )
        ax.set_xlim(left=0)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def round_name(round_no: int) -> str:
    """``0`` -> ``"library screen"``, ``k`` -> ``"design k"``."""
    return "library screen" if round_no == 0 else f"design {round_no}"


def rounds_figure(assays: pd.DataFrame, hit: float | None = None) -> Figure:
    """Measured pIC50 of every assayed compound per round, with the best so far.

    Args:
        assays: ``assays.csv`` (``round`` 0 is the library screen).
        hit: The hit threshold (pIC50) to draw, if known.

    Returns:
        A strip plot (library screen and each design round) with a box per round and a line of
        the best measured pIC50 up to and including each round.
    """
    import matplotlib.pyplot as plt

    data = assays.assign(
        round=pd.to_numeric(assays["round"], errors="coerce"),
        measured=pd.to_numeric(assays["measured_pic50"], errors="coerce"),
    ).dropna(subset=["round", "measured"])
    rounds = sorted(int(r) for r in data["round"].unique())
    fig, ax = plt.subplots(figsize=(float(np.clip(1.3 * len(rounds) + 3, 6, 12)), 4.2))
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is the same every build
    values = [data.loc[data["round"] == r, "measured"].to_numpy() for r in rounds]
    ax.boxplot(
        values,
        positions=range(len(rounds)),
        widths=0.55,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "#f1f5f9", "edgecolor": "#9aa5b1"},
        medianprops={"color": "#616e7c"},
        whiskerprops={"color": "#9aa5b1"},
        capprops={"color": "#9aa5b1"},
    )
    for i, (r, v) in enumerate(zip(rounds, values, strict=True)):
        colour = PALETTE[1] if r == 0 else PALETTE[0]
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(v)), v, s=14, alpha=0.6, color=colour, zorder=3)
    best = np.maximum.accumulate([float(v.max()) for v in values])
    ax.plot(range(len(rounds)), best, color=PALETTE[3], marker="o", lw=2, zorder=4, label="best so far")
    if hit is not None and math.isfinite(hit):
        ax.axhline(hit, color="grey", ls=":", lw=1, label=f"hit threshold ({hit:g})")
    # Past a dozen rounds, name every few so the labels stay legible.
    step = max(1, math.ceil(len(rounds) / 12))
    ticks = list(range(0, len(rounds), step))
    if len(rounds) - 1 - ticks[-1] > step / 2:  # the last round too, unless its label would overlap
        ticks.append(len(rounds) - 1)
    if len(rounds) <= 12:
        names = [round_name(rounds[i]) for i in ticks]
    else:
        names = ["screen" if rounds[i] == 0 else str(rounds[i]) for i in ticks]
        ax.set_xlabel("design round (0: the library screen)")
    ax.set_xticks(ticks, labels=names)
    ax.set(ylabel="measured pIC50", title="Measured potency per round")
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def validation_figure(validation: pd.DataFrame) -> Figure:
    """The phenotype effect of each compound in cells with its 95% confidence interval."""
    import matplotlib.pyplot as plt

    effect = pd.to_numeric(validation["phenotype_effect"], errors="coerce").to_numpy(dtype=float)
    low = pd.to_numeric(_col(validation, "phenotype_ci_low"), errors="coerce").to_numpy(dtype=float)
    high = pd.to_numeric(_col(validation, "phenotype_ci_high"), errors="coerce").to_numpy(dtype=float)
    names = [_compound_name(row) for _, row in validation.iterrows()]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(validation) + 1.5))
    y = np.arange(len(validation))[::-1]
    for i, (_, row) in enumerate(validation.iterrows()):
        colour = PALETTE[1] if str(row.get("source", "")) == "library" else PALETTE[0]
        err = [[effect[i] - low[i]], [high[i] - effect[i]]] if np.isfinite([low[i], high[i]]).all() else None
        ax.errorbar(effect[i], y[i], xerr=err, fmt="o", color=colour, capsize=4, ms=7)
    ax.axvline(0, color="grey", lw=1, ls=":")
    ax.set_yticks(y, labels=names)
    ax.set(xlabel="phenotype change in cells (95% CI)", title="Cell tests")
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


def _compound_name(row: pd.Series) -> str:
    cid = row.get("compound_id")
    name = str(cid) if isinstance(cid, str) and cid.strip() else f"assay {cell_text(row.get('assay'))}"
    return f"{name} ({row.get('source', '')})" if row.get("source") else name


# ---------------------------------------------------------------------------------- molecules
def molecule_svg(smiles: str, size: tuple[int, int] = MOL_SIZE) -> str | None:
    """An inline ``<svg>`` of a structure drawn by RDKit; None when the SMILES does not parse."""
    from rdkit import Chem, rdBase
    from rdkit.Chem.Draw import rdMolDraw2D

    _quiet = rdBase.BlockLogs()  # a bad SMILES is reported in the table, not on stderr
    mol = Chem.MolFromSmiles(str(smiles))
    if mol is None:
        return None
    drawer = rdMolDraw2D.MolDraw2DSVG(*size)
    options: Any = drawer.drawOptions()
    options.clearBackground = False  # transparent: the row's tint shows through
    options.fixedBondLength = 22  # one scale for all: a small molecule is not blown up to fill the box
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    svg = str(drawer.GetDrawingText())
    # Drop the XML declaration: the SVG sits inside the HTML page.
    return svg[svg.index("<svg") :]


def molecules_png(smiles: list[str], legends: list[str]) -> bytes | None:
    """A PNG grid of structures (unparsable SMILES left out); None when none parses."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import Draw

    _quiet = rdBase.BlockLogs()
    pairs = [(Chem.MolFromSmiles(str(s)), lab) for s, lab in zip(smiles, legends, strict=True)]
    pairs = [(m, lab) for m, lab in pairs if m is not None]
    if not pairs:
        return None
    png = Draw.MolsToGridImage(
        [m for m, _ in pairs],
        molsPerRow=min(4, len(pairs)),
        subImgSize=(300, 220),
        legends=[lab for _, lab in pairs],
        returnPNG=True,
    )
    return png if isinstance(png, bytes) else None


# ---------------------------------------------------------------------------------- html pieces


def html_table(
    frame: pd.DataFrame,
    tints: list[str | None] | None = None,
    *,
    markup: tuple[str, ...] = (),
    wrap: tuple[str, ...] = (),
) -> str:
    """An HTML table with optional row tints.

    Args:
        frame: The rows to show (index left out).
        tints: A background colour per row, or None for an untinted row.
        markup: Columns that hold trusted HTML (a drawn structure); the rest is escaped.
        wrap: Columns allowed to wrap (sentences, lists); the others stay on one line.

    Returns:
        The ``<table>`` markup, in the shared template's ``table`` style.
    """
    heads, styles = [], []
    for c in frame.columns:
        left = c in markup or bool(frame[c].map(lambda v: isinstance(v, str)).all())
        # Headers may wrap (a long label must not widen its column); values stay on one line
        # unless the column is a sentence or a list, which gets room to wrap into.
        rules = (
            ["min-width:12em", "overflow-wrap:anywhere"]
            if c in wrap
            else []
            if c in markup
            else ["white-space:nowrap"]
        )
        rules += ["text-align:left"] if left else []
        heads.append(f"<th style='text-align:{'left' if left else 'right'}'>{html.escape(str(c))}</th>")
        styles.append(f" style='{';'.join(rules)}'" if rules else "")
    rows = []
    for (_, row), tint in zip(frame.iterrows(), tints or [None] * len(frame), strict=True):
        cells = "".join(
            f"<td{st}>{v if c in markup else html.escape(cell_text(v))}</td>"
            for c, v, st in zip(frame.columns, row, styles, strict=True)
        )
        rows.append(f"<tr style='background:{tint}'>{cells}</tr>" if tint else f"<tr>{cells}</tr>")
    head = "".join(heads)
    return f"<table class='table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _ci(low: Any, high: Any) -> str:
    lo, hi = as_number(low), as_number(high)
    if math.isnan(lo) or math.isnan(hi):
        return "—"
    return f"[{lo:.3g}, {hi:.3g}]"


def _col(frame: pd.DataFrame, name: str, default: Any = float("nan")) -> pd.Series:
    """A column, or ``default`` on every row when the file does not have it."""
    if name in frame:
        return frame[name]
    return pd.Series([default] * len(frame), index=frame.index, dtype=object)


def _numbers(frame: pd.DataFrame, name: str, digits: int = 3) -> pd.Series:
    """A column as rounded numbers (NaN where missing or not a number)."""
    return pd.to_numeric(_col(frame, name), errors="coerce").round(digits)


def _cis(frame: pd.DataFrame, low: str, high: str) -> list[str]:
    """``[low, high]`` per row from two interval columns."""
    return [_ci(lo, hi) for lo, hi in zip(_col(frame, low), _col(frame, high), strict=True)]


def _count_ids(ids: Any, sep: str = ",") -> int:
    """How many ids a joined list holds (``"P1,P7"`` -> 2; blank -> 0)."""
    return 0 if not isinstance(ids, str) else sum(1 for p in ids.split(sep) if p.strip())


def _spaced(ids: Any) -> str:
    """``"P1,P7"`` -> ``"P1, P7"`` (lets long citation lists wrap)."""
    return ", ".join(p.strip() for p in str(ids).split(",") if p.strip()) if isinstance(ids, str) else ""


def _yes_no(value: Any) -> str:
    return "—" if value is None else "yes" if as_bool(value) else "no"


# ---------------------------------------------------------------------------------- sections
def _headline(report: Report, result: dict[str, Any]) -> None:
    sec = report.section(
        TITLES["headline"],
        "What the campaign achieved on its budget. Causal F1: edge F1 of the agent's graph against "
        "the hidden one (the harmonic mean of precision and recall), for the experiments the RL "
        "policy chose and for random experiments at the same cost. The target is a true driver when "
        "the hidden world makes it (or a gene upstream of it) move the phenotype. The compound "
        "scores are hidden true pIC50s, seen only by this evaluation: the best designed compound "
        "(picked by its measured pIC50 among those passing the filters) against the best compound "
        "of the whole library.",
    )
    causal = result.get("causal") or {}
    target = result.get("target") or {}
    compounds = result.get("compounds")
    budget = result.get("budget") or {}
    cards: dict[str, Any] = {}
    for method, name in (("rl", "RL"), ("random", "random")):
        if method in causal:
            cards[f"causal F1 · {name}"] = round(as_number(causal[method].get("f1")), 3)
    cards["target"] = target.get("target") or "none"
    if target.get("target"):
        cards["true driver? (hidden)"] = _yes_no(target.get("is_driver"))
    if compounds:
        cards["best designed · true pIC50"] = round(as_number(compounds.get("designed_best_true_pic50")), 2)
        cards["library best · true pIC50"] = round(as_number(compounds.get("library_best_true_pic50")), 2)
    spent = sum(as_number(budget.get(k)) for k in ("experiments", "assays", "validation") if k in budget)
    if budget:
        cards["budget spent"] = f"{spent:.4g} of {as_number(budget.get('total')):.4g}"
    sec.metrics(cards)
    sec.text(_headline_sentence(causal, target, compounds))
    scores = {name: causal[m] for m, name in (("rl", "RL policy"), ("random", "random")) if m in causal}
    if scores:
        cols = ["precision", "recall", "f1", "shd", "n_true", "n_pred", "n_correct", "correct_share"]
        table = pd.DataFrame(
            {k: {c: as_number(v.get(c)) for c in [*cols, "experiments", "cost"]} for k, v in scores.items()}
        ).T
        names = {
            "n_true": "true edges",
            "n_pred": "learned",
            "n_correct": "correct",
            "correct_share": "genes' phenotype link right",
        }
        sec.table(
            table.rename(columns=names).rename_axis("experiments chosen by").reset_index(),
            "Causal model against the hidden truth, RL-chosen vs random experiments",
            index=False,
            float_format="{:.3g}",
        )
    if budget:
        parts = {k: as_number(budget.get(k)) for k in ("experiments", "assays", "validation") if k in budget}
        parts["left unspent"] = as_number(budget.get("total")) - spent
        sec.table(
            pd.DataFrame([parts], index=["cost units"]),
            f"Budget of {as_number(budget.get('total')):.4g} and where it went",
            float_format="{:.3g}",
        )


def _headline_sentence(
    causal: dict[str, Any], target: dict[str, Any], compounds: dict[str, Any] | None
) -> str:
    parts = []
    if "rl" in causal and "random" in causal:
        rl, rnd = as_number(causal["rl"].get("f1")), as_number(causal["random"].get("f1"))
        word = "above" if rl > rnd else "below" if rl < rnd else "level with"
        parts.append(
            f"The RL-chosen experiments reach causal F1 {rl:.3f}, {word} random experiments ({rnd:.3f})."
        )
    chosen = target.get("target")
    if chosen:
        driver = "a true driver" if as_bool(target.get("is_driver")) else "not a true driver"
        rank = target.get("true_rank")
        ranked = f", ranked {cell_text(rank)} by its true knockout effect" if rank is not None else ""
        parts.append(f"The campaign chose target {chosen}: {driver} ({HIDDEN}){ranked}.")
    else:
        parts.append(
            "No candidate target gave a screening hit, so no target was chosen and no compound was designed."
        )
    if compounds:
        margin = as_number(compounds.get("margin_over_library"))
        beats = "beats" if as_bool(compounds.get("beats_library")) else "does not beat"
        parts.append(
            f"The best designed compound {beats} the library's best on the hidden activity "
            f"(true pIC50 {as_number(compounds.get('designed_best_true_pic50')):.2f} vs "
            f"{as_number(compounds.get('library_best_true_pic50')):.2f}, margin {margin:+.2f})."
        )
    return " ".join(parts)


def _graph(report: Report, graph: dict[str, Any], truth: dict[str, Any] | None, folder: Path) -> None:
    sec = report.section(
        TITLES["graph"],
        "The agent's causal model after its experiments: each cell is a possible direct effect of the "
        "row gene on the column gene. The strip on the right is the agent's call on which genes lie "
        "upstream of the phenotype (have a path to it).",
    )
    genes = [str(g) for g in graph.get("genes") or []]
    est = np.asarray(graph.get("estimated") or np.zeros((0, 0)), dtype=float) != 0
    if est.shape != (len(genes), len(genes)) or not genes:
        sec.text(f"graph.json is inconsistent: {len(genes)} genes, an estimate of shape {est.shape}.")
        return
    up, not_up = set(map(str, graph.get("upstream") or [])), set(map(str, graph.get("not_upstream") or []))
    calls = np.array([1 if g in up else 0 if g in not_up else 2 for g in genes])
    tru, true_calls = _aligned_truth(genes, truth)
    if tru is not None:
        sec.text(
            "Against the hidden world (read here for evaluation only): green is learned and real, red "
            "learned but not real, orange learned in the wrong direction (its true direction then shows "
            "blue), blue real but missed; the strip's truth column is the hidden world's answer."
        )
    elif truth is None:
        sec.text(
            "The hidden world was not found (the dataset folder named in state.json is gone): "
            "the agent's graph is drawn alone."
        )
    elif tru is None:
        sec.text("The hidden world has other genes than the agent's graph: the agent's graph is drawn alone.")
    fig = campaign_graph_figure(genes, est, tru, calls, true_calls)
    add_figure(sec, fig, folder, "graph.png", "The agent's causal graph (and its phenotype-ancestry calls)")
    off = ~np.eye(len(genes), dtype=bool)
    counts: dict[str, Any] = {"learned edges": int(est[off].sum())}
    if tru is not None:
        cat = graph_categories(est, tru)
        counts = {"true edges": int(tru[off].sum()), **counts}
        counts.update({GRID_LABELS[k].split()[0]: int((cat == k).sum()) for k in (1, 2, 3, 4)})
    counts.update(
        {
            "called upstream": int((calls == 1).sum()),
            "called not upstream": int((calls == 0).sum()),
            "undecided": int((calls == 2).sum()),
        }
    )
    if true_calls is not None:
        counts["calls wrong"] = int(((calls != 2) & (calls != true_calls)).sum())
    sec.table(
        pd.DataFrame([counts], index=["agent's model"]),
        "Edges and phenotype-ancestry calls (a reversal counts once as reversed, once as missed)",
    )


def _aligned_truth(
    genes: list[str], truth: dict[str, Any] | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The hidden adjacency and ancestry calls in the order of the agent's genes (None if they differ)."""
    if truth is None or set(truth["genes"]) != set(genes):
        return None, None
    order = [truth["genes"].index(g) for g in genes]
    adjacency = np.asarray(truth["adjacency"])[np.ix_(order, order)]
    upstream = truth.get("upstream")
    calls = None if upstream is None else np.array([1 if g in upstream else 0 for g in genes])
    return adjacency, calls


def _policy(
    report: Report, curve: pd.DataFrame | None, experiments: pd.DataFrame | None, folder: Path
) -> None:
    sec = report.section(
        TITLES["policy"],
        "The experiment-choosing policy, trained by reinforcement learning on fresh simulated worlds "
        "(never this one) to decide as many genes' links to the phenotype as it can per unit of "
        "budget: its episode return is the information gained minus a charge per unit spent. Here "
        "it chose the experiments below; information is the share of genes whose link to the "
        "phenotype (upstream of it or not) is decided, and an experiment with no gain taught nothing "
        "new.",
    )
    if (curve is None or curve.empty) and (experiments is None or experiments.empty):
        sec.text("The policy left no learning curve and chose no experiment.")
        return
    if experiments is not None and not experiments.empty:
        gain = pd.to_numeric(_col(experiments, "info_gain"), errors="coerce")
        sec.metrics(
            {
                "experiments": len(experiments),
                "genes perturbed": int(_col(experiments, "target", "").nunique()),
                "with no information gain": int((gain.fillna(0) <= 0).sum()),
                "information at the end": round(
                    as_number(pd.to_numeric(_col(experiments, "information"), errors="coerce").iloc[-1]), 3
                ),
            }
        )
    wanted = [(curve, {"timesteps", "episode_return"}), (experiments, {"spent", "information", "info_gain"})]
    usable = [t if t is not None and not t.empty and need <= set(t.columns) else None for t, need in wanted]
    if any(t is not None for t in usable):
        add_figure(
            sec,
            policy_figure(*usable),
            folder,
            "policy.png",
            "Learning curve on training worlds; information gained per experiment here",
        )
    if experiments is not None and not experiments.empty:
        add_html(
            sec,
            _experiments_table(experiments),
            "Experiments the policy chose, in order (grey: no information gained)",
        )


def _experiments_table(experiments: pd.DataFrame) -> str:
    def moved(row: pd.Series) -> str:
        # "phenotype" in the lists: the gene is known (not) to be upstream of it, shown or inferred.
        if "phenotype" in str(row.get("descendants", "")).split(";"):
            return "yes"
        return "no" if "phenotype" in str(row.get("not_descendants", "")).split(";") else "—"

    shifted = [
        sum(1 for g in str(d).split(";") if g.strip() and g != "phenotype") if isinstance(d, str) else 0
        for d in _col(experiments, "descendants", "")
    ]
    shown = pd.DataFrame(
        {
            "step": _col(experiments, "step"),
            "kind": _col(experiments, "kind", ""),
            "gene": _col(experiments, "target", ""),
            "policy prob": _numbers(experiments, "policy_prob"),
            "cost": _col(experiments, "cost"),
            "spent": _col(experiments, "spent"),
            "info gain": _numbers(experiments, "info_gain"),
            "information": _numbers(experiments, "information"),
            "reward": _numbers(experiments, "reward"),
            "known descendants": shifted,
            "upstream of phenotype": [moved(r) for _, r in experiments.iterrows()],
            "phenotype change": _numbers(experiments, "phenotype_effect"),
            "95% CI": _cis(experiments, "phenotype_ci_low", "phenotype_ci_high"),
            "q": _col(experiments, "phenotype_q"),
        }
    )
    gain = pd.to_numeric(_col(experiments, "info_gain"), errors="coerce").fillna(0)
    return html_table(shown, ["#f1f3f6" if g <= 0 else None for g in gain])


def _target(
    report: Report, targets: pd.DataFrame | None, chosen: dict[str, Any] | None, result: dict[str, Any]
) -> None:
    sec = report.section(
        TITLES["target"],
        "Every gene the causal model puts upstream of the phenotype is a candidate, ranked by the "
        "phenotype change its knockout caused; a candidate whose inhibition would raise the phenotype "
        "is excluded. The campaign screens the library against the best eligible candidates in turn "
        "and takes the first with a screening hit (highlighted).",
    )
    # chosen_target.json is the campaign's own record; result.json repeats it.
    name = chosen.get("target") if chosen is not None else (result.get("target") or {}).get("target")
    if targets is not None and not targets.empty:
        is_chosen = [bool(name) and str(g) == name for g in _col(targets, "gene", "")]
        if name and any(is_chosen):
            reason = str(targets.loc[is_chosen, "reason"].iloc[0]) if "reason" in targets else ""
            sec.text(f"Chosen target: {name}. Why: {reason}")
        shown = pd.DataFrame(
            {
                "rank": _col(targets, "rank"),
                "gene": [
                    f"★ {g}" if c else str(g)
                    for g, c in zip(_col(targets, "gene", ""), is_chosen, strict=True)
                ],
                "upstream": _col(targets, "upstream").map(_yes_no),
                "phenotype change": _numbers(targets, "phenotype_effect"),
                "95% CI": _cis(targets, "ci_low", "ci_high"),
                "q": _col(targets, "q"),
                "papers": _col(targets, "papers", "").map(_count_ids),
                "eligible": _col(targets, "eligible").map(_yes_no),
                "reason": _col(targets, "reason", ""),
            }
        )
        add_html(
            sec,
            html_table(shown, [CHOSEN_TINT if c else None for c in is_chosen], wrap=("reason",)),
            "Candidate targets and why (★ chosen)",
        )
    if not name:
        sec.text("No candidate gave a screening hit: no target was chosen, so no compound was designed.")
    tried = (chosen or {}).get("tried") or []
    if tried:
        _screens(sec, tried, name)
    if result.get("target"):
        _target_truth(sec, result["target"], name)


def _screens(sec: Section, tried: list[dict[str, Any]], name: str | None) -> None:
    """The library screens of ``chosen_target.json``, the chosen target's highlighted."""
    table = pd.DataFrame(
        {
            "target": [t.get("target") for t in tried],
            "compounds screened": [t.get("screened") for t in tried],
            "best compound": [t.get("best_compound") for t in tried],
            "best measured pIC50": [round(as_number(t.get("best_pic50")), 2) for t in tried],
            "hit": [_yes_no(t.get("hit")) for t in tried],
        }
    )
    tints = [CHOSEN_TINT if name and t.get("target") == name else None for t in tried]
    add_html(sec, html_table(table, tints), "Library screens, in the order tried")


def _target_truth(sec: Section, evaluation: dict[str, Any], name: str | None) -> None:
    """``result.json``'s scores of the target against the hidden world."""
    rows = {
        "best true target": evaluation.get("best_true_target"),
        "best true target's knockout effect": as_number(evaluation.get("best_true_effect")),
        "candidates": evaluation.get("candidates"),
    }
    if name:
        rows.update(
            {
                "chosen target upstream of the phenotype": _yes_no(evaluation.get("is_upstream")),
                "chosen target a driver": _yes_no(evaluation.get("is_driver")),
                "chosen target's true knockout effect": as_number(evaluation.get("true_knockout_effect")),
                "its rank by true effect": evaluation.get("true_rank"),
                "druggable": _yes_no(evaluation.get("druggable")),
            }
        )
    frame = pd.DataFrame({"measure": list(rows), "value": [cell_text(v) for v in rows.values()]})
    add_html(sec, html_table(frame), f"The target against the hidden world ({HIDDEN})")


def _design(
    report: Report,
    assays: pd.DataFrame | None,
    compounds: pd.DataFrame | None,
    result: dict[str, Any],
    hit: float | None,
    folder: Path,
) -> None:
    sec = report.section(
        TITLES["design"],
        "After the library screen, each design round proposes new compounds from the best so far, "
        "predicts their potency with a model trained on every assay so far (mean ± sd), and sends "
        "the most promising (an upper confidence bound) to the assay, which measures pIC50 with "
        "noise (and up to its top of range). Filters score drug-likeness (QED; SA, the synthetic "
        "accessibility, 1 easy to 10 hard; TPSA, the polar surface area; Lipinski rule-of-five "
        "violations) and novelty (library sim.: the Tanimoto similarity to the nearest library "
        "compound). Rounds go on until the budget is spent, the most rounds are done, or several "
        "rounds in a row find nothing better.",
    )
    stopped = (result.get("design") or {}).get("stopped")
    if stopped:
        add_html(sec, f"<p>The design stopped: {html.escape(str(stopped))}.</p>")
    target = (result.get("target") or {}).get("target")
    summary = result.get("compounds") or {}
    if summary:
        sec.metrics(
            {
                "compounds assayed": cell_text(summary.get("assayed")),
                "designed and assayed": cell_text(summary.get("designed_assayed")),
                "designed passing filters": cell_text(summary.get("designed_passing")),
                "design rounds": cell_text((result.get("design") or {}).get("rounds")),
                "activity model reads": cell_text((result.get("design") or {}).get("features", "morgan")),
                "rounds whose model kept the embeddings": cell_text(
                    (result.get("design") or {}).get("rounds_with_embeddings")
                ),
                "best designed · measured": round(as_number(summary.get("designed_best_measured_pic50")), 2),
                "best designed · true (hidden)": round(as_number(summary.get("designed_best_true_pic50")), 2),
                "library best · true (hidden)": round(as_number(summary.get("library_best_true_pic50")), 2),
            }
        )
    if assays is not None and not assays.empty and {"round", "measured_pic50"} <= set(assays.columns):
        mine = (
            assays[_col(assays, "target", "").astype(str) == str(target)]
            if target and "target" in assays
            else assays
        )
        if not mine.empty:
            caption = f"Measured pIC50 per round against {target}" if target else "Measured pIC50 per round"
            add_figure(sec, rounds_figure(mine, hit), folder, "rounds.png", caption)
    if compounds is not None and not compounds.empty:
        _structures(sec, compounds, summary, folder)


def _structures(sec: Section, compounds: pd.DataFrame, summary: dict[str, Any], folder: Path) -> None:
    measured = pd.to_numeric(_col(compounds, "measured_pic50"), errors="coerce")
    ranked = compounds.assign(_m=measured).sort_values("_m", ascending=False, kind="stable")
    source = _col(ranked, "source", "").astype(str)
    designed = ranked[source == "designed"]
    top = designed.head(MOLECULES_SHOWN)
    pick = summary.get("designed_best_smiles")
    if pick and pick not in set(top.get("smiles", [])):
        # The campaign's pick (best measured among those passing the filters) is always shown.
        top = pd.concat([top, designed[designed["smiles"] == pick].head(1)])
    library = ranked[source == "library"].head(1)
    rows = pd.concat([top, library])
    if rows.empty:
        sec.text("No compound was assayed.")
        return
    tints = [
        LIBRARY_TINT if s == "library" else CHOSEN_TINT if pick and smi == pick else None
        for s, smi in zip(_col(rows, "source", ""), _col(rows, "smiles", ""), strict=True)
    ]
    add_html(
        sec,
        html_table(_structure_rows(rows), tints, markup=("structure",), wrap=("filters",)),
        f"The {len(top)} most potent designed compounds by measured pIC50 (yellow: the campaign's "
        "pick) and the best library compound of the screen (blue)",
    )
    png = molecules_png(list(_col(rows, "smiles", "")), [_legend(r) for _, r in rows.iterrows()])
    if png is not None:
        atomic_write_bytes(folder / "molecules.png", png)
        sec.html(
            "<p class='note'>These structures as one image: <a href='molecules.png'>molecules.png</a></p>"
        )


def _legend(row: pd.Series) -> str:
    where = "library" if row.get("source") == "library" else f"round {cell_text(row.get('round'))}"
    return f"{where}, measured {as_number(row.get('measured_pic50')):.2f}"


def _structure_rows(rows: pd.DataFrame) -> pd.DataFrame:
    def structure(smiles: Any) -> str:
        svg = molecule_svg(str(smiles)) if isinstance(smiles, str) else None
        drawn = svg or "<em>SMILES does not parse</em>"
        code = html.escape(str(smiles))
        style = f"font:10px monospace;word-break:break-all;max-width:{MOL_SIZE[0]}px"
        return f"{drawn}<div style='{style}'>{code}</div>"

    def origin(row: pd.Series) -> str:
        if row.get("source") == "library":
            return f"library {row.get('compound_id') or ''}".strip()
        return f"design {cell_text(row.get('round'))}"

    def filters(row: pd.Series) -> str:
        if as_bool(row.get("passes")):
            return "✓ passes"
        reasons = row.get("reasons")
        return f"✗ {reasons}" if isinstance(reasons, str) and reasons.strip() else "✗ fails"

    mean, sd = (
        pd.to_numeric(_col(rows, "predicted_mean"), errors="coerce"),
        pd.to_numeric(_col(rows, "predicted_sd"), errors="coerce"),
    )
    return pd.DataFrame(
        {
            "structure": _col(rows, "smiles", "").map(structure).to_numpy(),
            "compound": [origin(r) for _, r in rows.iterrows()],
            "measured pIC50": _numbers(rows, "measured_pic50", 2).to_numpy(),
            "predicted pIC50": [
                f"{m:.2f} ± {s:.2f}" if math.isfinite(m) and math.isfinite(s) else "—"
                for m, s in zip(mean, sd, strict=True)
            ],
            f"true pIC50 ({HIDDEN})": _numbers(rows, "true_pic50", 2).to_numpy(),
            "QED": _numbers(rows, "qed", 2).to_numpy(),
            "SA": _numbers(rows, "sa", 2).to_numpy(),
            "TPSA": _numbers(rows, "tpsa", 1).to_numpy(),
            "Lipinski viol.": _col(rows, "lipinski_violations").to_numpy(),
            "library sim.": _numbers(rows, "library_similarity", 2).to_numpy(),
            "filters": [filters(r) for _, r in rows.iterrows()],
        }
    )


def _cells(report: Report, validation: pd.DataFrame, folder: Path) -> None:
    sec = report.section(
        TITLES["cells"],
        "The best designed compounds and the best library hit, each tested in cells at one dose: "
        "the change of the phenotype against untreated cells (with its 95% confidence interval and "
        "FDR-adjusted q) and the change of the target gene's expression. The campaign aims to lower "
        "the phenotype, so a negative change is the wanted one.",
    )
    if validation.empty:
        sec.text("No compound was tested in cells.")
        return
    if {"phenotype_effect"} <= set(validation.columns):
        add_figure(
            sec, validation_figure(validation), folder, "validation.png", "Phenotype change in cells (95% CI)"
        )
    shown = pd.DataFrame(
        {
            "compound": _col(validation, "compound_id", ""),
            "source": _col(validation, "source", ""),
            "measured pIC50": _numbers(validation, "measured_pic50", 2),
            "dose (µM)": _col(validation, "dose_um"),
            "phenotype change": _numbers(validation, "phenotype_effect"),
            "95% CI": _cis(validation, "phenotype_ci_low", "phenotype_ci_high"),
            "q": _col(validation, "phenotype_q"),
            "target expression change": _numbers(validation, "target_effect"),
            "cost": _col(validation, "cost"),
            "SMILES": _col(validation, "smiles", ""),
        }
    )
    tints = [LIBRARY_TINT if s == "library" else None for s in _col(validation, "source", "")]
    add_html(sec, html_table(shown, tints, wrap=("SMILES",)), "Cell tests (blue: the library hit)")


def _literature(
    report: Report,
    claims: pd.DataFrame | None,
    logic: pd.DataFrame | None,
    contradictions: list[str] | None,
    n_claims: Any,
) -> None:
    sec = report.section(
        TITLES["literature"],
        "The hypotheses read from the literature (cause, effect, sign, a confidence aggregated over "
        "the papers that support it), and what the logic derived from them: indirect relations along "
        "chains of claims, and the contradictions it found and resolved. They are priors for the "
        "experiments, never taken as facts.",
    )
    cards: dict[str, Any] = {}
    if claims is not None:
        papers = {p for ids in _col(claims, "papers", "") for p in _spaced(ids).split(", ") if p}
        cards.update({"claims": len(claims), "papers cited": len(papers)})
    elif n_claims is not None:
        cards["claims"] = n_claims
    if logic is not None:
        cards["derived relations"] = len(logic)
        cards["of them indirect paths"] = int((_numbers(logic, "length") > 1).sum())
    if contradictions is not None:
        cards["contradictions"] = len(contradictions)
    if cards:
        sec.metrics(cards)
    if claims is not None and not claims.empty:
        _claims_table(sec, claims)
    if logic is not None and not logic.empty:
        _paths_table(sec, logic)
    if contradictions is not None:
        _contradictions(sec, contradictions)


def _arrow(frame: pd.DataFrame) -> pd.Series:
    """``cause → effect`` per row."""
    return _col(frame, "cause", "").astype(str) + " → " + _col(frame, "effect", "").astype(str)


def _claims_table(sec: Section, claims: pd.DataFrame) -> None:
    top = claims.assign(confidence=_numbers(claims, "confidence"))
    top = top.sort_values("confidence", ascending=False, kind="stable").head(CLAIMS_SHOWN)
    shown = pd.DataFrame(
        {
            "claim": _arrow(top),
            "sign": _col(top, "sign", ""),
            "confidence": top["confidence"],
            "papers": _col(top, "papers", "").map(_spaced),
        }
    )
    caption = f"The {len(top)} most confident of {len(claims)} claims"
    add_html(sec, html_table(shown, wrap=("papers",)), caption)


def _paths_table(sec: Section, logic: pd.DataFrame) -> None:
    paths = logic.assign(length=_numbers(logic, "length"), confidence=_numbers(logic, "confidence"))
    paths = paths[paths["length"] > 1].sort_values("confidence", ascending=False, kind="stable")
    if paths.empty:
        return
    top = paths.head(CLAIMS_SHOWN)
    shown = pd.DataFrame(
        {
            "relation": _arrow(top),
            "sign": _col(top, "sign", ""),
            "path": _col(top, "path", "").astype(str).str.replace("->", " → "),
            "length": top["length"],
            "confidence": top["confidence"],
        }
    )
    caption = f"The {len(top)} most confident of {len(paths)} indirect relations the logic derived"
    add_html(sec, html_table(shown), caption)


def _contradictions(sec: Section, contradictions: list[str]) -> None:
    if not contradictions:
        sec.text("The logic found no contradiction among the claims.")
        return
    caption = f"Contradictions found and how they were resolved ({len(contradictions)})"
    add_html(sec, contradictions_markup(contradictions), caption)


def _steps(report: Report, state: dict[str, Any]) -> None:
    sec = report.section(
        TITLES["steps"],
        "Provenance from state.json: each step of the campaign, whether it finished, how many "
        "attempts it took (a failed attempt is retried) and its wall time, summed over resumed "
        "sessions. A killed campaign resumes from the first step not done.",
    )
    steps = state.get("steps") or {}
    order = [s for s in state.get("order") or [] if s in steps] + [
        s for s in steps if s not in (state.get("order") or [])
    ]
    if not order:
        sec.text("No step was recorded.")
        return
    frame = pd.DataFrame(
        {
            "step": order,
            "status": [str(steps[s].get("status", "")) for s in order],
            "attempts": [steps[s].get("attempts") for s in order],
            "seconds": [round(as_number(steps[s].get("seconds")), 2) for s in order],
        }
    )
    if any(steps[s].get("error") for s in order):
        frame["last error"] = [str(steps[s].get("error") or "") for s in order]
    seconds = pd.to_numeric(frame["seconds"], errors="coerce")
    sec.metrics(
        {
            "steps done": int((frame["status"] == "done").sum()),
            "retried": int((pd.to_numeric(frame["attempts"], errors="coerce") > 1).sum()),
            "total seconds": round(float(seconds.sum()), 1),
        }
    )
    tints = [None if s == "done" else BAD_TINT if s == "failed" else "#f1f3f6" for s in frame["status"]]
    add_html(
        sec,
        html_table(frame, tints, wrap=("last error",)),
        "Steps in the order they finished, unfinished ones last (red: failed)",
    )


# ---------------------------------------------------------------------------------- the report
def build_campaign_report(folder: str | Path, *, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a finished campaign folder, and its figures as PNG beside it.

    Args:
        folder: The campaign folder (``run_campaign``'s layout).
        out: The HTML file to write (default ``FOLDER/report.html``); figures go in its folder.

    Returns:
        The path of the report.

    Raises:
        InputFileError: The folder has no ``result.json`` (the campaign has not been evaluated),
            or a JSON file in it is not valid JSON.
    """
    folder = Path(folder)
    result = _read_json(folder / "result.json")
    if not isinstance(result, dict):
        raise InputFileError(f"{folder}: no result.json; finish the campaign (its evaluate step) first")
    state = _read_json(folder / "state.json") or {}
    metrics = _read_json(folder / "metrics.json") or {}
    target = Path(out) if out else folder / REPORT_FILE
    figures = target.parent
    figures.mkdir(parents=True, exist_ok=True)
    set_theme()

    report = Report("Level 5 — autonomous campaign", _subtitle(folder, state, result))
    report.meta = _meta(state, metrics)
    _headline(report, result)
    graph = _read_json(folder / "graph.json")
    if graph:
        _graph(report, graph, load_truth(folder, state), figures)
    curve, experiments = read_table(folder, "policy/curve.csv"), read_table(folder, "experiments.csv")
    if curve is not None or experiments is not None:
        _policy(report, curve, experiments, figures)
    targets, chosen = read_table(folder, "targets.csv"), _read_json(folder / "chosen_target.json")
    if targets is not None or chosen is not None:
        _target(report, targets, chosen, result)
    compounds = read_table(folder, "compounds.csv")
    if result.get("compounds") or compounds is not None:
        hit = as_number(((state.get("settings") or {}).get("campaign") or {}).get("hit_pic50"))
        _design(report, read_table(folder, "assays.csv"), compounds, result, hit, figures)
    validation = read_table(folder, "validation.csv")
    if validation is not None:
        _cells(report, validation, figures)
    claims, logic = read_table(folder, "claims.csv"), read_table(folder, "logic.csv")
    contradictions = _read_lines(folder / "contradictions.txt")
    if claims is not None or logic is not None or contradictions is not None:
        _literature(report, claims, logic, contradictions, result.get("claims"))
    if state.get("steps"):
        _steps(report, state)
    return report.write(target)


def _subtitle(folder: Path, state: dict[str, Any], result: dict[str, Any]) -> str:
    settings = state.get("settings") or {}
    world, literature = settings.get("world") or {}, settings.get("literature") or {}
    parts = [f"campaign {folder.resolve().name}"]
    if "seed" in settings:
        parts.append(f"seed {settings['seed']}")
    if "n_genes" in world:
        parts.append(f"{world['n_genes']} genes")
    if "n_papers" in literature:
        parts.append(f"{literature['n_papers']} papers")
    total = as_number((result.get("budget") or {}).get("total"))
    if math.isfinite(total):
        parts.append(f"budget {total:g}")
    return " · ".join(parts)


def _meta(state: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """Campaign details for the report's last table (no machine paths: the dataset by name)."""
    settings = state.get("settings") or {}
    camp = settings.get("campaign") or {}
    meta: dict[str, Any] = {}
    for key, name in (("profile", "profile"), ("seed", "seed")):
        if key in metrics:
            meta[name] = metrics[key]
    names = {
        "budget": "budget",
        "causal_share": "share of the budget for experiments",
        "rl_algo": "RL algorithm",
        "rl_timesteps": "RL training timesteps",
        "screen_size": "library screen size",
        "design_rounds": "most design rounds",
        "design_patience": "rounds without a better compound before the design stops",
        "design_batch": "compounds per round",
        "validate_top": "designed compounds tested in cells",
    }
    meta.update({name: camp[k] for k, name in names.items() if k in camp})
    data = (state.get("notes") or {}).get("data")
    if data:
        meta["dataset"] = Path(str(data)).name
    if "fingerprint" in state:
        meta["settings fingerprint"] = state["fingerprint"]
    if "headline_metric" in metrics:
        meta[str(metrics["headline_metric"])] = cell_text(as_number(metrics.get("headline_value")))
    return meta
