"""Edge beliefs: what the investigation currently believes about each ordered gene pair.

Two layers. Soft beliefs are log-odds of a direct edge ``i -> j``, seeded from literature
hypotheses (with confidence) and nudged by experiments. Hard constraints are ancestry facts from
significant interventional effects (``do(X)`` shifts ``Y`` => X is an ancestor of Y) and informative
nulls (``do(X)`` leaves ``Y`` unchanged => X is not an ancestor of Y), closed under their logical
consequences (transitivity, acyclicity, "if X reaches Z and X does not reach Y, Z has no edge to
Y"). The designer reasons over graphs drawn from these beliefs: :meth:`EdgeBeliefs.sample_graphs`
is a fallback sampler of DAGs that honours every hard constraint by construction (usable when the
clingo knowledge base is not), and :meth:`EdgeBeliefs.map_graph` its most probable graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from level5_discovery.design import transitive_closure


class BeliefConfig(BaseModel):
    """Prior and update strengths (defaults = the quick profile)."""

    model_config = ConfigDict(extra="forbid")

    base_rate: float = Field(0.07, gt=0.0, lt=1.0)  # prior P(edge) per ordered pair (~1.4 parents / 20 genes)
    confidence_clip: float = Field(0.02, gt=0.0, lt=0.5)  # no single source is ever certain
    direct_likelihood_ratio: float = Field(
        2.0, ge=1.0
    )  # a shift of Y by do(X) favours a direct X -> Y this much
    dependence_likelihood_ratio: float = Field(1.5, ge=1.0)  # observational dependence, both directions


class HypothesisLike(Protocol):
    """Anything with ``cause``, ``effect`` and a ``score`` in [0, 1] (e.g. ``lm.hypotheses.Hypothesis``)."""

    @property
    def cause(self) -> str: ...

    @property
    def effect(self) -> str: ...

    @property
    def score(self) -> float: ...


def _logit(p: float | np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.asarray(np.log(p) - np.log1p(-p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _close(required: np.ndarray, forbidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consequences of hard ancestry facts.

    ``required`` becomes transitive; ``x`` not reaching ``y`` forbids every ``z`` that x reaches from
    reaching ``w`` that reaches y (else x would reach y), and acyclicity forbids ``j`` reaching ``i``
    whenever ``i`` must reach ``j``.
    """
    n = required.shape[0]
    req = transitive_closure(required)
    refl = (req | np.eye(n, dtype=bool)).astype(np.float32)
    forb = (refl.T @ forbidden.astype(np.float32) @ refl.T) > 0
    forb |= req.T | np.eye(n, dtype=bool)
    return req, forb


class EdgeBeliefs:
    """Per ordered gene pair: P(direct edge) and P(ancestry), with hard reach constraints.

    Args:
        genes: Gene names, the order of every matrix axis.
        cfg: Prior and update strengths.
    """

    def __init__(self, genes: Sequence[str], cfg: BeliefConfig | None = None) -> None:
        self.genes = tuple(genes)
        self.cfg = cfg or BeliefConfig()
        self.index = {g: i for i, g in enumerate(self.genes)}
        n = len(self.genes)
        self.edge_logit = np.full((n, n), float(_logit(self.cfg.base_rate)))
        self.required_reach = np.zeros((n, n), dtype=bool)
        self.forbidden_reach = np.eye(n, dtype=bool)

    # ------------------------------------------------------------ evidence

    def _idx(self, gene: str) -> int:
        if gene not in self.index:
            raise ValueError(f"unknown gene {gene!r}")
        return self.index[gene]

    def prior_from_hypotheses(self, hypotheses: Iterable[HypothesisLike | tuple[str, str, float]]) -> None:
        """Literature / LM hypotheses as soft evidence on direct edges.

        Each hypothesis on its own would make ``P(cause -> effect) = confidence``; several combine as
        independent sources (log-odds of each over the base rate add up).
        """
        clip = self.cfg.confidence_clip
        base = float(_logit(self.cfg.base_rate))
        for h in hypotheses:
            cause, effect, conf = h if isinstance(h, tuple) else (h.cause, h.effect, h.score)
            c = float(np.clip(conf, clip, 1 - clip))
            self.edge_logit[self._idx(cause), self._idx(effect)] += float(_logit(c)) - base

    def observe_intervention(
        self, target: str, shifted: Iterable[str], unshifted_informative: Iterable[str]
    ) -> list[tuple[str, str, str]]:
        """Hard ancestry facts from one tested intervention on ``target``.

        Args:
            target: The perturbed gene.
            shifted: Genes whose expression changed significantly: ``target`` is their ancestor.
            unshifted_informative: Genes with a powered null (no shift where one would have been
                detected): ``target`` is not their ancestor.

        Returns:
            The facts not applied because they contradict what is already known, as
            ``(cause, effect, "reach" | "no_reach")``; every other fact is applied.
        """
        t = self._idx(target)
        conflicts: list[tuple[str, str, str]] = []
        for gene in shifted:
            j = self._idx(gene)
            if j == t:
                continue
            if not self._try_add(t, j, required=True):
                conflicts.append((target, gene, "reach"))
                continue
            self.edge_logit[t, j] += np.log(self.cfg.direct_likelihood_ratio)
        for gene in unshifted_informative:
            j = self._idx(gene)
            if j != t and not self._try_add(t, j, required=False):
                conflicts.append((target, gene, "no_reach"))
        return conflicts

    def observe_dependence(self, dependent: np.ndarray) -> list[tuple[str, str, str]]:
        """Observational (marginal) dependence, ``dependent`` a symmetric ``(n, n)`` bool matrix.

        Independent pairs (faithfulness: no common ancestor) become hard "no reach" both ways;
        dependent pairs raise both edge directions a little (they may be indirect).

        Returns:
            Facts skipped as contradicting earlier hard facts (see :meth:`observe_intervention`).
        """
        dep = np.asarray(dependent, dtype=bool)
        n = len(self.genes)
        if dep.shape != (n, n):
            raise ValueError(f"dependent must have shape {(n, n)}, got {dep.shape}")
        off = ~np.eye(n, dtype=bool)
        self.edge_logit[dep & off] += np.log(self.cfg.dependence_likelihood_ratio)
        conflicts: list[tuple[str, str, str]] = []
        for i, j in zip(*np.nonzero(~dep & off), strict=True):
            if not self._try_add(int(i), int(j), required=False):
                conflicts.append((self.genes[i], self.genes[j], "no_reach"))
        return conflicts

    def _try_add(self, i: int, j: int, *, required: bool) -> bool:
        req, forb = self.required_reach.copy(), self.forbidden_reach.copy()
        (req if required else forb)[i, j] = True
        req, forb = _close(req, forb)
        if (req & forb).any():
            return False
        self.required_reach, self.forbidden_reach = req, forb
        return True

    # ------------------------------------------------------------ beliefs

    def forbidden_edges(self) -> np.ndarray:
        """Pairs that cannot be direct edges (an edge implies reach)."""
        return self.forbidden_reach.copy()

    def edge_prob(self) -> np.ndarray:
        """P(direct edge i -> j) from the soft evidence, 0 where hard facts rule the edge out."""
        return np.where(self.forbidden_reach, 0.0, _sigmoid(self.edge_logit))

    def ancestry_prob(self, k: int = 256, seed: int = 0) -> np.ndarray:
        """P(i is an ancestor of j): 1 / 0 where known, else the share of sampled DAGs with the path."""
        est = transitive_closure(self.sample_graphs(k, np.random.default_rng(seed))).mean(axis=0)
        return np.where(self.required_reach, 1.0, np.where(self.forbidden_reach, 0.0, est))

    def candidate_edges(self, threshold: float = 0.0) -> np.ndarray:
        """Edges not ruled out: allowed by the hard facts and with ``P(edge) > threshold``."""
        return np.asarray(self.edge_prob() > threshold)

    # ------------------------------------------------------------ graphs

    def sample_graphs(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """``(k, n, n)`` DAGs drawn from the edge probabilities, all honouring the hard facts.

        Each unordered pair draws one state (none, i -> j or j -> i; see :meth:`_pair_prob`). Drawn
        edges are admitted one by one, more probable first (weighted random keys), unless they would
        close a cycle or a forbidden path; every required reach still missing at the end is repaired
        by direct edges along the transitive reduction of the required relation. The cycle and
        forbidden-path checks run against the closure of admitted edges *plus* the required reaches,
        so the repair edges never create a forbidden path or a cycle: no sample is ever rejected.
        """
        cond = self._pair_prob()
        upper = np.triu(np.ones_like(cond, dtype=bool), k=1)
        out = np.zeros((k, *cond.shape), dtype=bool)
        for s in range(k):
            u = np.triu(rng.random(cond.shape), k=1)
            u = (
                u + u.T
            )  # one draw per unordered pair: i -> j if u < cond[i, j], j -> i if u >= 1 - cond[j, i]
            drawn = np.where(upper, u < cond, u >= 1 - cond)
            keys = np.where(drawn, rng.random(cond.shape) ** (1.0 / np.maximum(cond, 1e-12)), -1.0)
            out[s] = self._build(keys)
        return out

    def map_graph(self) -> np.ndarray:
        """The most probable graph under the beliefs: per pair the likelier state, admitted by probability."""
        p = self._pair_prob()
        return self._build(np.where(p > 0.5, p, -1.0))

    def _pair_prob(self) -> np.ndarray:
        """P(i -> j) with i -> j and j -> i exclusive: independent beliefs conditioned on "not both"."""
        p = self.edge_prob()
        return np.asarray(p * (1 - p.T) / np.maximum(1 - p * p.T, 1e-12))

    def _build(self, keys: np.ndarray) -> np.ndarray:
        """Admit edges with ``keys >= 0`` in descending key order, then repair required reaches."""
        n = keys.shape[0]
        adj = np.zeros((n, n), dtype=bool)
        virtual = transitive_closure(self.required_reach) | np.eye(n, dtype=bool)
        flat = np.argsort(-keys, axis=None, kind="stable")
        for f in flat[: int((keys >= 0).sum())]:
            u, v = divmod(int(f), n)
            if virtual[v, u]:
                continue  # would close a cycle with what is admitted or required
            new = np.outer(virtual[:, u], virtual[v, :])
            if (new & self.forbidden_reach).any():
                continue
            adj[u, v] = True
            virtual |= new
        # Repair with the transitive reduction of the required reaches: A -> B -> C, not also A -> C.
        req = self.required_reach
        reduction = req & ~((req.astype(np.float32) @ req.astype(np.float32)) > 0)
        adj |= reduction & ~transitive_closure(adj)
        return adj
