"""Causal discovery from measurements, observational and interventional: our method.

Method (why each piece):

* **Interventional BIC** (GIES, Hauser & Bühlmann 2012). A DAG's score is the sum of one local
  score per variable; variable ``j``'s local score is fitted *only on the rows where ``j`` was not
  intervened on*: a clamped variable's value says nothing about its parents, while the rows where
  its parents were clamped are the most informative ones about the edge's direction. Without
  interventions this is the ordinary BIC. Local models are least-squares regressions on the parents'
  standardised values (``basis="linear"``) or on ``[x, tanh(x)]`` (``basis="tanh"``), which can
  follow the saturating responses of the simulated world at the cost of one more parameter per edge.
* **Candidate-parent screen.** Each variable may only take parents from its strongest Markov-blanket
  neighbours (absolute partial correlation, from a ridge-regularised precision matrix) plus the
  variables whose intervention shifted it; the screen is symmetrised so reversals stay possible.
  This keeps the search about ``n * m`` moves wide, so 100 variables take seconds.
* **Intervention hints.** If ``do(X)`` shifts ``Y`` (Welch t-test against the unintervened rows,
  Benjamini–Hochberg over all pairs) then ``X`` is an ancestor of ``Y``; the edge ``Y -> X`` would
  close a cycle and is forbidden. This orients edges the score alone might leave to chance.
* **Search.** Greedy hill-climbing over DAGs (add, remove, reverse) with a tabu phase: after a
  local optimum it keeps taking the best non-tabu move for ``tabu_steps`` steps and returns the best
  DAG seen. Local scores are cached per (variable, parent set).
* **Confidence.** With ``n_bootstrap > 0`` the whole procedure is rerun on bootstrap resamples
  (stratified by intervention target) and an edge's confidence is the share of resamples that hold it
  with the same direction; with ``n_bootstrap = 0`` it is ``sigmoid(score gain of the edge)``, the
  BIC approximation of the edge's posterior odds. The returned graph is the full-data DAG, edges
  under ``min_confidence`` removed.
"""

from __future__ import annotations

import collections
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

_EPS = 1e-9


class DiscoverConfig(BaseModel):
    """Settings of `discover` (defaults: the quick profile)."""

    model_config = ConfigDict(extra="forbid")

    basis: Literal["linear", "tanh"] = "linear"
    penalty: float = Field(2.0, gt=0)  # multiplier of the BIC penalty 0.5 * log(n) per parameter
    max_parents: int = Field(4, ge=1)
    candidate_parents: int = Field(8, ge=1)  # top-m partial-correlation neighbours per variable
    tabu_steps: int = Field(10, ge=0)
    tabu_length: int = Field(10, ge=1)
    use_hints: bool = True
    hint_alpha: float = Field(0.01, gt=0, lt=1)  # BH level of the do(X) -> Y shift tests
    absent_p: float = Field(0.2, gt=0, le=1)  # do(X) with raw p above this: X -> Y forbidden (1 = off)
    prune_rounds: int = Field(2, ge=0)  # drop edges the observational rows alone do not support, re-search
    min_observational_rows: int = Field(30, ge=2)
    n_bootstrap: int = Field(0, ge=0)
    min_confidence: float = Field(0.0, ge=0, le=1)
    seed: int = 0


@dataclass(frozen=True)
class DiscoveryResult:
    """A learned DAG.

    Attributes:
        adj: Bool ``(n, n)``; ``adj[i, j]`` = edge ``i -> j``. Acyclic.
        confidence: Float ``(n, n)`` in [0, 1], for every ordered pair (0 where never found).
        edges: Frame ``cause, effect, confidence`` of the edges of ``adj``, most confident first.
        seconds: Wall time of the call.
    """

    adj: np.ndarray
    confidence: np.ndarray
    edges: pd.DataFrame
    seconds: float


# ------------------------------------------------------------------------------------ data prep
def _standardise(data: np.ndarray) -> np.ndarray:
    sd = data.std(axis=0)
    out: np.ndarray = (data - data.mean(axis=0)) / np.where(sd > _EPS, sd, 1.0)
    return out


def _features(z: np.ndarray, basis: str) -> np.ndarray:
    """(rows, vars, b) regression features of every variable as a parent."""
    if basis == "linear":
        return z[:, :, None]
    return np.stack([z, np.tanh(z)], axis=2)


def intervention_hints(
    z: np.ndarray, intervened: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ancestor relations shown by interventions.

    Args:
        z: Standardised data ``(rows, n)``.
        intervened: Per-row intervened variable or -1.
        alpha: Benjamini–Hochberg level over all tested (X, Y) pairs.

    Returns:
        ``(ancestor, strength, pvals)``: bool ``ancestor[x, y]`` = ``do(x)`` significantly shifts ``y``;
        ``strength[x, y]`` = |Welch t| (0 where untested); ``pvals[x, y]`` its raw two-sided p-value (NaN
        where untested).
    """
    n = z.shape[1]
    strength = np.zeros((n, n))
    pvals = np.ones((n, n))
    tested = np.zeros((n, n), dtype=bool)
    observational = intervened < 0
    for x in np.unique(intervened[intervened >= 0]):
        treated = intervened == x
        control = observational if observational.sum() >= 2 else ~treated
        if treated.sum() < 2 or control.sum() < 2:
            continue
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # The clamped variable itself is constant in the treated rows; it is not tested.
            warnings.simplefilter("ignore", RuntimeWarning)
            t, p = stats.ttest_ind(z[treated], z[control], axis=0, equal_var=False)
        t, p = np.nan_to_num(t), np.nan_to_num(p, nan=1.0)
        strength[x], pvals[x], tested[x] = np.abs(t), p, True
        tested[x, x] = False
    ancestor = np.zeros((n, n), dtype=bool)
    if tested.any():
        p = pvals[tested]
        order = np.argsort(p)
        # Benjamini–Hochberg step-up: the largest k with p_(k) <= k * alpha / m.
        passed = p[order] <= alpha * np.arange(1, p.size + 1) / p.size
        k = int(np.nonzero(passed)[0].max()) + 1 if passed.any() else 0
        flags = np.zeros(p.size, dtype=bool)
        flags[order[:k]] = True
        ancestor[tested] = flags
    strength[~tested] = 0.0
    pvals[~tested] = np.nan
    return ancestor, strength, pvals


def candidate_parents(z: np.ndarray, m: int, hint_strength: np.ndarray | None = None) -> np.ndarray:
    """Symmetric bool screen ``cand[i, j]``: ``i`` may be a parent of ``j`` (and vice versa).

    Each variable keeps its ``m`` largest absolute partial correlations (ridge-regularised precision
    so it works with fewer rows than variables) and its ``m`` strongest intervention hits.
    """
    n = z.shape[1]
    corr = np.corrcoef(z, rowvar=False)
    corr = np.nan_to_num(corr) + 1e-3 * np.eye(n)
    prec = np.linalg.inv(corr)
    d = np.sqrt(np.abs(np.diag(prec)))
    partial = np.abs(prec / np.outer(d, d))
    np.fill_diagonal(partial, 0.0)
    cand = np.zeros((n, n), dtype=bool)
    k = min(m, n - 1)
    top = np.argsort(-partial, axis=0)[:k]  # per column j, its top-k partners i
    cand[top, np.arange(n)[None, :]] = True
    if hint_strength is not None:
        hits = hint_strength > 0
        ranked = np.argsort(-hint_strength, axis=0)[:k]
        keep = np.zeros((n, n), dtype=bool)
        keep[ranked, np.arange(n)[None, :]] = True
        cand |= keep & hits
    cand |= cand.T
    np.fill_diagonal(cand, False)
    return cand


# ------------------------------------------------------------------------------------ local score
class LocalScorer:
    """Cached interventional-BIC local scores (higher is better).

    Variable ``j`` is scored on the rows where it was not intervened on. For each ``j`` the Gram
    matrix of ``[1, z_j, features of its candidate parents]`` over those rows is built once; a parent
    set's score is then a small linear solve.
    """

    def __init__(self, feats: np.ndarray, intervened: np.ndarray, cand: np.ndarray, penalty: float) -> None:
        self.b = feats.shape[2]
        self.penalty = penalty
        self.cand = [np.nonzero(cand[:, j])[0] for j in range(cand.shape[0])]
        self.pos = [{int(p): k for k, p in enumerate(c)} for c in self.cand]
        self.grams: list[np.ndarray] = []
        for j, c in enumerate(self.cand):
            rows = intervened != j
            cols = [np.ones(int(rows.sum())), feats[rows, j, 0]]
            cols += [feats[rows, i, k] for i in c for k in range(self.b)]
            mat = np.column_stack(cols)
            self.grams.append(mat.T @ mat)
        self.cache: dict[tuple[int, tuple[int, ...]], float] = {}

    def n_rows(self, j: int) -> int:
        """Rows variable ``j`` is scored on."""
        return round(float(self.grams[j][0, 0]))

    def score(self, j: int, parents: tuple[int, ...]) -> float:
        """Local score of ``j`` given sorted ``parents`` (each must be a candidate of ``j``)."""
        key = (j, parents)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        g = self.grams[j]
        n_j = g[0, 0]
        idx = [0] + [2 + self.b * self.pos[j][p] + k for p in parents for k in range(self.b)]
        a = g[np.ix_(idx, idx)]
        c = g[idx, 1]
        ridge = 1e-8 * n_j * np.eye(len(idx))
        ridge[0, 0] = 0.0
        beta = np.linalg.solve(a + ridge, c)
        rss = max(float(g[1, 1] - c @ beta), 1e-10 * n_j)
        value = -0.5 * n_j * np.log(rss / n_j) - self.penalty * 0.5 * np.log(n_j) * self.b * len(parents)
        self.cache[key] = float(value)
        return float(value)


# ------------------------------------------------------------------------------------ search
def _reaches(children: list[set[int]], start: int, goal: int, skip: tuple[int, int] | None = None) -> bool:
    """Whether a directed path ``start ~> goal`` exists (optionally ignoring edge ``skip``)."""
    stack, seen = [start], {start}
    while stack:
        u = stack.pop()
        for v in children[u]:
            if skip is not None and (u, v) == skip:
                continue
            if v == goal:
                return True
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return False


@dataclass
class _Search:
    """Mutable hill-climbing state over one DAG."""

    scorer: LocalScorer
    allowed: np.ndarray  # allowed[i, j]: i -> j may be added (candidate and not forbidden)
    max_parents: int

    def __post_init__(self) -> None:
        n = self.allowed.shape[0]
        self.parents: list[set[int]] = [set() for _ in range(n)]
        self.children: list[set[int]] = [set() for _ in range(n)]
        self.local = np.array([self.scorer.score(j, ()) for j in range(n)])
        self.add_d = np.full((n, n), -np.inf)  # add_d[i, j]: gain of adding i -> j
        self.rem_d = np.full((n, n), -np.inf)  # rem_d[i, j]: gain of removing i -> j
        for j in range(n):
            self._refresh(j)

    def _with(self, j: int, extra: int | None = None, without: int | None = None) -> float:
        ps = set(self.parents[j])
        if extra is not None:
            ps.add(extra)
        if without is not None:
            ps.discard(without)
        return self.scorer.score(j, tuple(sorted(ps)))

    def _refresh(self, j: int) -> None:
        """Recompute the add/remove gains of every move that changes ``j``'s parents."""
        self.add_d[:, j] = -np.inf
        self.rem_d[:, j] = -np.inf
        base = self.local[j]
        if len(self.parents[j]) < self.max_parents:
            for i in np.nonzero(self.allowed[:, j])[0].tolist():
                if i not in self.parents[j]:
                    self.add_d[i, j] = self._with(j, extra=i) - base
        for p in self.parents[j]:
            self.rem_d[p, j] = self._with(j, without=p) - base

    def moves(self) -> list[tuple[float, str, int, int]]:
        """All legal-looking moves, best gain first (acyclicity checked when applied)."""
        adj = self.rem_d > -np.inf  # existing edges
        add = np.where(adj | adj.T, -np.inf, self.add_d)
        rev = np.where(adj, self.rem_d + self.add_d.T, -np.inf)
        out: list[tuple[float, str, int, int]] = []
        for kind, mat in (("add", add), ("rem", self.rem_d), ("rev", rev)):
            ii, jj = np.nonzero(mat > -np.inf)
            out += [(float(mat[i, j]), kind, int(i), int(j)) for i, j in zip(ii, jj, strict=True)]
        out.sort(key=lambda t: (-t[0], t[1], t[2], t[3]))
        return out

    def legal(self, kind: str, i: int, j: int) -> bool:
        """Whether applying the move keeps the graph acyclic."""
        if kind == "add":
            return not _reaches(self.children, j, i)
        if kind == "rev":
            return not _reaches(self.children, i, j, skip=(i, j))
        return True

    def apply(self, kind: str, i: int, j: int) -> None:
        """Apply a move and refresh the gains it changes."""
        if kind in ("rem", "rev"):
            self.parents[j].discard(i)
            self.children[i].discard(j)
        if kind == "add":
            self.parents[j].add(i)
            self.children[i].add(j)
        if kind == "rev":
            self.parents[i].add(j)
            self.children[j].add(i)
        for v in {i, j}:
            self.local[v] = self._with(v)
            self._refresh(v)

    def adjacency(self) -> np.ndarray:
        """The current DAG."""
        n = len(self.parents)
        adj = np.zeros((n, n), dtype=bool)
        for j, ps in enumerate(self.parents):
            adj[list(ps), j] = True
        return adj


def hill_climb(scorer: LocalScorer, allowed: np.ndarray, cfg: DiscoverConfig) -> np.ndarray:
    """Greedy DAG search with a tabu phase; the best-scoring DAG seen.

    Args:
        scorer: Local scores.
        allowed: Bool ``allowed[i, j]``: edge ``i -> j`` may be used.
        cfg: Settings (``max_parents``, ``tabu_steps``, ``tabu_length``).
    """
    state = _Search(scorer, allowed, cfg.max_parents)
    best_total, best_adj = float(state.local.sum()), state.adjacency()
    tabu: collections.deque[frozenset[int]] = collections.deque(maxlen=cfg.tabu_length)
    patience = 0
    total = best_total
    while patience <= cfg.tabu_steps:
        chosen = None
        for gain, kind, i, j in state.moves():
            improving_best = total + gain > best_total + 1e-9
            if frozenset((i, j)) in tabu and not improving_best:
                continue
            if gain <= 1e-9 and patience == 0 and cfg.tabu_steps == 0:
                break
            if state.legal(kind, i, j):
                chosen = (gain, kind, i, j)
                break
        if chosen is None:
            break
        gain, kind, i, j = chosen
        state.apply(kind, i, j)
        total += gain
        tabu.append(frozenset((i, j)))
        if total > best_total + 1e-9:
            best_total, best_adj, patience = total, state.adjacency(), 0
        else:
            patience += 1
    return best_adj


def edge_gains(scorer: LocalScorer, adj: np.ndarray) -> np.ndarray:
    """Score lost by deleting each edge of ``adj`` alone (0 elsewhere)."""
    gains = np.zeros(adj.shape)
    for j in range(adj.shape[0]):
        ps = tuple(int(p) for p in np.nonzero(adj[:, j])[0])
        full = scorer.score(j, ps)
        for p in ps:
            gains[p, j] = full - scorer.score(j, tuple(q for q in ps if q != p))
    return gains


def _learn(data: np.ndarray, intervened: np.ndarray, cfg: DiscoverConfig) -> tuple[np.ndarray, np.ndarray]:
    """One full run (screen, hints, search); the DAG and its edges' score gains."""
    z = _standardise(data)
    n = z.shape[1]
    forbidden = np.zeros((n, n), dtype=bool)
    strength = None
    if cfg.use_hints and (intervened >= 0).any():
        ancestor, strength, pvals = intervention_hints(z, intervened, cfg.hint_alpha)
        forbidden = ancestor.T  # x ancestor of y forbids y -> x
        # do(x) left y clearly unmoved: x is no ancestor of y, so no edge x -> y either.
        forbidden |= pvals > cfg.absent_p
    cand = candidate_parents(z, cfg.candidate_parents, strength)
    feats = _features(z, cfg.basis)
    scorer = LocalScorer(feats, intervened, cand, cfg.penalty)
    allowed = cand & ~forbidden
    adj = hill_climb(scorer, allowed, cfg)
    observational = intervened < 0
    if cfg.prune_rounds and observational.any() and observational.sum() >= cfg.min_observational_rows:
        obs_scorer = LocalScorer(feats[observational], intervened[observational], cand, cfg.penalty)
        for round_ in range(cfg.prune_rounds + 1):
            unsupported = adj & (edge_gains(obs_scorer, adj) <= 0.0)
            if not unsupported.any():
                break
            if round_ == cfg.prune_rounds:  # out of rounds: deleting edges keeps the DAG acyclic
                adj = adj & ~unsupported
                break
            allowed &= ~unsupported
            adj = hill_climb(scorer, allowed, cfg)
    return adj, edge_gains(scorer, adj)


def _bootstrap_rows(intervened: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices resampled with replacement within each intervention group."""
    parts = []
    for g in np.unique(intervened):
        rows = np.nonzero(intervened == g)[0]
        parts.append(rng.choice(rows, size=rows.size, replace=True))
    return np.sort(np.concatenate(parts))


def _check_inputs(
    data: np.ndarray, intervened: np.ndarray | None, names: list[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    x = np.asarray(data, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2 or x.shape[0] < 3:
        raise ValueError(f"data must be (rows >= 3, vars >= 2), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("data has missing or non-finite values")
    iv = np.full(x.shape[0], -1, dtype=int) if intervened is None else np.asarray(intervened, dtype=int)
    if iv.shape != (x.shape[0],) or iv.max(initial=-1) >= x.shape[1] or iv.min(initial=-1) < -1:
        raise ValueError("intervened must be (rows,) with values in -1..vars-1")
    labels = [f"X{i}" for i in range(x.shape[1])] if names is None else list(names)
    if len(labels) != x.shape[1]:
        raise ValueError(f"{len(labels)} names for {x.shape[1]} variables")
    return x, iv, labels


def discover(
    data: np.ndarray,
    intervened: np.ndarray | None = None,
    names: list[str] | None = None,
    cfg: DiscoverConfig | None = None,
) -> DiscoveryResult:
    """Learn a causal DAG from measurements, using interventions where rows have them.

    Args:
        data: Float ``(rows, vars)``.
        intervened: Int ``(rows,)``: index of the variable intervened on in each row, -1 for none
            (None = all observational).
        names: Variable names (default ``X0, X1, ...``).
        cfg: Settings; see the module docstring for the method.

    Returns:
        The `DiscoveryResult` (acyclic ``adj``, ``confidence``, ranked ``edges``, ``seconds``).

    Raises:
        ValueError: Shapes or values are inconsistent.
    """
    start = time.perf_counter()
    cfg = cfg or DiscoverConfig()
    x, iv, labels = _check_inputs(data, intervened, names)
    adj, gains = _learn(x, iv, cfg)
    if cfg.n_bootstrap > 0:
        rng = np.random.default_rng(cfg.seed)
        counts = np.zeros(adj.shape)
        for _ in range(cfg.n_bootstrap):
            rows = _bootstrap_rows(iv, rng)
            counts += _learn(x[rows], iv[rows], cfg)[0]
        confidence = counts / cfg.n_bootstrap
    else:
        confidence = np.where(adj, 1.0 / (1.0 + np.exp(-np.clip(gains, -50, 50))), 0.0)
    # Removing edges cannot create a cycle, so the thresholded graph stays a DAG.
    adj = adj & (confidence >= cfg.min_confidence)
    ii, jj = np.nonzero(adj)
    edges = pd.DataFrame(
        {
            "cause": [labels[i] for i in ii],
            "effect": [labels[j] for j in jj],
            "confidence": confidence[ii, jj].astype(float),
            "_gain": gains[ii, jj],
        }
    )
    edges = edges.sort_values(["confidence", "_gain"], ascending=False, kind="mergesort")
    edges = edges.drop(columns="_gain").reset_index(drop=True)
    return DiscoveryResult(adj=adj, confidence=confidence, edges=edges, seconds=time.perf_counter() - start)
