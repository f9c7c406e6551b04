"""PC and GES from causal-learn as anchors for `discover`, with their CPDAGs made explicit.

Both algorithms return a CPDAG: directed edges plus undirected ones whose direction the
observational data cannot decide. `GraphResult` keeps the two apart. For directed-edge metrics the
undirected edges get **half credit**: `expected_edge_scores` is the expectation of
`evaluate.edge_scores` when each undirected edge is oriented by a fair coin, computed exactly as the
mean of the scores of the two opposite deterministic orientations (every metric is linear in the
number of correctly oriented edges once the number of predicted edges is fixed: precision, recall,
F1 = 2 * correct / (predicted + true) and SHD). So an undirected edge on a true edge counts half
right, half reversed; it is neither dropped (which would punish PC for honesty) nor counted in both
directions (which would give it full recall).

causal-learn's encoding (checked in the installed 0.1.4.8 source, ``GeneralGraph``):
``G.graph[j, i] == 1 and G.graph[i, j] == -1`` means ``i -> j``; ``G.graph[i, j] == G.graph[j, i] == -1``
means ``i -- j``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from level5_discovery.evaluate import edge_scores


@dataclass(frozen=True)
class GraphResult:
    """A CPDAG from a baseline.

    Attributes:
        directed: Bool ``(n, n)``, ``directed[i, j]`` = oriented edge ``i -> j``.
        undirected: Bool symmetric ``(n, n)``, undirected edges ``i -- j``.
        seconds: Wall time of the algorithm.
    """

    directed: np.ndarray
    undirected: np.ndarray
    seconds: float

    @property
    def adj(self) -> np.ndarray:
        """A deterministic DAG-like reading: undirected edges oriented low index -> high index."""
        out: np.ndarray = self.directed | np.triu(self.undirected, k=1)
        return out

    @property
    def n_undirected(self) -> int:
        """Number of undirected edges."""
        return int(np.triu(self.undirected, k=1).sum())


def cpdag_from_causallearn(graph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split causal-learn's endpoint matrix into directed and undirected adjacencies.

    Args:
        graph: ``G.graph`` of a causal-learn ``GeneralGraph`` (entries -1, 0, 1).

    Returns:
        ``(directed, undirected)`` bool matrices.
    """
    g = np.asarray(graph)
    directed = (g.T == 1) & (g == -1)  # directed[i, j]: g[j, i] == 1 and g[i, j] == -1
    undirected = (g == -1) & (g.T == -1)
    np.fill_diagonal(directed, False)
    np.fill_diagonal(undirected, False)
    return directed, undirected


def run_pc(data: np.ndarray, alpha: float = 0.01, indep_test: str = "fisherz") -> GraphResult:
    """The PC algorithm (stable skeleton, causal-learn's default orientation rules).

    Args:
        data: Float ``(rows, vars)``.
        alpha: Significance level of the conditional-independence tests.
        indep_test: causal-learn test name (``fisherz``, ``kci``, ``chisq``, ...).
    """
    from causallearn.search.ConstraintBased.PC import pc

    start = time.perf_counter()
    cg = pc(np.asarray(data, dtype=float), alpha=alpha, indep_test=indep_test, show_progress=False)
    directed, undirected = cpdag_from_causallearn(cg.G.graph)
    return GraphResult(directed, undirected, time.perf_counter() - start)


def run_ges(data: np.ndarray, *, max_parents: int | None = None) -> GraphResult:
    """Greedy equivalence search with causal-learn's linear-Gaussian BIC score.

    Args:
        data: Float ``(rows, vars)``.
        max_parents: Optional cap on parents per node (causal-learn's ``maxP``).
    """
    from causallearn.search.ScoreBased.GES import ges

    start = time.perf_counter()
    record = ges(np.asarray(data, dtype=float), score_func="local_score_BIC", maxP=max_parents)
    directed, undirected = cpdag_from_causallearn(record["G"].graph)
    return GraphResult(directed, undirected, time.perf_counter() - start)


def _child(
    conn: Any, func: Callable[..., GraphResult], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    conn.send(func(*args, **kwargs))
    conn.close()


def run_with_timeout(
    func: Callable[..., GraphResult], *args: Any, timeout_s: float, **kwargs: Any
) -> GraphResult | None:
    """Run a baseline in a forked process; None if it does not finish within ``timeout_s``.

    GES in causal-learn grows steeply with the number of variables; the benchmark bounds it this way.
    """
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, func, args, kwargs), daemon=True)
    proc.start()
    send.close()
    result: GraphResult | None = None
    if recv.poll(timeout_s):
        result = recv.recv()
    proc.join(timeout=1.0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return result


def expected_edge_scores(true_adj: np.ndarray, result: GraphResult) -> dict[str, float]:
    """`evaluate.edge_scores` with each undirected edge worth half (its expectation under a coin flip).

    Args:
        true_adj: Bool ``(n, n)`` true DAG.
        result: A baseline's CPDAG.

    Returns:
        The keys of `edge_scores`, averaged over the two opposite orientations of the undirected
        edges (exactly the coin-flip expectation, see the module docstring), plus ``n_undirected``.
    """
    upper = np.triu(result.undirected, k=1)
    one = edge_scores(true_adj, result.directed | upper)
    other = edge_scores(true_adj, result.directed | upper.T)
    out = {k: (one[k] + other[k]) / 2 for k in one}
    out["n_undirected"] = float(result.n_undirected)
    return out
