"""The observation: a fixed-size summary of what a campaign currently knows.

The belief is held by :class:`level5_discovery.beliefs.EdgeBeliefs` over the ``n`` genes plus one
extra node, the phenotype (last index ``n``). Its hard facts are two boolean ``(n + 1, n + 1)``
matrices: ``required[i, j]`` (i is known to be an ancestor of j) and ``forbidden[i, j]`` (i is known
not to be). From them, per gene (all in ``[0, 1]``):

0. ``tested``: how often it was intervened on (capped at 3, divided by 3);
1. ``upstream``: known to be an ancestor of the phenotype (a driver or upstream of one);
2. ``not_upstream``: known not to be;
3. ``descendants``: known descendants among the other genes, over ``n - 1``;
4. ``ancestors``: known ancestors among the other genes, over ``n - 1``;
5. ``undecided_from``: pairs ``(g, h)`` with reach neither required nor forbidden, over ``n - 1``;
6. ``undecided_to``: pairs ``(h, g)`` likewise;
7. ``potential``: genes whose phenotype ancestry is undecided and which ``g`` may still reach (``g``
   itself included when undecided), over ``n``: an upper bound on what intervening on ``g`` can decide.

then two globals: the share of budget left and the share of genes whose phenotype ancestry is decided.
The vector is the gene rows flattened gene-major, then the globals.
"""

from __future__ import annotations

import numpy as np

PER_GENE = (
    "tested", "upstream", "not_upstream", "descendants", "ancestors",
    "undecided_from", "undecided_to", "potential",
)  # fmt: skip
GLOBAL = ("budget_left", "decided_share")


def observation_size(n_genes: int) -> int:
    """Length of the observation vector for ``n_genes`` genes."""
    return n_genes * len(PER_GENE) + len(GLOBAL)


def decided_mask(required: np.ndarray, forbidden: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: genes whose phenotype ancestry (reach to the last node) is known either way."""
    n = required.shape[0] - 1
    return np.asarray(required[:n, n] | forbidden[:n, n])


def belief_features(
    required: np.ndarray, forbidden: np.ndarray, tested: np.ndarray, budget_left: float
) -> np.ndarray:
    """The observation vector (float32, every entry in ``[0, 1]``).

    Args:
        required: ``(n + 1, n + 1)`` known reach, the phenotype last.
        forbidden: ``(n + 1, n + 1)`` known non-reach (the diagonal is True).
        tested: ``(n,)`` number of interventions on each gene so far.
        budget_left: Share of the budget not yet spent, in ``[0, 1]``.

    Returns:
        ``(observation_size(n),)`` features, gene-major (see the module docstring).
    """
    req = np.asarray(required, dtype=bool)
    forb = np.asarray(forbidden, dtype=bool)
    n = req.shape[0] - 1
    if req.shape != (n + 1, n + 1) or forb.shape != req.shape or np.shape(tested) != (n,):
        raise ValueError(f"required/forbidden must be ({n + 1}, {n + 1}) and tested ({n},)")
    genes_req, genes_forb = req[:n, :n], forb[:n, :n]
    off = ~np.eye(n, dtype=bool)
    undecided_pair = ~genes_req & ~genes_forb & off
    decided = decided_mask(req, forb)
    open_genes = ~decided
    # Diagonal of `forbidden` is True, so add the gene itself back when it is undecided.
    reachable_open = (~genes_forb & off & open_genes[None, :]).sum(axis=1) + open_genes
    others = max(n - 1, 1)
    per_gene = np.column_stack(
        [
            np.minimum(np.asarray(tested, dtype=float), 3.0) / 3.0,
            req[:n, n],
            forb[:n, n],
            genes_req.sum(axis=1) / others,
            genes_req.sum(axis=0) / others,
            undecided_pair.sum(axis=1) / others,
            undecided_pair.sum(axis=0) / others,
            reachable_open / n,
        ]
    ).astype(np.float32)
    glob = np.array([np.clip(budget_left, 0.0, 1.0), decided.mean()], dtype=np.float32)
    return np.concatenate([per_gene.ravel(), glob])
