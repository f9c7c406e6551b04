"""A knowledge base of causal facts with provenance, reasoned over with Answer Set Programming.

Facts come from the literature, experiments and generated hypotheses. The ASP programs in
``programs/`` derive the signed relations the facts imply (``derive.lp``), find contradictions
(``contradictions.lp``) and enumerate the causal graphs consistent with hard evidence
(``graphs.lp``). Genes and facts enter clingo as integer ids; confidences as permille.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from level5_discovery.logic.asp import solve_unique
from level5_discovery.logic.facts import (
    INT_TO_SIGN,
    SIGN_TO_INT,
    Contradiction,
    Derived,
    Fact,
    support,
)
from level5_discovery.logic.graphs import CandidateSpace, PairsLike
from level5_discovery.logic.paths import best_paths
from shared.errors import DataError

FRAME_COLUMNS = ["cause", "effect", "sign", "relation", "source", "confidence"]


class KnowledgeBase:
    """Causal facts over a fixed gene list, with ASP reasoning.

    Args:
        genes: Gene names; every fact must use them.
    """

    def __init__(self, genes: Sequence[str]) -> None:
        self.genes: tuple[str, ...] = tuple(genes)
        if len(set(self.genes)) != len(self.genes):
            raise ValueError("gene names must be unique")
        self._index = {g: i for i, g in enumerate(self.genes)}
        self._facts: list[Fact] = []
        self._seen: set[Fact] = set()

    @property
    def facts(self) -> list[Fact]:
        """The facts, in the order they were added (a copy)."""
        return list(self._facts)

    def __len__(self) -> int:
        return len(self._facts)

    def add(self, fact: Fact) -> None:
        """Add one fact; an identical fact already present is ignored.

        Raises:
            DataError: When the fact names a gene outside the knowledge base.
        """
        for gene in (fact.cause, fact.effect):
            if gene not in self._index:
                raise DataError(f"unknown gene {gene!r} in fact {fact.describe()}")
        if fact not in self._seen:
            self._seen.add(fact)
            self._facts.append(fact)

    def add_many(self, facts: Iterable[Fact]) -> None:
        """Add several facts (see `add`)."""
        for fact in facts:
            self.add(fact)

    def to_frame(self) -> pd.DataFrame:
        """The facts as a table with columns cause, effect, sign, relation, source, confidence."""
        rows = [[getattr(f, c) for c in FRAME_COLUMNS] for f in self._facts]
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    # -- ASP encoding ---------------------------------------------------------------------------

    def _asp_facts(self) -> str:
        sources = {s: k for k, s in enumerate(sorted({f.source for f in self._facts}))}
        lines = []
        for fid, f in enumerate(self._facts):
            x, y = self._index[f.cause], self._index[f.effect]
            conf = round(f.confidence * 1000)
            lines.append(f"fact({fid},{x},{y},{SIGN_TO_INT[f.sign]},{f.relation},{conf}).")
            lines.append(f"src({fid},{sources[f.source]}).")
        return "\n".join(lines)

    def _pair_facts(self, x: int, y: int, signs: Iterable[str]) -> tuple[Fact, ...]:
        cause, effect, wanted = self.genes[x], self.genes[y], set(signs)
        return tuple(f for f in self._facts if f.cause == cause and f.effect == effect and f.sign in wanted)

    # -- reasoning ------------------------------------------------------------------------------

    def derive(self, *, resolve: bool = True) -> list[Derived]:
        """Signed relations implied by the edge and reach claims, each with its provenance trail.

        Args:
            resolve: Derive only over best-supported claims: a claim is set aside when the opposite
                sign, or a no-effect result, on the same pair has more support (see `facts.support`).

        Returns:
            One `Derived` per implied ``(cause, effect, sign)``, sorted by cause, effect and sign; both
            signs of a pair appear when paths of both signs exist. Direct claims are included with
            ``length == 1``.
        """
        if not self._facts:
            return []
        atoms = solve_unique(["support", "derive"], self._asp_facts(), consts={"resolve": int(resolve)})
        used = [self._facts[a.arguments[0].number] for a in atoms if a.name == "use"]
        derived = sorted(
            (a.arguments[0].number, a.arguments[1].number, a.arguments[2].number)
            for a in atoms
            if a.name == "derived"
        )
        out: list[Derived] = []
        paths_from: dict[str, dict[tuple[str, int], tuple[Fact, ...]]] = {}
        for x, y, s in derived:
            cause, effect = self.genes[x], self.genes[y]
            if cause not in paths_from:
                paths_from[cause] = best_paths(used, cause)
            steps = paths_from[cause][(effect, s)]
            path = (cause, *(f.effect for f in steps))
            conf = float(np.prod([f.confidence for f in steps]))
            out.append(Derived(cause, effect, INT_TO_SIGN[s], path, steps, conf))  # type: ignore[arg-type]
        return out

    def contradictions(self) -> list[Contradiction]:
        """Contradictions with the facts on each side and a resolution suggested by support.

        Returns:
            Sign conflicts and refutations (one per ordered pair), refuted chains (one per pair, the
            chain being the most confident one) and cycles (one per strongly connected set of claims),
            in that order.
        """
        if not self._facts:
            return []
        atoms = solve_unique(["support", "contradictions"], self._asp_facts())
        by_name: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for a in atoms:
            by_name[a.name].append((a.arguments[0].number, a.arguments[1].number))
        out = [self._sign_conflict(x, y) for x, y in sorted(by_name["sign_conflict"])]
        out += [self._refuted(x, y) for x, y in sorted(by_name["refuted"])]
        out += [self._refuted_path(x, y) for x, y in sorted(by_name["refuted_path"])]
        cycles: dict[int, list[Fact]] = defaultdict(list)
        for m, fid in sorted(by_name["cycle_fact"]):
            cycles[m].append(self._facts[fid])
        out += [self._cycle(tuple(facts)) for _, facts in sorted(cycles.items())]
        return out

    def _sign_conflict(self, x: int, y: int) -> Contradiction:
        plus, minus = self._pair_facts(x, y, "+"), self._pair_facts(x, y, "-")
        _, drop, text = _compare(plus, minus, "'+'", "'-'")
        return Contradiction("sign", self.genes[x], self.genes[y], plus, minus, drop, text)

    def _refuted(self, x: int, y: int) -> Contradiction:
        claims, nulls = self._pair_facts(x, y, "+-"), self._pair_facts(x, y, "0")
        _, drop, text = _compare(claims, nulls, "the claimed effect", "the no-effect result")
        return Contradiction("refuted", self.genes[x], self.genes[y], claims, nulls, drop, text)

    def _refuted_path(self, x: int, y: int) -> Contradiction:
        claims = [f for f in self._facts if f.sign != "0"]
        paths = best_paths(claims, self.genes[x])
        candidates = [paths[(self.genes[y], s)] for s in (1, -1) if (self.genes[y], s) in paths]
        chain = max(candidates, key=lambda p: float(np.prod([f.confidence for f in p])))
        nulls = self._pair_facts(x, y, "0")
        weakest = min(chain, key=lambda f: f.confidence)
        against = support(nulls)
        if against > weakest.confidence:
            drop: tuple[Fact, ...] = (weakest,)
            text = (
                f"drop the weakest link {weakest.describe()}: the no-effect result has support {against:.2f}"
            )
        else:
            drop = nulls
            text = (
                f"doubt the no-effect result (support {against:.2f}): "
                f"every link has confidence >= {weakest.confidence:.2f}"
            )
        return Contradiction("refuted_path", self.genes[x], self.genes[y], chain, nulls, drop, text)

    def _cycle(self, facts: tuple[Fact, ...]) -> Contradiction:
        weakest = min(facts, key=lambda f: f.confidence)
        text = f"a causal graph is acyclic: drop the weakest claim on the cycle, {weakest.describe()}"
        return Contradiction("cycle", weakest.cause, weakest.effect, facts, (), (weakest,), text)

    # -- graphs ---------------------------------------------------------------------------------

    def evidence_reach(self, *, prefix: str = "experiment:") -> tuple[np.ndarray, np.ndarray]:
        """Required and forbidden reach from experimental facts (sources starting with `prefix`).

        Returns:
            ``(required, forbidden)`` ``(n, n)`` bool matrices: signed reach/edge results require a path,
            ``no_reach`` results forbid one.
        """
        n = len(self.genes)
        required, forbidden = np.zeros((n, n), bool), np.zeros((n, n), bool)
        for f in self._facts:
            if f.source.startswith(prefix):
                target = forbidden if f.sign == "0" else required
                target[self._index[f.cause], self._index[f.effect]] = True
        return required, forbidden

    def candidate_graphs(
        self,
        candidate_edges: np.ndarray,
        *,
        required_reach: PairsLike = None,
        forbidden_reach: PairsLike = None,
        max_models: int = 200,
        seed: int = 0,
        edge_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """Distinct DAGs over the candidate edges that meet the hard evidence (see `CandidateSpace`).

        Args:
            candidate_edges: ``(n, n)`` bool, edges not ruled out.
            required_reach: Pairs that need a directed path; ``None`` = from this KB's experiments.
            forbidden_reach: Pairs that must have none; ``None`` = from this KB's experiments.
            max_models: Most graphs to return.
            seed: Seed of the draws.
            edge_weights: Soft ``(n, n)`` prior probability of each edge; ``None`` = 0.5.

        Returns:
            ``(k, n, n)`` bool, ``k <= max_models`` (0 when the evidence is inconsistent).
        """
        return self.candidate_space(
            candidate_edges, required_reach=required_reach, forbidden_reach=forbidden_reach
        ).sample(max_models, seed=seed, edge_weights=edge_weights)

    def candidate_space(
        self,
        candidate_edges: np.ndarray,
        *,
        required_reach: PairsLike = None,
        forbidden_reach: PairsLike = None,
    ) -> CandidateSpace:
        """The grounded graph space, reusable for several draws and `CandidateSpace.consistent` checks."""
        required, forbidden = self.evidence_reach()
        return CandidateSpace(
            self.genes,
            candidate_edges,
            required_reach=required if required_reach is None else required_reach,
            forbidden_reach=forbidden if forbidden_reach is None else forbidden_reach,
        )

    def consistent(
        self,
        adj: np.ndarray,
        candidate_edges: np.ndarray | None = None,
        *,
        required_reach: PairsLike = None,
        forbidden_reach: PairsLike = None,
    ) -> bool:
        """Whether one graph is a DAG over the candidates that meets the hard evidence.

        Args:
            adj: ``(n, n)`` bool adjacency to check.
            candidate_edges: Allowed edges; ``None`` = every off-diagonal edge.
            required_reach: As in `candidate_graphs`.
            forbidden_reach: As in `candidate_graphs`.
        """
        n = len(self.genes)
        cand = ~np.eye(n, dtype=bool) if candidate_edges is None else candidate_edges
        space = self.candidate_space(cand, required_reach=required_reach, forbidden_reach=forbidden_reach)
        return space.consistent(adj)


def _compare(
    side_a: tuple[Fact, ...], side_b: tuple[Fact, ...], name_a: str, name_b: str
) -> tuple[str | None, tuple[Fact, ...], str]:
    """Pick the better-supported side; return (kept name, facts to drop, explanation)."""
    sa, sb = support(side_a), support(side_b)
    detail = f"support {sa:.2f} vs {sb:.2f}"
    if np.isclose(sa, sb):
        return None, (), f"tie ({detail}): neither side wins, run an intervention to decide"
    if sa > sb:
        return name_a, side_b, f"keep {name_a}, drop {name_b} ({detail})"
    return name_b, side_a, f"keep {name_b}, drop {name_a} ({detail})"
