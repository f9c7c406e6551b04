"""Known answers for edge beliefs: hard ancestry facts, their consequences, priors and sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from level5_discovery.beliefs import BeliefConfig, EdgeBeliefs
from level5_discovery.design import is_dag, transitive_closure

GENES = ["A", "B", "C", "D", "E"]
A, B, C, D, E = range(5)


@dataclass(frozen=True)
class Hyp:
    cause: str
    effect: str
    score: float


def test_samples_honour_a_shift_and_an_informative_null() -> None:
    b = EdgeBeliefs(GENES)
    assert b.observe_intervention("A", {"B"}, {"C"}) == []
    samples = b.sample_graphs(200, np.random.default_rng(0))
    reach = transitive_closure(samples)
    assert reach[:, A, B].all()
    assert not reach[:, A, C].any()
    assert all(is_dag(g) for g in samples)
    assert len({g.tobytes() for g in samples}) > 50  # a spread, not one graph


def test_hard_facts_have_their_logical_consequences() -> None:
    b = EdgeBeliefs(GENES)
    b.observe_intervention("A", {"B"}, {"C"})
    allowed = b.candidate_edges()
    # B reachable from A while C is not => no B -> C; acyclicity => B never reaches A.
    assert not allowed[B, C] and not allowed[A, C] and not allowed[B, A]
    assert allowed[A, B] and allowed[C, B] and allowed[D, E]
    anc = b.ancestry_prob(k=100)
    assert anc[A, B] == 1.0 and anc[A, C] == 0.0 and anc[B, C] == 0.0 and anc[B, A] == 0.0
    assert 0.0 < anc[D, E] < 1.0


def test_contradicting_facts_are_reported_and_not_applied() -> None:
    b = EdgeBeliefs(GENES)
    b.observe_intervention("A", {"B"}, [])
    before = (b.required_reach.copy(), b.forbidden_reach.copy())
    conflicts = b.observe_intervention("B", {"A", "D"}, [])
    assert conflicts == [("B", "A", "reach")]
    assert b.required_reach[B, D] and not b.required_reach[B, A]
    assert not np.array_equal(before[0], b.required_reach)  # B -> D was applied


def test_sampling_is_deterministic_per_seed() -> None:
    b = EdgeBeliefs(GENES)
    b.observe_intervention("A", {"B", "D"}, {"E"})
    s1 = b.sample_graphs(30, np.random.default_rng(4))
    s2 = b.sample_graphs(30, np.random.default_rng(4))
    s3 = b.sample_graphs(30, np.random.default_rng(5))
    assert np.array_equal(s1, s2) and not np.array_equal(s1, s3)


def test_hypotheses_set_and_combine_edge_probabilities() -> None:
    b = EdgeBeliefs(GENES)
    b.prior_from_hypotheses([Hyp("A", "B", 0.9), ("C", "D", 0.8)])
    p = b.edge_prob()
    assert p[A, B] == pytest.approx(0.9) and p[C, D] == pytest.approx(0.8)
    assert p[B, A] == pytest.approx(BeliefConfig().base_rate) and p[A, A] == 0.0
    b.prior_from_hypotheses([("A", "B", 0.9)])
    assert b.edge_prob()[A, B] > 0.98  # two independent sources
    with pytest.raises(ValueError, match="unknown gene"):
        b.prior_from_hypotheses([("A", "Z", 0.9)])


def test_strong_prior_edges_dominate_samples_and_map() -> None:
    b = EdgeBeliefs(GENES)
    b.prior_from_hypotheses([("A", "B", 0.95), ("B", "A", 0.6), ("C", "D", 0.1)])
    samples = b.sample_graphs(300, np.random.default_rng(1))
    freq = samples.mean(axis=0)
    assert freq[A, B] > 0.85 and freq[B, A] < 0.15 and freq[C, D] < 0.2
    m = b.map_graph()
    assert m[A, B] and not m[B, A] and int(m.sum()) == 1


def test_map_repairs_required_reach_by_the_shortest_explanation() -> None:
    b = EdgeBeliefs(GENES)
    b.observe_intervention("A", {"B", "C"}, [])
    b.observe_intervention("B", {"C"}, [])
    m = b.map_graph()
    assert m[A, B] and m[B, C] and not m[A, C] and int(m.sum()) == 2


def test_independence_forbids_paths_both_ways() -> None:
    b = EdgeBeliefs(GENES)
    dep = np.ones((5, 5), dtype=bool)
    dep[A, E] = dep[E, A] = False
    assert b.observe_dependence(dep) == []
    reach = transitive_closure(b.sample_graphs(100, np.random.default_rng(0)))
    assert not reach[:, A, E].any() and not reach[:, E, A].any()
    assert b.edge_prob()[A, B] > BeliefConfig().base_rate  # dependence nudges edges up
