"""The space of causal graphs consistent with hard evidence, enumerated by clingo.

Hard evidence: which edges are still possible (candidates), which ordered pairs must be connected
by a directed path (an intervention on the cause changed the effect) or must not be (an
intervention left the effect unchanged with enough power), and acyclicity. ``programs/graphs.lp``
states these with one choice rule per candidate edge; reachability is grounded over candidate
edges only, so the ground program has about ``n_genes x n_candidates`` rules (1,200 for 20 genes
and 60 candidates).

Diverse models: each model is drawn by its own solve call. A preferred graph is sampled from the
edge weights (each candidate kept with its weight's probability) and handed to clasp's domain
heuristic through ``want/2`` externals, so the solver decides edges towards it and deviates only
where the constraints force it. A blocking constraint after each model makes every model new, so
the enumeration stops early, with fewer models, once the evidence admits no more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import clingo
import numpy as np

from level5_discovery.logic.asp import load_program

PairsLike = np.ndarray | Iterable[tuple[str | int, str | int]] | None


def pair_matrix(pairs: PairsLike, genes: Sequence[str]) -> np.ndarray:
    """Turn ordered pairs (a bool matrix, or ``(cause, effect)`` names or indices) into a bool matrix.

    Args:
        pairs: ``None`` (no pairs), an ``(n, n)`` bool matrix, or an iterable of pairs.
        genes: Gene names, fixing the index order.

    Returns:
        ``(n, n)`` bool matrix with a false diagonal.

    Raises:
        ValueError: On a wrong shape or an unknown gene.
    """
    n = len(genes)
    out = np.zeros((n, n), dtype=bool)
    if pairs is None:
        return out
    if isinstance(pairs, np.ndarray):
        if pairs.shape != (n, n):
            raise ValueError(f"expected a ({n}, {n}) matrix, got shape {pairs.shape}")
        out = pairs.astype(bool).copy()
    else:
        index = {g: i for i, g in enumerate(genes)}
        for cause, effect in pairs:
            i = cause if isinstance(cause, int) else index.get(cause, -1)
            j = effect if isinstance(effect, int) else index.get(effect, -1)
            if not (0 <= i < n and 0 <= j < n):
                raise ValueError(f"unknown gene in pair ({cause!r}, {effect!r})")
            out[i, j] = True
    np.fill_diagonal(out, False)
    return out


def _edge(i: int, j: int, name: str = "edge") -> clingo.Symbol:
    return clingo.Function(name, [clingo.Number(i), clingo.Number(j)])


class CandidateSpace:
    """DAGs over candidate edges that satisfy required and forbidden reachability.

    Args:
        genes: Gene names (the matrix order).
        candidate_edges: ``(n, n)`` bool, edges not ruled out.
        required_reach: Pairs that need a directed path (matrix or pairs; see `pair_matrix`).
        forbidden_reach: Pairs that must have no directed path.
    """

    def __init__(
        self,
        genes: Sequence[str],
        candidate_edges: np.ndarray,
        *,
        required_reach: PairsLike = None,
        forbidden_reach: PairsLike = None,
    ) -> None:
        self.genes = tuple(genes)
        self.candidates = pair_matrix(np.asarray(candidate_edges), self.genes)
        self.required = pair_matrix(required_reach, self.genes)
        self.forbidden = pair_matrix(forbidden_reach, self.genes)
        self._cand_idx = [(int(i), int(j)) for i, j in zip(*np.nonzero(self.candidates), strict=True)]
        self._checker: tuple[clingo.Control, dict[tuple[int, int], int]] | None = None

    @property
    def n(self) -> int:
        """Number of genes."""
        return len(self.genes)

    def _facts(self) -> str:
        lines = [f"node({i})." for i in range(self.n)]
        lines += [f"cand({i},{j})." for i, j in self._cand_idx]
        lines += [f"req({i},{j})." for i, j in zip(*np.nonzero(self.required), strict=True)]
        lines += [f"forb({i},{j})." for i, j in zip(*np.nonzero(self.forbidden), strict=True)]
        return "\n".join(lines)

    def _control(self, seed: int) -> tuple[clingo.Control, dict[tuple[int, int], int]]:
        ctl = clingo.Control(["--heuristic=Domain", f"--seed={seed % (2**31)}", "--models=1", "--warn=none"])
        ctl.add("base", [], load_program("graphs"))
        ctl.add("base", [], self._facts())
        ctl.ground([("base", [])])
        literals: dict[tuple[int, int], int] = {}
        for i, j in self._cand_idx:
            atom = ctl.symbolic_atoms[_edge(i, j)]
            if atom is not None:  # an absent atom was proven false while grounding
                literals[(i, j)] = atom.literal
        return ctl, literals

    def sample(self, max_models: int, *, seed: int, edge_weights: np.ndarray | None = None) -> np.ndarray:
        """Draw up to `max_models` distinct consistent DAGs, steered by edge weights.

        Args:
            max_models: Most models to return.
            seed: Seeds both the preferred-graph draws and clasp.
            edge_weights: ``(n, n)`` prior probability in ``[0, 1]`` that each candidate edge is real
                (soft: constraints always win); ``None`` = 0.5 everywhere.

        Returns:
            ``(k, n, n)`` bool array, ``k <= max_models``; ``k = 0`` when the evidence is inconsistent,
            ``k < max_models`` when fewer distinct graphs exist.
        """
        if max_models < 1:
            raise ValueError(f"max_models must be >= 1, got {max_models}")
        weights = np.full((self.n, self.n), 0.5) if edge_weights is None else np.asarray(edge_weights, float)
        if weights.shape != (self.n, self.n) or np.any((weights < 0) | (weights > 1)):
            raise ValueError(f"edge_weights must be a ({self.n}, {self.n}) matrix of values in [0, 1]")
        rng = np.random.default_rng(seed)
        ctl, literals = self._control(seed)
        # Program literals, not symbols: a symbol lookup per external and draw dominated the run time.
        wants = [ctl.symbolic_atoms[_edge(i, j, "want")] for i, j in self._cand_idx]
        want_lits = [w.literal if w is not None else 0 for w in wants]
        probs = np.array([weights[i, j] for i, j in self._cand_idx])
        models: list[np.ndarray] = []
        for _ in range(max_models):
            for lit, on in zip(want_lits, rng.random(len(want_lits)) < probs, strict=True):
                if lit:
                    ctl.assign_external(lit, bool(on))
            adj = self._solve_one(ctl)
            if adj is None:
                break
            models.append(adj)
            # Block exactly this model so the next solve call must find a new one.
            with ctl.backend() as backend:
                backend.add_rule([], [lit if adj[e] else -lit for e, lit in literals.items()])
        if not models:
            return np.zeros((0, self.n, self.n), dtype=bool)
        return np.stack(models)

    def _solve_one(self, ctl: clingo.Control) -> np.ndarray | None:
        found: list[np.ndarray] = []

        def on_model(model: clingo.Model) -> None:
            adj = np.zeros((self.n, self.n), dtype=bool)
            for sym in model.symbols(shown=True):
                if sym.name == "edge":
                    adj[sym.arguments[0].number, sym.arguments[1].number] = True
            found.append(adj)

        ctl.solve(on_model=on_model)
        return found[0] if found else None

    def consistent(self, adj: np.ndarray) -> bool:
        """Whether one graph uses only candidate edges and satisfies every hard constraint.

        Args:
            adj: ``(n, n)`` bool adjacency.

        Returns:
            True when the graph is a DAG over candidate edges meeting the required and forbidden reach.
        """
        a = np.asarray(adj).astype(bool)
        if a.shape != (self.n, self.n):
            raise ValueError(f"expected a ({self.n}, {self.n}) adjacency, got shape {a.shape}")
        if np.any(a & ~self.candidates) or np.any(np.diag(a)):
            return False
        if self._checker is None:
            self._checker = self._control(0)
        ctl, literals = self._checker
        if any(a[e] for e in self._cand_idx if e not in literals):
            return False
        # Assumptions fix every candidate edge to the graph's value; the program does the rest.
        assumptions = [lit if a[e] else -lit for e, lit in literals.items()]
        return bool(ctl.solve(assumptions=assumptions).satisfiable)
