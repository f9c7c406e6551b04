"""Known answers of the clingo knowledge base: derivations, contradictions, candidate graphs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from level5_discovery.logic import CandidateSpace, Fact, KnowledgeBase
from shared.errors import DataError

GENES = ["A", "B", "C", "D"]


def edge(cause: str, effect: str, sign: str, source: str, conf: float = 0.8) -> Fact:
    return Fact(cause, effect, sign, "edge", source, conf)  # type: ignore[arg-type]


def null(cause: str, effect: str, source: str, conf: float = 0.9) -> Fact:
    return Fact(cause, effect, "0", "no_reach", source, conf)


def closure(adj: np.ndarray) -> np.ndarray:
    """Reachability by repeated squaring-free Warshall (independent of the ASP encoding)."""
    r = adj.copy()
    for k in range(len(r)):
        r |= r[:, [k]] & r[[k], :]
    return r


def test_chain_derives_sign_product_with_both_sources() -> None:
    kb = KnowledgeBase(GENES)
    kb.add_many([edge("A", "B", "+", "paper:P1", 0.9), edge("B", "C", "-", "paper:P2", 0.5)])
    derived = {(d.cause, d.effect, d.sign): d for d in kb.derive()}
    assert set(derived) == {("A", "B", "+"), ("B", "C", "-"), ("A", "C", "-")}
    ac = derived[("A", "C", "-")]
    assert ac.sources == ("paper:P1", "paper:P2")
    assert ac.path == ("A", "B", "C") and ac.length == 2
    assert ac.confidence == pytest.approx(0.45)


def test_two_repressions_activate_and_the_witness_is_the_most_confident_path() -> None:
    kb = KnowledgeBase(GENES)
    kb.add_many([
        edge("A", "B", "-", "paper:P1", 0.9), edge("B", "D", "-", "paper:P2", 0.9),
        edge("A", "C", "-", "paper:P3", 0.3), edge("C", "D", "-", "paper:P4", 0.3),
    ])  # fmt: skip
    ad = [d for d in kb.derive() if (d.cause, d.effect) == ("A", "D")]
    assert [d.sign for d in ad] == ["+"]
    assert ad[0].sources == ("paper:P1", "paper:P2")


def test_derive_resolves_to_the_better_supported_sign() -> None:
    kb = KnowledgeBase(GENES)
    kb.add_many([
        edge("A", "B", "+", "paper:P1", 0.9), edge("A", "B", "-", "paper:P2", 0.4),
        edge("B", "C", "+", "paper:P3", 0.8),
    ])  # fmt: skip
    resolved = {(d.cause, d.effect, d.sign) for d in kb.derive()}
    assert ("A", "C", "+") in resolved and ("A", "C", "-") not in resolved
    everything = {(d.cause, d.effect, d.sign) for d in kb.derive(resolve=False)}
    assert {("A", "C", "+"), ("A", "C", "-")} <= everything


def test_opposite_signs_from_two_papers_are_one_contradiction() -> None:
    kb = KnowledgeBase(GENES)
    p1, p2 = edge("A", "B", "+", "paper:P1", 0.9), edge("A", "B", "-", "paper:P2", 0.6)
    kb.add_many([p1, p2, edge("B", "C", "+", "paper:P3")])
    found = kb.contradictions()
    assert len(found) == 1
    c = found[0]
    assert (c.kind, c.cause, c.effect) == ("sign", "A", "B")
    assert c.sources == ("paper:P1", "paper:P2")
    assert c.side_a == (p1,) and c.side_b == (p2,) and c.drop == (p2,)


def test_same_source_twice_is_not_a_sign_contradiction_and_ties_are_left_open() -> None:
    kb = KnowledgeBase(GENES)
    kb.add_many([edge("A", "B", "+", "paper:P1"), edge("A", "B", "-", "paper:P1")])
    assert kb.contradictions() == []
    kb.add(edge("A", "B", "-", "paper:P2", 0.8))
    (c,) = kb.contradictions()
    # P1 supports both signs (0.8 each), P2 adds 0.8 to '-': '-' wins 1.6 to 0.8.
    assert c.kind == "sign" and all(f.sign == "+" for f in c.drop)
    tie = KnowledgeBase(GENES)
    tie.add_many([edge("A", "B", "+", "paper:P1", 0.7), edge("A", "B", "-", "paper:P2", 0.7)])
    (t,) = tie.contradictions()
    assert t.drop == () and "tie" in t.resolution


def test_an_edge_refuted_by_an_experiment_is_a_contradiction() -> None:
    kb = KnowledgeBase(GENES)
    claim, result = edge("A", "B", "+", "paper:P1", 0.6), null("A", "B", "experiment:7", 0.95)
    kb.add_many([claim, result])
    (c,) = kb.contradictions()
    assert (c.kind, c.cause, c.effect) == ("refuted", "A", "B")
    assert c.side_a == (claim,) and c.side_b == (result,) and c.drop == (claim,)
    # The refuted claim is not used for derivations any more.
    assert kb.derive() == []


def test_a_chain_refuted_by_an_experiment_names_its_weakest_link() -> None:
    kb = KnowledgeBase(GENES)
    ab, bc = edge("A", "B", "+", "paper:P1", 0.9), edge("B", "C", "+", "paper:P2", 0.4)
    kb.add_many([ab, bc, null("A", "C", "experiment:3", 0.9)])
    (c,) = kb.contradictions()
    assert (c.kind, c.cause, c.effect) == ("refuted_path", "A", "C")
    assert c.side_a == (ab, bc) and c.drop == (bc,)


def test_cycle_of_asserted_edges_is_reported_once() -> None:
    kb = KnowledgeBase(GENES)
    facts = [edge("A", "B", "+", "paper:P1", 0.9), edge("B", "C", "+", "paper:P2", 0.8),
             edge("C", "A", "-", "hypothesis:lm", 0.3), edge("C", "D", "+", "paper:P4")]  # fmt: skip
    kb.add_many(facts)
    (c,) = kb.contradictions()
    assert c.kind == "cycle" and set(c.side_a) == set(facts[:3])
    assert c.drop == (facts[2],) and (c.cause, c.effect) == ("C", "A")


def test_consistent_facts_have_no_contradictions_and_frame_lists_facts() -> None:
    kb = KnowledgeBase(GENES)
    kb.add_many(
        [edge("A", "B", "+", "paper:P1"), edge("B", "C", "-", "paper:P2"), null("C", "A", "experiment:1")]
    )
    kb.add(edge("A", "B", "+", "paper:P1"))  # a duplicate is ignored
    assert kb.contradictions() == []
    frame = kb.to_frame()
    assert list(frame.columns) == ["cause", "effect", "sign", "relation", "source", "confidence"]
    assert len(frame) == 3 and frame["source"].tolist()[-1] == "experiment:1"


def test_bad_facts_raise() -> None:
    kb = KnowledgeBase(GENES)
    with pytest.raises(DataError, match="unknown gene 'Z'"):
        kb.add(edge("A", "Z", "+", "paper:P1"))
    with pytest.raises(ValueError, match="no_reach"):
        Fact("A", "B", "0", "edge", "paper:P1", 0.5)
    with pytest.raises(ValueError, match="confidence"):
        Fact("A", "B", "+", "edge", "paper:P1", 1.5)
    with pytest.raises(ValueError, match="different genes"):
        Fact("A", "A", "+", "edge", "paper:P1", 0.5)


def _random_evidence(
    seed: int, n: int = 20, n_cand: int = 60
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    true = np.zeros((n, n), dtype=bool)
    for a in range(n):
        for b in range(a + 1, n):
            true[order[a], order[b]] = rng.random() < 0.08
    cand = true.copy()
    while cand.sum() < n_cand:
        i, j = rng.integers(n, size=2)
        cand[i, j] = i != j
    reach = closure(true)
    off = ~np.eye(n, dtype=bool)
    required = reach & (rng.random((n, n)) < 0.4)
    forbidden = ~reach & off & (rng.random((n, n)) < 0.4)
    return true, cand, required, forbidden


def test_candidate_graphs_meet_the_evidence_are_diverse_and_fast() -> None:
    true, cand, required, forbidden = _random_evidence(1)
    kb = KnowledgeBase([f"G{i:02d}" for i in range(20)])
    start = time.perf_counter()
    graphs = kb.candidate_graphs(
        cand, required_reach=required, forbidden_reach=forbidden, max_models=200, seed=5
    )
    elapsed = time.perf_counter() - start
    assert graphs.shape == (200, 20, 20) and graphs.dtype == bool
    assert len({g.tobytes() for g in graphs}) == 200
    for g in graphs:
        r = closure(g)
        assert not np.any(g & ~cand)
        assert not np.any(np.diag(r))
        assert np.all(r[required]) and not np.any(r[forbidden])
    # Diverse, not 200 neighbours of one graph: many candidate edges are in some models and not others,
    # and the edge counts spread.
    freq = graphs.mean(axis=0)[cand]
    assert ((freq > 0.1) & (freq < 0.9)).sum() >= 10
    assert graphs.sum(axis=(1, 2)).std() > 1.0
    space = CandidateSpace(kb.genes, cand, required_reach=required, forbidden_reach=forbidden)
    assert space.consistent(true)
    assert elapsed < 10.0  # about 0.1 s on one core; generous for a shared machine


def test_evidence_that_pins_one_graph_returns_exactly_it() -> None:
    kb = KnowledgeBase(GENES)
    cand = np.zeros((4, 4), dtype=bool)
    for i, j in [(0, 1), (1, 0), (1, 2), (2, 1), (2, 0), (3, 0)]:
        cand[i, j] = True
    # A->B and B->C are the only ways to reach; the reverse edges would close cycles;
    # D->A would let D reach C, which is forbidden.
    graphs = kb.candidate_graphs(
        cand, required_reach=[("A", "B"), ("B", "C")], forbidden_reach=[("D", "C")], max_models=50, seed=0
    )
    expected = np.zeros((4, 4), dtype=bool)
    expected[0, 1] = expected[1, 2] = True
    assert graphs.shape == (1, 4, 4)
    assert np.array_equal(graphs[0], expected)


def test_inconsistent_evidence_gives_no_graph_and_consistent_checks_one_graph() -> None:
    kb = KnowledgeBase(GENES)
    cand = ~np.eye(4, dtype=bool)
    none = kb.candidate_graphs(
        cand, required_reach=[("A", "B"), ("B", "A")], forbidden_reach=[], max_models=5
    )
    assert none.shape == (0, 4, 4)
    chain = np.zeros((4, 4), dtype=bool)
    chain[0, 1] = chain[1, 2] = True
    ok = {"required_reach": [("A", "C")], "forbidden_reach": [("C", "A"), ("A", "D")]}
    assert kb.consistent(chain, cand, **ok)
    assert not kb.consistent(chain, cand, required_reach=[("A", "D")], forbidden_reach=[])
    cyclic = chain.copy()
    cyclic[2, 0] = True
    assert not kb.consistent(cyclic, cand, required_reach=[], forbidden_reach=[])
    narrow = cand.copy()
    narrow[1, 2] = False
    assert not kb.consistent(chain, narrow, **ok)


def test_candidate_graphs_default_to_the_kb_experiments_and_follow_weights() -> None:
    kb = KnowledgeBase(GENES)
    kb.add_many([Fact("A", "C", "+", "reach", "experiment:1", 0.9), null("D", "A", "experiment:2"),
                 edge("B", "D", "+", "paper:P9")])  # fmt: skip
    required, forbidden = kb.evidence_reach()
    assert required[0, 2] and forbidden[3, 0] and required.sum() == 1 and forbidden.sum() == 1
    cand = ~np.eye(4, dtype=bool)
    graphs = kb.candidate_graphs(cand, max_models=100, seed=3)
    assert len(graphs) == 100
    assert all(closure(g)[0, 2] and not closure(g)[3, 0] for g in graphs)
    again = kb.candidate_graphs(cand, max_models=100, seed=3)
    assert np.array_equal(graphs, again)
    weights = np.full((4, 4), 0.5)
    weights[1, 3], weights[3, 1] = 0.95, 0.05
    steered = kb.candidate_graphs(cand, max_models=60, seed=3, edge_weights=weights)
    plain = kb.candidate_graphs(cand, max_models=60, seed=3)
    # Blocking seen models pushes late draws away from the preference, so compare with a margin.
    assert steered[:, 1, 3].mean() > plain[:, 1, 3].mean() + 0.15
    assert steered[:, 3, 1].mean() < min(0.15, plain[:, 3, 1].mean())


def test_enumeration_finds_every_consistent_graph_of_a_small_space() -> None:
    kb = KnowledgeBase(GENES)
    cand = ~np.eye(4, dtype=bool)
    pairs = np.argwhere(cand)
    brute = 0
    for mask in range(2 ** len(pairs)):
        g = np.zeros((4, 4), dtype=bool)
        for k, (i, j) in enumerate(pairs):
            g[i, j] = bool(mask >> k & 1)
        r = closure(g)
        brute += int(not np.diag(r).any() and r[0, 2] and not r[3, 0])
    graphs = kb.candidate_graphs(
        cand, required_reach=[("A", "C")], forbidden_reach=[("D", "A")], max_models=1000
    )
    assert len(graphs) == brute == len({g.tobytes() for g in graphs})
