"""`discover` recovers known graphs, uses interventions the GIES way, and beats PC with knockouts."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest

from level5_discovery.causal_baselines import (
    GraphResult,
    cpdag_from_causallearn,
    expected_edge_scores,
    run_ges,
    run_pc,
)
from level5_discovery.discover import DiscoverConfig, LocalScorer, discover, intervention_hints
from level5_discovery.evaluate import edge_scores
from level5_discovery.simulate import WorldConfig, generate_world

# A hand-made 5-node DAG: 0 -> 1 -> 3, 0 -> 2 -> 3, 3 -> 4.
W5 = np.zeros((5, 5))
W5[0, 1], W5[0, 2], W5[1, 3], W5[2, 3], W5[3, 4] = 1.2, 0.9, 1.0, 1.5, -1.1
ORDER5 = (0, 1, 2, 3, 4)


def linear_sem(
    w: np.ndarray, order: tuple[int, ...], n: int, rng: np.random.Generator, do: int | None = None
) -> np.ndarray:
    """x_j = 2 + sum_i w_ij x_i + N(0, 1); ``do`` clamps one variable to 0."""
    x = np.zeros((n, w.shape[0]))
    for j in order:
        x[:, j] = 0.0 if j == do else 2.0 + x @ w[:, j] + rng.standard_normal(n)
    return x


def sem_with_knockouts(n_obs: int, n_ko: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts, iv = [linear_sem(W5, ORDER5, n_obs, rng)], [np.full(n_obs, -1)]
    for k in range(5):
        parts.append(linear_sem(W5, ORDER5, n_ko, rng, do=k))
        iv.append(np.full(n_ko, k))
    return np.vstack(parts), np.concatenate(iv)


def is_acyclic(adj: np.ndarray) -> bool:
    """Kahn's algorithm: peel off nodes without incoming edges from the remaining ones."""
    alive = np.ones(len(adj), dtype=bool)
    while alive.any():
        sources = alive & ~adj[alive].any(axis=0)
        if not sources.any():
            return False
        alive &= ~sources
    return True


def world_data(
    n_genes: int, seed: int, n_samples: int = 2000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observational data and same-size knockout data (half knockouts over all genes) of a world."""
    world = generate_world(WorldConfig(n_genes=n_genes), seed)
    rng = np.random.default_rng(seed)
    obs = world.sample(n_samples, rng)[:, :n_genes]
    per_gene = n_samples // 2 // n_genes
    parts = [world.sample(n_samples - per_gene * n_genes, rng)[:, :n_genes]]
    iv = [np.full(len(parts[0]), -1)]
    for g in range(n_genes):
        parts.append(world.sample(per_gene, rng, do={g: 0.0})[:, :n_genes])
        iv.append(np.full(per_gene, g))
    return world.weights != 0, obs, np.vstack(parts), np.concatenate(iv)


def test_recovers_a_small_linear_sem_exactly_with_knockouts() -> None:
    x, iv = sem_with_knockouts(2000, 200, seed=0)
    res = discover(x, iv, names=list("ABCDE"))
    assert edge_scores(W5 != 0, res.adj)["shd"] == 0.0
    assert set(zip(res.edges.cause, res.edges.effect, strict=True)) == {
        ("A", "B"), ("A", "C"), ("B", "D"), ("C", "D"), ("D", "E")
    }  # fmt: skip


def test_local_score_uses_only_rows_where_the_variable_was_not_intervened() -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_normal((300, 2))
    iv = np.full(300, -1)
    iv[:100] = 0
    z_wild = z.copy()
    z_wild[:100, 0] = 1e3 * rng.standard_normal(100)  # garbage in variable 0's own intervened rows
    cand = np.array([[False, True], [True, False]])
    a = LocalScorer(z[:, :, None], iv, cand, penalty=1.0)
    b = LocalScorer(z_wild[:, :, None], iv, cand, penalty=1.0)
    assert a.n_rows(0) == 200 and a.n_rows(1) == 300
    kept = z[100:, 0]
    expected = -0.5 * 200 * np.log(kept.var())
    assert a.score(0, ()) == pytest.approx(expected, rel=1e-9)
    assert b.score(0, ()) == pytest.approx(expected, rel=1e-9)  # the intervened rows never enter
    assert a.score(1, (0,)) != pytest.approx(b.score(1, (0,)))  # ... but they do enter its child's score


def test_intervention_hints_find_exactly_the_descendants() -> None:
    x, iv = sem_with_knockouts(1000, 100, seed=0)
    z = (x - x.mean(0)) / x.std(0)
    ancestor, strength, pvals = intervention_hints(z, iv, alpha=0.01)
    closure = np.zeros((5, 5), dtype=bool)  # 0 reaches all; 1 and 2 reach 3, 4; 3 reaches 4
    closure[0, 1:] = closure[1, 3:] = closure[2, 3:] = closure[3, 4] = True
    np.testing.assert_array_equal(ancestor, closure)
    assert np.isnan(pvals[0, 0]) and strength[0, 0] == 0.0
    assert strength[0, 1] > 5 and pvals[3, 0] > 0.01  # a knockout does not move its ancestors


def test_with_knockouts_beats_pc_on_a_simulated_20_gene_world() -> None:
    for seed in (0, 1):
        true, obs, x, iv = world_data(20, seed)
        ours = edge_scores(true, discover(x, iv).adj)["f1"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pc = expected_edge_scores(true, run_pc(obs, alpha=0.01))["f1"]
        assert ours >= pc + 0.25, (seed, ours, pc)
        assert ours >= 0.9


def test_observational_only_returns_a_dag() -> None:
    _, obs, _, _ = world_data(20, 3, n_samples=600)
    res = discover(obs)
    assert res.adj.any() and is_acyclic(res.adj)
    assert not np.diag(res.adj).any()


def test_edges_frame_is_ranked_and_matches_the_adjacency() -> None:
    x, iv = sem_with_knockouts(500, 60, seed=4)
    res = discover(x, iv, cfg=DiscoverConfig(n_bootstrap=3, seed=7))
    assert list(res.edges.columns) == ["cause", "effect", "confidence"]
    conf = res.edges.confidence.to_numpy()
    assert (np.diff(conf) <= 0).all() and ((conf >= 0) & (conf <= 1)).all()
    assert len(res.edges) == int(res.adj.sum())
    again = discover(x, iv, cfg=DiscoverConfig(n_bootstrap=3, seed=7))
    np.testing.assert_array_equal(res.confidence, again.confidence)  # seeded bootstrap


def test_min_confidence_drops_edges_and_keeps_a_dag() -> None:
    x, iv = sem_with_knockouts(300, 30, seed=5)
    loose = discover(x, iv, cfg=DiscoverConfig(n_bootstrap=4))
    strict = discover(x, iv, cfg=DiscoverConfig(n_bootstrap=4, min_confidence=1.0))
    assert (strict.adj <= loose.adj).all() and (strict.confidence[strict.adj] == 1.0).all()


def test_rejects_inconsistent_inputs() -> None:
    with pytest.raises(ValueError, match="intervened"):
        discover(np.zeros((10, 3)), np.full(10, 5))
    with pytest.raises(ValueError, match="names"):
        discover(np.random.default_rng(0).standard_normal((10, 3)), names=["a", "b"])


def v_structure(n: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    c = a + b + 0.5 * rng.standard_normal(n)
    return np.column_stack([a, b, c])


@pytest.mark.parametrize("method", [run_pc, run_ges])
def test_baselines_orient_a_v_structure(method: Callable[[np.ndarray], GraphResult]) -> None:
    res = method(v_structure())
    expected = np.zeros((3, 3), dtype=bool)
    expected[0, 2] = expected[1, 2] = True
    np.testing.assert_array_equal(res.directed, expected)
    assert res.n_undirected == 0


def test_causallearn_encoding_and_half_credit_for_undirected_edges() -> None:
    g = np.zeros((3, 3), dtype=int)
    g[1, 0], g[0, 1] = 1, -1  # 0 -> 1
    g[1, 2] = g[2, 1] = -1  # 1 -- 2
    directed, undirected = cpdag_from_causallearn(g)
    assert directed[0, 1] and directed.sum() == 1 and undirected[1, 2] and undirected[2, 1]
    true = np.zeros((3, 3), dtype=bool)
    true[0, 1] = true[1, 2] = True
    s = expected_edge_scores(true, GraphResult(directed, undirected, 0.0))
    assert s["precision"] == 0.75 and s["recall"] == 0.75 and s["shd"] == 0.5 and s["n_undirected"] == 1
