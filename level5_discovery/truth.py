"""The evaluation API: the only door to a world's hidden truth. Never hand it to an agent."""

from __future__ import annotations

import numpy as np

from level5_discovery.design import transitive_closure
from level5_discovery.evaluate import edge_scores
from level5_discovery.simulate import World


def phenotype_ancestor_mask(weights: np.ndarray, phenotype_weights: np.ndarray) -> np.ndarray:
    """Boolean ``(n,)``: the genes with a causal path to the phenotype (its drivers and every gene
    upstream of a driver), from the hidden weights alone.

    Args:
        weights: ``(n, n)`` gene-to-gene weights (non-zero = edge).
        phenotype_weights: ``(n,)`` driver weights on the phenotype (non-zero = driver).
    """
    adj = np.asarray(weights) != 0
    drivers = np.asarray(phenotype_weights) != 0
    return np.asarray(drivers | (transitive_closure(adj) & drivers[None, :]).any(axis=1))


class Evaluator:
    """Ground truth of a :class:`World` and scores of predictions against it.

    Args:
        world: The hidden world.
    """

    def __init__(self, world: World) -> None:
        self._world = world
        self.genes: tuple[str, ...] = tuple(world.genes)
        self._index = {g: i for i, g in enumerate(self.genes)}
        adj = world.weights != 0
        # Transitive closure by repeated boolean squaring of (I + A): log2(n) products.
        reach = adj | np.eye(len(self.genes), dtype=bool)
        for _ in range(max(1, int(np.ceil(np.log2(max(2, len(self.genes))))))):
            reach = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
        np.fill_diagonal(reach, False)
        self._reach = reach

    def true_adjacency(self) -> np.ndarray:
        """Boolean ``(n, n)``: ``adj[i, j]`` iff ``i -> j``."""
        return np.asarray(self._world.weights != 0)

    def true_signs(self) -> np.ndarray:
        """Integer ``(n, n)``: +1 activation, -1 repression, 0 no edge."""
        return np.asarray(np.sign(self._world.weights).astype(int))

    def true_weights(self) -> np.ndarray:
        """The signed weight matrix (a copy)."""
        return self._world.weights.copy()

    def true_edges(self) -> list[tuple[str, str, str]]:
        """Every true edge as ``(cause, effect, "+" | "-")``, in row-major order."""
        w = self._world.weights
        return [
            (self.genes[i], self.genes[j], "+" if w[i, j] > 0 else "-")
            for i, j in zip(*np.nonzero(w), strict=True)
        ]

    def drivers(self) -> list[str]:
        """Genes that drive the phenotype."""
        return [self.genes[i] for i in np.flatnonzero(self._world.phenotype_weights)]

    def phenotype_ancestors(self) -> set[str]:
        """Genes with a causal path to the phenotype: the drivers and every gene upstream of one."""
        mask = phenotype_ancestor_mask(self._world.weights, self._world.phenotype_weights)
        return {g for g, up in zip(self.genes, mask, strict=True) if up}

    def driver_signs(self) -> dict[str, int]:
        """Driver -> +1 when raising it raises the phenotype, -1 otherwise."""
        pw = self._world.phenotype_weights
        return {self.genes[i]: int(np.sign(pw[i])) for i in np.flatnonzero(pw)}

    def reachability(self) -> np.ndarray:
        """Boolean ``(n, n)``: ``reach[i, j]`` iff a directed path ``i -> ... -> j`` exists."""
        return np.array(self._reach, copy=True)

    def descendants(self, gene: str) -> set[str]:
        """Genes reachable from ``gene`` by a directed path (not the gene itself)."""
        return {self.genes[j] for j in np.flatnonzero(self._reach[self._idx(gene)])}

    def ancestors(self, gene: str) -> set[str]:
        """Genes with a directed path to ``gene``."""
        return {self.genes[i] for i in np.flatnonzero(self._reach[:, self._idx(gene)])}

    def score(self, pred_adj: np.ndarray) -> dict[str, float]:
        """Edge precision, recall, F1 and SHD of a predicted adjacency (see ``evaluate.edge_scores``)."""
        return edge_scores(self.true_adjacency(), pred_adj)

    def is_true_edge(self, cause: str, effect: str, sign: str | int | None = None) -> bool:
        """Whether ``cause -> effect`` is an edge (with that sign, when given as +/-/1/-1).

        Unknown gene names are simply not edges.
        """
        if cause not in self._index or effect not in self._index:
            return False
        w = self._world.weights[self._index[cause], self._index[effect]]
        if w == 0:
            return False
        if sign is None:
            return True
        want = {"+": 1, "-": -1, 1: 1, -1: -1}.get(sign)
        return want is not None and int(np.sign(w)) == want

    def _idx(self, gene: str) -> int:
        try:
            return self._index[gene]
        except KeyError:
            raise KeyError(f"unknown gene {gene!r}") from None
