"""The hidden world: structure, determinism, do-semantics and effect sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from level5_discovery.simulate import World, WorldConfig, gene_names, generate_world, saturate
from level5_discovery.truth import Evaluator

N = 4000


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(), seed=0)


def _mid_gene(world: World) -> int:
    """A gene with parents and children (so both sides of do-semantics are tested)."""
    adj = world.weights != 0
    both = np.flatnonzero(adj.any(axis=0) & adj.any(axis=1))
    assert both.size, "the default world should have a gene with parents and children"
    ev = Evaluator(world)
    # the one with the most descendants makes the strongest test
    return int(max(both, key=lambda i: len(ev.descendants(world.genes[i]))))


def test_structure_matches_config() -> None:
    indeg = []
    for seed in range(10):
        w = generate_world(WorldConfig(), seed)
        adj = w.weights != 0
        assert adj.sum(axis=0).max() <= 3
        mags = np.abs(w.weights[adj])
        assert mags.min() >= 0.8 and mags.max() <= 2.0
        pos = np.empty(20, dtype=int)
        pos[list(w.order)] = np.arange(20)
        src, dst = np.nonzero(adj)
        assert np.all(pos[src] < pos[dst])  # acyclic along the given order
        assert np.count_nonzero(w.phenotype_weights) == 3
        assert np.all((w.basal >= 2.0) & (w.basal <= 5.0))
        indeg.append(adj.sum(axis=0).mean())
    assert 1.1 <= float(np.mean(indeg)) <= 1.5
    signs = np.concatenate([np.sign(generate_world(WorldConfig(), s).weights).ravel() for s in range(10)])
    neg_share = (signs < 0).sum() / (signs != 0).sum()
    assert 0.2 < neg_share < 0.5


def test_gene_names_padding() -> None:
    assert gene_names(20)[:2] == ("G00", "G01") and gene_names(20)[-1] == "G19"
    assert gene_names(150)[0] == "G000" and gene_names(150)[-1] == "G149"
    w = generate_world(WorldConfig(n_genes=120), seed=1)
    assert w.genes[0] == "G000" and w.weights.shape == (120, 120)


def test_same_seed_same_world_and_samples() -> None:
    a, b = generate_world(WorldConfig(), 7), generate_world(WorldConfig(), 7)
    assert np.array_equal(a.weights, b.weights) and a.order == b.order
    assert np.array_equal(a.sample(50, np.random.default_rng(3)), b.sample(50, np.random.default_rng(3)))
    c = generate_world(WorldConfig(), 8)
    assert not np.array_equal(a.weights, c.weights)


def test_json_round_trip_gives_identical_samples(world: World) -> None:
    back = World.from_json(json.loads(json.dumps(world.to_json())))
    assert back.genes == world.genes and back.config == world.config
    x1 = world.sample(100, np.random.default_rng(5), do={3: 0.0})
    x2 = back.sample(100, np.random.default_rng(5), do={3: 0.0})
    assert np.array_equal(x1, x2)


def test_do_semantics_non_descendants_unchanged_in_distribution(world: World) -> None:
    """Knocking out a gene leaves its parents and every non-descendant's distribution unchanged."""
    i = _mid_gene(world)
    ev = Evaluator(world)
    desc = {world.genes.index(g) for g in ev.descendants(world.genes[i])}
    parents = set(np.flatnonzero(world.weights[:, i]))
    assert parents and desc
    base = world.sample(N, np.random.default_rng(1))
    ko = world.sample(N, np.random.default_rng(2), do={i: 0.0})  # independent draws
    sd = base.std(axis=0)
    tol = 5.0 * sd * np.sqrt(2.0 / N)  # 5 standard errors of a difference of means
    for j in range(world.n_genes):
        if j == i or j in desc:
            continue
        assert abs(ko[:, j].mean() - base[:, j].mean()) < tol[j], f"non-descendant {world.genes[j]} moved"
        if j in parents:
            assert stats.ks_2samp(ko[:, j], base[:, j]).pvalue > 1e-3
    # With common random numbers a non-descendant is not just equal in distribution but identical.
    ko_same = world.sample(N, np.random.default_rng(1), do={i: 0.0})
    non_desc = [j for j in range(world.n_genes) if j != i and j not in desc]
    assert np.array_equal(ko_same[:, non_desc], base[:, non_desc])
    # ... and the shifted genes are exactly the target and (some of) its descendants
    moved = {j for j in range(world.n_genes) if not np.allclose(ko_same[:, j], base[:, j])}
    assert i in moved and moved - {i} <= desc
    assert desc & moved  # descendants respond


def test_descendants_shift_and_children_detectable(world: World) -> None:
    """Every direct child on a sole path shifts by more than 3 noise sd under a knockout of its parent."""
    ev = Evaluator(world)
    reach = ev.reachability()
    noise = np.hypot(world.config.noise_sd, 0.1)  # biological + the API's default measurement sd
    base = world.sample(2000, np.random.default_rng(0))
    checked = 0
    for i, j in zip(*np.nonzero(world.weights), strict=True):
        others = [p for p in np.flatnonzero(world.weights[:, j]) if p != i]
        if any(reach[i, p] for p in others):
            continue  # another path from i could cancel the direct effect (a faithfulness near-miss)
        ko = world.sample(2000, np.random.default_rng(0), do={int(i): 0.0})
        shift = ko[:, j].mean() - base[:, j].mean()
        assert abs(shift) > 3 * noise
        assert np.sign(shift) == -np.sign(world.weights[i, j])  # losing an activator lowers the child
        checked += 1
    assert checked >= 10


def test_overexpression_effect_smaller_than_knockout(world: World) -> None:
    """Saturation: over-expression by +3 moves direct children less than a knockout does (most edges)."""
    base = world.sample(2000, np.random.default_rng(0))
    smaller = []
    for i, j in zip(*np.nonzero(world.weights), strict=True):
        ko = world.sample(2000, np.random.default_rng(0), do={int(i): 0.0})
        oe = world.sample(2000, np.random.default_rng(0), do={int(i): world.reference[i] + 3.0})
        smaller.append(abs(oe[:, j].mean() - base[:, j].mean()) < abs(ko[:, j].mean() - base[:, j].mean()))
    assert np.mean(smaller) > 0.75
    d = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    h = saturate(d, 1.2, 3.5, 0.6)
    assert h[2] == 0.0 and np.all(np.diff(h) > 0)  # monotone
    assert abs(h[0]) > abs(h[4])  # losses saturate later than gains


def test_knockdown_and_scale(world: World) -> None:
    i = int(world.order[0])  # a root: its value is softplus(basal + noise)
    kd = world.sample(N, np.random.default_rng(0), scale={i: 0.3})
    base = world.sample(N, np.random.default_rng(0))
    assert np.allclose(kd[:, i], 0.3 * base[:, i])
    ko = world.sample(10, np.random.default_rng(0), do={i: 0.0})
    assert np.all(ko[:, i] == 0.0)


def test_phenotype_driven_by_drivers_only(world: World) -> None:
    ev = Evaluator(world)
    drivers = ev.drivers()
    assert len(drivers) == 3
    base = world.sample(N, np.random.default_rng(0))
    assert np.all((base[:, -1] > -0.2) & (base[:, -1] < 1.2))
    d = world.genes.index(drivers[0])
    ko = world.sample(N, np.random.default_rng(0), do={d: 0.0})
    assert abs(ko[:, -1].mean() - base[:, -1].mean()) > 0.1
    # a gene that is neither a driver nor an ancestor of one leaves the phenotype alone
    drv_idx = {world.genes.index(g) for g in drivers}
    reach = ev.reachability()
    inert = [j for j in range(world.n_genes) if j not in drv_idx and not any(reach[j, k] for k in drv_idx)]
    if inert:
        ko2 = world.sample(N, np.random.default_rng(0), do={inert[0]: 0.0})
        assert np.array_equal(ko2[:, -1], base[:, -1])


def test_bad_config_and_bad_world() -> None:
    with pytest.raises(ValidationError):
        WorldConfig(weight_low=2.0, weight_high=1.0)
    with pytest.raises(ValidationError):
        WorldConfig(n_genes=20, unknown=1)  # type: ignore[call-arg]
    w = generate_world(WorldConfig(), 0)
    cyclic = w.weights.copy()
    i, j = np.argwhere(w.weights != 0)[0]
    cyclic[j, i] = 1.0
    with pytest.raises(ValueError, match="cycle"):
        World(w.genes, cyclic, w.order, w.basal, w.phenotype_weights, w.config, w.seed)
    with pytest.raises(ValueError, match="out of range"):
        w.sample(5, np.random.default_rng(0), do={99: 0.0})


def test_evaluator_truth(world: World) -> None:
    ev = Evaluator(world)
    adj = ev.true_adjacency()
    assert ev.score(adj)["f1"] == 1.0 and ev.score(adj)["shd"] == 0.0
    for cause, effect, sign in ev.true_edges():
        assert ev.is_true_edge(cause, effect) and ev.is_true_edge(cause, effect, sign)
        assert not ev.is_true_edge(cause, effect, "-" if sign == "+" else "+")
        assert not ev.is_true_edge(effect, cause)
        assert effect in ev.descendants(cause) and cause in ev.ancestors(effect)
    assert not ev.is_true_edge("G00", "NOPE")
    assert len(ev.true_edges()) == int(adj.sum())
    signs = ev.true_signs()
    assert set(np.unique(signs)) <= {-1, 0, 1} and np.array_equal(signs != 0, adj)
    # reachability equals the closure computed the slow way
    n = len(ev.genes)
    r = adj.copy()
    for k in range(n):
        r |= r[:, [k]] & r[[k], :]
    assert np.array_equal(ev.reachability(), r)
