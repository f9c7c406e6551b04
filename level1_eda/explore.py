"""Exploration: associations and figures (seaborn PNGs and interactive plotly).

Numbers come first (`correlations`, `cramers_v_matrix`, `rank_features`);
figures only draw them. Figures use a random sample (``cfg.plot_rows``), so a
million-row file plots as fast as a small one and each image stays small.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shared.plotting import PALETTE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Most frequent levels shown per categorical column in count plots.
TOP_LEVELS = 10


def _plt() -> Any:
    # Imported lazily: the CLI's `--help` and `predict` never pay matplotlib's import time.
    import matplotlib.pyplot as plt

    return plt


def sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to `n` random rows, in their original order."""
    return df.sample(n=n, random_state=seed).sort_index() if len(df) > n else df


def as_labels(s: pd.Series) -> pd.Series:
    """A column as plain strings for plotting (missing values shown as "(missing)")."""
    return s.astype(object).where(s.notna(), "(missing)").astype(str)


# ---------------------------------------------------------------------------- numbers


def correlations(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Pearson correlation between numeric columns (pairwise complete rows)."""
    return df[columns].corr(method="pearson") if len(columns) >= 2 else pd.DataFrame()


def cramers_v(x: pd.Series, y: pd.Series) -> float:
    """Bias-corrected Cramér's V between two categorical columns (Bergsma, 2013).

    0 means no association, 1 means one column determines the other. Rows
    missing either value are left out.

    Example:
        >>> a = pd.Series(list("aabb" * 25)); round(cramers_v(a, a), 3)
        1.0
    """
    mask = x.notna().to_numpy() & y.notna().to_numpy()
    xc, _ = pd.factorize(x[mask])
    yc, _ = pd.factorize(y[mask])
    n = len(xc)
    if n < 2:
        return float("nan")
    r, k = xc.max() + 1, yc.max() + 1
    if r < 2 or k < 2:
        return 0.0
    table = np.bincount(xc * k + yc, minlength=r * k).reshape(r, k).astype(float)
    expected = table.sum(axis=1, keepdims=True) @ table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    phi2 = chi2 / n
    # Bias correction: a random table has chi² ≈ (r-1)(k-1), not 0.
    phi2c = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc = r - (r - 1) ** 2 / (n - 1)
    kc = k - (k - 1) ** 2 / (n - 1)
    denom = min(kc - 1, rc - 1)
    return math.sqrt(phi2c / denom) if denom > 0 else 0.0


def cramers_v_matrix(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Cramér's V for every pair of `columns` (a symmetric matrix, 1 on the diagonal)."""
    m = pd.DataFrame(np.eye(len(columns)), index=columns, columns=columns)
    for i, a in enumerate(columns):
        for b in columns[i + 1 :]:
            m.loc[a, b] = m.loc[b, a] = cramers_v(df[a], df[b])
    return m


def rank_features(df: pd.DataFrame, columns: list[str], target: str, task: str) -> pd.Series:
    """Numeric columns ordered by how strongly they relate to the target, strongest first.

    Classification: ANOVA F statistic (between-class / within-class variance).
    Regression: absolute Pearson correlation with the target.
    """
    if not columns:
        return pd.Series(dtype=float)
    data = df[[*columns, target]].dropna(subset=[target])
    if task == "regression":
        scores = data[columns].corrwith(data[target].astype(float)).abs()
    else:
        groups = data.groupby(as_labels(data[target]), observed=True)[columns]
        means, counts = groups.mean(), groups.count()
        grand = data[columns].mean()
        between = (counts * (means - grand) ** 2).sum()
        within = (groups.var(ddof=0) * counts).sum()
        scores = between / within.replace(0, np.nan)
    return scores.fillna(0).sort_values(ascending=False)


# ---------------------------------------------------------------------------- figures


def missing_bar(missing: pd.DataFrame) -> Figure:
    """Horizontal bars: share of missing values per column."""
    plt = _plt()
    import seaborn as sns

    data = missing.reset_index().head(30)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(data) + 1.2))
    sns.barplot(data=data, y="column", x="missing %", ax=ax, color="#C44E52")
    ax.set_xlabel("missing values (% of rows)")
    ax.set_ylabel("")
    for p, v in zip(ax.patches, data["missing"], strict=False):
        ax.annotate(f" {v:,}", (p.get_width(), p.get_y() + p.get_height() / 2), va="center", fontsize=9)
    ax.set_xlim(0, max(5.0, float(data["missing %"].max()) * 1.25))
    fig.tight_layout()
    return fig


def target_plot(y: pd.Series, task: str) -> Figure:
    """Class counts (classification) or a histogram (regression) of the target."""
    plt = _plt()
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.2))
    if task == "classification":
        counts = as_labels(y).value_counts()
        sns.barplot(x=counts.values, y=counts.index.astype(str), ax=ax, orient="h")
        ax.set_xlabel("rows")
        ax.set_ylabel(str(y.name))
        for p, v in zip(ax.patches, counts.values, strict=False):
            share = 100 * v / counts.sum()
            ax.annotate(
                f" {v:,} ({share:.0f}%)", (p.get_width(), p.get_y() + p.get_height() / 2), va="center"
            )
        ax.set_xlim(0, counts.max() * 1.3)
    else:
        sns.histplot(y.dropna(), ax=ax, bins=40, kde=True)
        ax.set_xlabel(str(y.name))
    ax.set_title(f"Target: {y.name}")
    fig.tight_layout()
    return fig


def _grid(n: int, ncols: int = 3, size: tuple[float, float] = (4.2, 3.0)) -> tuple[Any, list[Any]]:
    plt = _plt()
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat


def _class_colours(labels: pd.Series) -> dict[str, str]:
    levels = labels.value_counts().index
    return {lvl: PALETTE[i % len(PALETTE)] for i, lvl in enumerate(levels)}


def numeric_distributions(data: pd.DataFrame, columns: list[str], target: str, task: str) -> Figure:
    """A histogram with a density curve per numeric column, one colour per class for classification.

    Drawn with NumPy histograms and plain matplotlib rather than one seaborn call per panel:
    the same picture, several times faster on wide files.
    """
    from scipy.stats import gaussian_kde

    fig, axes = _grid(len(columns))
    groups: dict[str, pd.Series] = {"all rows": pd.Series(True, index=data.index)}
    colours = {"all rows": PALETTE[0]}
    if task == "classification":
        labels = as_labels(data[target])
        colours = _class_colours(labels)
        groups = {lvl: labels == lvl for lvl in colours}
    for ax, col in zip(axes, columns, strict=False):
        values = pd.to_numeric(data[col], errors="coerce")
        finite = values.dropna()
        if finite.empty:
            continue
        edges = np.histogram_bin_edges(finite, bins=30)
        grid = np.linspace(edges[0], edges[-1], 200)
        smooth = finite.nunique() > 10  # a density curve over a few distinct values only misleads
        for name, mask in groups.items():
            v = values[mask].dropna().to_numpy()
            if v.size == 0:
                continue
            ax.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.3, color=colours[name])
            if smooth and v.size > 2 and np.ptp(v) > 0:
                ax.plot(grid, gaussian_kde(v)(grid), color=colours[name], lw=1.5, label=name)
            else:
                ax.plot([], [], color=colours[name], lw=1.5, label=name)
        ax.set_title(col)
        ax.set_yticks([])
    if task == "classification":
        axes[0].legend(title=target, fontsize=8, title_fontsize=9, loc="upper right")
    fig.suptitle("Numeric columns" + (f" by {target}" if task == "classification" else "") + " (density)")
    fig.tight_layout()
    return fig


def categorical_counts(data: pd.DataFrame, columns: list[str], target: str, task: str) -> Figure:
    """Counts of the most frequent levels of each categorical column, one bar per class."""
    fig, axes = _grid(len(columns), size=(4.6, 3.2))
    hue = as_labels(data[target]) if task == "classification" else pd.Series("rows", index=data.index)
    colours = _class_colours(hue)
    for ax, col in zip(axes, columns, strict=False):
        labels = as_labels(data[col])
        top = labels.value_counts().index[:TOP_LEVELS]
        keep = labels.isin(top)
        counts = pd.crosstab(labels[keep], hue[keep]).reindex(
            index=top[::-1], columns=list(colours), fill_value=0
        )
        height = 0.8 / counts.shape[1]
        y = np.arange(len(counts))
        for k, cls in enumerate(counts.columns):
            offset = 0.4 - height / 2 - k * height  # first class on top of each group, as in the legend
            ax.barh(y + offset, counts[cls], height=height, color=colours[cls], label=cls)
        ax.set_yticks(y, [str(v)[:18] for v in counts.index], fontsize=8)
        ax.set_title(col if len(top) == labels.nunique() else f"{col} (top {len(top)} levels)")
        ax.set_xlabel("rows")
    if task == "classification":
        axes[0].legend(title=target, fontsize=8, title_fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def heatmap(
    matrix: pd.DataFrame, title: str, *, vmin: float = -1, vmax: float = 1, cmap: str = "vlag"
) -> Figure:
    """An annotated heatmap of a square association matrix."""
    plt = _plt()
    import seaborn as sns

    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n + 2, 0.8 + 0.5 * n))
    sns.heatmap(
        matrix.round(2) + 0.0,  # + 0.0 turns -0.00 into 0.00
        ax=ax,
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        annot=n <= 16,
        fmt=".2f",
        annot_kws={"size": 8},
        square=False,
        linewidths=0.5,
        cbar_kws={"shrink": 0.8},
    )
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45, labelsize=9)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.tick_params(axis="y", labelsize=9, rotation=0)
    fig.tight_layout()
    return fig


def pair_plot(data: pd.DataFrame, columns: list[str], target: str, task: str) -> Figure:
    """Scatter plots of every pair of `columns` (lower triangle) with histograms on the diagonal.

    Like ``seaborn.pairplot(corner=True)``, drawn directly with matplotlib for speed.
    """
    plt = _plt()
    k = len(columns)
    labels = as_labels(data[target]) if task == "classification" else pd.Series("rows", index=data.index)
    colours = _class_colours(labels)
    fig, axes = plt.subplots(k, k, figsize=(2.3 * k + 1.2, 2.3 * k), squeeze=False)
    values = {c: pd.to_numeric(data[c], errors="coerce") for c in columns}
    for i, row in enumerate(columns):
        for j, col in enumerate(columns):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            for cls, colour in colours.items():
                mask = labels == cls
                if i == j:
                    finite = values[col].dropna()
                    edges = np.histogram_bin_edges(finite, bins=20) if len(finite) else 10
                    ax.hist(values[col][mask].dropna(), bins=edges, alpha=0.45, color=colour)
                else:
                    ax.scatter(values[col][mask], values[row][mask], s=8, alpha=0.6, color=colour, lw=0)
            ax.tick_params(labelsize=8)
            ax.set_xlabel(col if i == k - 1 else "", fontsize=9)
            ax.set_ylabel(row if j == 0 and i > 0 else "", fontsize=9)
            if i < k - 1:
                ax.set_xticklabels([])
            if j > 0:
                ax.set_yticklabels([])
    if task == "classification":
        handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=n) for n, c in colours.items()]
        fig.legend(handles=handles, title=target, loc="upper right", frameon=False)
    fig.tight_layout()
    return fig


def interactive_scatter(data: pd.DataFrame, x: str, y: str, target: str, task: str) -> Any:
    """A plotly scatter of two columns coloured by the target; hover shows the row."""
    import plotly.express as px

    frame = data.copy()
    color = target
    if task == "classification":
        frame[target] = as_labels(frame[target])
    hover = [c for c in frame.columns if c not in (x, y)][:8]
    fig = px.scatter(
        frame,
        x=x,
        y=y,
        color=color,
        hover_data=hover,
        opacity=0.7,
        color_discrete_sequence=PALETTE,
        title=f"{y} against {x} (hover a point to see its row)",
        template="plotly_white",
    )
    fig.update_layout(height=480, margin={"l": 40, "r": 20, "t": 60, "b": 40})
    return fig


def interactive_boxes(data: pd.DataFrame, columns: list[str], target: str) -> Any:
    """Plotly box plots of numeric columns per class, one panel per column."""
    import plotly.express as px

    long = data[columns].assign(**{target: as_labels(data[target])}).melt(id_vars=target, var_name="column")
    fig = px.box(
        long,
        x=target,
        y="value",
        color=target,
        color_discrete_sequence=PALETTE,
        facet_col="column",
        facet_col_wrap=min(4, len(columns)),
        template="plotly_white",
        title=f"Numeric columns by {target} (zoom, hover, click the legend)",
    )
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=320 * math.ceil(len(columns) / 4) + 80, showlegend=False)
    return fig
