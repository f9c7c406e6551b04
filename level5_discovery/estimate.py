"""The investigation's causal graph: parents chosen among each gene's known or possible ancestors.

Interventions tell the loop *ancestry* (do(X) moved Y: X is upstream of Y) but not which
ancestors are *direct* parents: X -> M -> Y and X -> Y both make Y move under do(X). This module
decides, per gene, which of its candidate ancestors are direct causes, by a forward-backward
selection of regressors scored with BIC on the pooled wells — observational, controls and every
interventional well *except those where the gene itself was intervened on* (there its value was
set by the experimenter, not by its parents: the interventional score of GIES, Hauser & Bühlmann
2012). Knockouts of a mediator break the collinearity between X and M, so a mediated path drops
out and a shortcut edge stays.

Each regressor enters with two terms by default, x and min(x - median, 0): a line with one slope
above the parent's median and another below it (a hinge). Regulators near saturation answer a fall
of their parent more strongly than a rise, and a knockout is the largest fall there is, so one
straight line through both sides mis-fits the knockout wells; the residual is then soaked up by
the parent's own upstream regulators, which enter as spurious shortcut edges. On the designed
loop's own wells (quick profile, budget 30) the hinge lowered the mean final SHD from 2.9
(x and tanh(x - median)) to 1.8 on worlds 3-13, where it was chosen, and from 3.3 to 3.1 on
worlds 0-2 and 14-19, which played no part in the choice; tanh stays available as ``basis="tanh"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

Basis = Literal["hinge", "tanh", "linear"]


class EstimateConfig(BaseModel):
    """Settings of the parent selection."""

    model_config = ConfigDict(extra="forbid")

    max_parents: int = Field(4, ge=1, description="At most this many parents per gene")
    bic_penalty: float = Field(1.0, gt=0, description="Multiplier of BIC's log(n) per parameter")
    basis: Basis = Field(
        "hinge",
        description="Terms per parent: x and min(x - median, 0) (hinge), x and tanh(x - median), or x alone",
    )
    min_rows: int = Field(8, ge=3, description="Fewer usable wells than this: no parent is chosen")


@dataclass(frozen=True)
class ParentChoice:
    """Why a gene's parents are what they are.

    Attributes:
        gene: The child.
        parents: Chosen parents (names).
        delta_bic: Per parent, how much BIC worsens when it is left out (evidence strength).
        candidates: The ancestors it was chosen from.
        n_rows: Wells used.
    """

    gene: str
    parents: tuple[str, ...]
    delta_bic: dict[str, float]
    candidates: tuple[str, ...]
    n_rows: int


def design_matrix(x: np.ndarray, cols: Sequence[int], basis: Basis, centre: np.ndarray) -> np.ndarray:
    """The regression design: an intercept, then each parent's terms under ``basis``.

    Args:
        x: ``(rows, n)`` values of every gene.
        cols: The parents' column indices.
        basis: ``hinge`` (x and min(x - centre, 0)), ``tanh`` (x and tanh(x - centre)) or ``linear``.
        centre: ``(n,)`` per-gene centre of the nonlinear term (the median over the rows).
    """
    parts = [np.ones((x.shape[0], 1))]
    for c in cols:
        parts.append(x[:, [c]])
        if basis == "hinge":
            parts.append(np.minimum(x[:, [c]] - centre[c], 0.0))
        elif basis == "tanh":
            parts.append(np.tanh(x[:, [c]] - centre[c]))
    return np.hstack(parts)


def _bic(y: np.ndarray, design: np.ndarray, penalty: float) -> float:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rss = float(np.sum((y - design @ coef) ** 2))
    n = y.shape[0]
    return float(n * np.log(max(rss / n, 1e-12)) + penalty * design.shape[1] * np.log(n))


def select_parents(
    x: np.ndarray, y: np.ndarray, candidates: Sequence[int], cfg: EstimateConfig
) -> tuple[list[int], dict[int, float]]:
    """Forward then backward selection of ``y``'s regressors among ``candidates`` by BIC.

    Args:
        x: ``(rows, n)`` values of every gene on the usable wells.
        y: ``(rows,)`` the child's values on the same wells.
        candidates: Column indices allowed as parents.
        cfg: Selection settings.

    Returns:
        The chosen columns and, for each, the BIC increase when it alone is removed.
    """
    centre = np.median(x, axis=0)

    def score(cols: Sequence[int]) -> float:
        return _bic(y, design_matrix(x, cols, cfg.basis, centre), cfg.bic_penalty)

    chosen: list[int] = []
    best = score(chosen)
    pool = list(candidates)
    while pool and len(chosen) < cfg.max_parents:
        trials = [(score([*chosen, c]), c) for c in pool]
        value, pick = min(trials)
        if value >= best:
            break
        best, chosen = value, [*chosen, pick]
        pool.remove(pick)
    improved = True
    while improved and len(chosen) > 1:  # backward: drop what a later pick made redundant
        improved = False
        for c in list(chosen):
            rest = [k for k in chosen if k != c]
            value = score(rest)
            if value < best:
                best, chosen, improved = value, rest, True
                break
    deltas = {c: score([k for k in chosen if k != c]) - best for c in chosen}
    return chosen, deltas


def estimate_graph(
    data: pd.DataFrame,
    genes: Sequence[str],
    allowed: np.ndarray,
    cfg: EstimateConfig | None = None,
) -> tuple[np.ndarray, list[ParentChoice]]:
    """Each gene's parents among its allowed causes, on the pooled wells.

    Args:
        data: Wells with one column per gene plus ``intervention`` (kind or "observe") and
            ``target`` (the intervened gene, "" for none), as the experiment API returns them
            (controls included).
        genes: Gene order of the adjacency matrix.
        allowed: ``(n, n)`` bool, ``allowed[i, j]``: ``i`` may be a direct cause of ``j`` (known
            or possible ancestors; the caller keeps it acyclic-consistent with the evidence).
        cfg: Selection settings.

    Returns:
        The adjacency matrix and the per-gene choices (for the evidence trail).
    """
    cfg = cfg or EstimateConfig()
    x_all = data[list(genes)].to_numpy(dtype=float)
    treated = data["arm"].to_numpy() == "treated" if "arm" in data else np.zeros(len(data), bool)
    targets = data["target"].astype(str).to_numpy() if "target" in data else np.full(len(data), "")
    adj = np.zeros((len(genes), len(genes)), dtype=bool)
    choices: list[ParentChoice] = []
    for j, gene in enumerate(genes):
        rows = ~(treated & (targets == gene))  # wells where the gene followed its parents
        cand = [int(i) for i in np.flatnonzero(allowed[:, j]) if i != j]
        if rows.sum() < cfg.min_rows or not cand:
            choices.append(ParentChoice(gene, (), {}, tuple(genes[i] for i in cand), int(rows.sum())))
            continue
        picked, deltas = select_parents(x_all[rows], x_all[rows, j], cand, cfg)
        adj[picked, j] = True
        choices.append(
            ParentChoice(
                gene,
                tuple(genes[i] for i in picked),
                {genes[i]: float(d) for i, d in deltas.items()},
                tuple(genes[i] for i in cand),
                int(rows.sum()),
            )
        )
    return adj, choices
