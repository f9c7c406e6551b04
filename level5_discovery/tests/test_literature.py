"""The generated literature: kind shares, truth of relations, pairs, coverage, wording and speed."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict

import pytest
from pydantic import ValidationError

from level5_discovery.corpus import Paper
from level5_discovery.literature import LiteratureConfig, generate_corpus
from level5_discovery.simulate import World, WorldConfig, generate_world
from level5_discovery.truth import Evaluator

GENE = re.compile(r"\bG\d{2,3}\b")


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(), seed=0)


@pytest.fixture(scope="module")
def papers(world: World) -> list[Paper]:
    return generate_corpus(world, LiteratureConfig(), seed=0)


def test_kind_shares_match_config(papers: list[Paper]) -> None:
    cfg = LiteratureConfig()
    counts = Counter(p.kind for p in papers)
    assert len(papers) == cfg.n_papers
    for kind in ("true", "noisy", "contradicting", "review", "irrelevant"):
        assert counts[kind] / cfg.n_papers == pytest.approx(getattr(cfg, f"{kind}_share"), abs=0.01)
    custom = LiteratureConfig(
        n_papers=1000,
        true_share=0.2,
        noisy_share=0.3,
        contradicting_share=0.2,
        review_share=0.1,
        irrelevant_share=0.2,
    )
    counts = Counter(p.kind for p in generate_corpus(generate_world(WorldConfig(), 1), custom, seed=1))
    assert counts == {"true": 200, "noisy": 300, "contradicting": 200, "review": 100, "irrelevant": 200}


def test_true_and_review_relations_are_true_edges(world: World, papers: list[Paper]) -> None:
    ev = Evaluator(world)
    for p in papers:
        if p.kind in ("true", "review"):
            assert p.relations and p.truth is True
            assert all(ev.is_true_edge(c, e, s) for c, e, s in p.relations)
            for c, e, _ in p.relations:  # the text names the genes verbatim
                assert c in p.text and e in p.text
    reviews = [p for p in papers if p.kind == "review"]
    assert any(len(p.relations) >= 2 for p in reviews)
    for p in reviews:  # a review chains findings along a path
        assert all(a[1] == b[0] for a, b in zip(p.relations, p.relations[1:], strict=False))


def test_noisy_papers_are_false_and_mostly_weak(world: World, papers: list[Paper]) -> None:
    ev = Evaluator(world)
    noisy = [p for p in papers if p.kind == "noisy"]
    assert noisy and all(p.truth is False for p in noisy)
    assert not any(ev.is_true_edge(c, e, s) for p in noisy for c, e, s in p.relations)
    wrong_sign = sum(ev.is_true_edge(c, e) for p in noisy for c, e, _ in p.relations)
    assert 0 < wrong_sign < len(noisy)  # both wrong signs and non-edges occur
    weak = sum(bool(re.search(r"n = 3|trend|preliminary|pilot|unreplicated", p.abstract)) for p in noisy)
    assert weak / len(noisy) > 0.6
    strong_true = [p for p in papers if p.kind == "true"]
    assert sum("n = 3" in p.abstract or "trend" in p.abstract for p in strong_true) == 0


def test_contradicting_papers_come_in_opposite_pairs(world: World, papers: list[Paper]) -> None:
    ev = Evaluator(world)
    by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in papers:
        if p.kind == "contradicting":
            assert len(p.relations) == 1
            c, e, s = p.relations[0]
            by_pair[(c, e)].append(s)
            assert p.truth is ev.is_true_edge(c, e, s)
    assert by_pair
    for signs in by_pair.values():
        assert signs.count("+") == signs.count("-") >= 1


def test_irrelevant_papers_state_nothing(papers: list[Paper]) -> None:
    irr = [p for p in papers if p.kind == "irrelevant"]
    assert irr
    for p in irr:
        assert p.relations == () and p.truth is None and not GENE.search(p.text)


def test_coverage_below_full(world: World, papers: list[Paper]) -> None:
    ev = Evaluator(world)
    true_edges = {(c, e) for c, e, _ in ev.true_edges()}
    reported = {(c, e) for p in papers if p.kind in ("true", "review") for c, e, _ in p.relations}
    coverage = len(reported & true_edges) / len(true_edges)
    assert 0.5 <= coverage < 0.8  # config 0.65: experiments are still needed


def test_wording_varies_and_ids(papers: list[Paper]) -> None:
    assert [p.id for p in papers[:3]] == ["P00001", "P00002", "P00003"]
    assert len({p.id for p in papers}) == len(papers)
    assert len({p.abstract for p in papers}) > 0.95 * len(papers)
    text = " ".join(p.abstract for p in papers)
    for phrase in ("activates", "represses", "transcript levels", "Overexpression of", "up-regulates"):
        assert phrase in text
    assert all(1995 <= p.year <= 2024 for p in papers)


def test_deterministic(world: World) -> None:
    a = generate_corpus(world, LiteratureConfig(n_papers=50), seed=3)
    b = generate_corpus(world, LiteratureConfig(n_papers=50), seed=3)
    c = generate_corpus(world, LiteratureConfig(n_papers=50), seed=4)
    assert a == b and a != c


def test_fast(world: World) -> None:
    t = time.perf_counter()
    generate_corpus(world, LiteratureConfig(), seed=0)
    assert time.perf_counter() - t < 1.0
    t = time.perf_counter()
    big = generate_corpus(world, LiteratureConfig(n_papers=20_000), seed=0)
    assert len(big) == 20_000 and big[-1].id == "P20000"
    assert time.perf_counter() - t < 6.0  # 100k in well under 30 s


def test_bad_config() -> None:
    with pytest.raises(ValidationError, match="sum to 1"):
        LiteratureConfig(true_share=0.9)
    with pytest.raises(ValidationError):
        LiteratureConfig(n_papers=10, bogus=1)  # type: ignore[call-arg]
