"""Evaluation questions from hidden relations, retrieval metrics on a known case, hybrid vs. its halves."""

from __future__ import annotations

from typing import Any

import pytest

from level5_discovery.corpus import Paper
from level5_discovery.retrieval import HybridIndex, RetrievalConfig, load_encoder
from level5_discovery.retrieval.evaluation import evaluate_retrieval
from level5_discovery.retrieval.questions import Question, generate_questions
from level5_discovery.retrieval.text import stem, tokenize

# Per seed, `evaluate_retrieval`'s {mode: {metric: value}}.
Scores = list[dict[str, dict[str, float]]]

PAPERS = [
    Paper("P1", 2001, "A", "G01 activates G02 in liver.", relations=(("G01", "G02", "+"),)),
    Paper("P2", 2002, "B", "G01 represses G02 in muscle.", relations=(("G01", "G02", "-"),)),
    Paper("P3", 2003, "C", "G03 inhibits G02 in blood.", relations=(("G03", "G02", "-"),)),
    Paper("P4", 2004, "D", "G01 induces G04 in skin.", relations=(("G01", "G04", "+"),)),
    Paper("P5", 2005, "E", "Rainfall rose along the coast.", kind="irrelevant"),
]


class OnlyEdges:
    """The one method of `truth.Evaluator` the generator uses, over a hand-made edge set."""

    def __init__(self, edges: dict[tuple[str, str], str]) -> None:
        self.edges = edges

    def is_true_edge(self, cause: str, effect: str, sign: str | None = None) -> bool:
        return (cause, effect) in self.edges and sign in (None, self.edges[(cause, effect)])


@pytest.fixture(scope="module")
def encoder() -> Any:
    return load_encoder("cpu")


def test_questions_carry_the_papers_stating_each_relation() -> None:
    qs = generate_questions(PAPERS, n=100, seed=0)
    by_key = {(q.kind, q.genes): q for q in qs}
    assert len(qs) == 3 + 2 + 2  # pairs (G01,G02) (G03,G02) (G01,G04); upstream G02 G04; downstream G01 G03
    assert by_key[("pair", ("G01", "G02"))].relevant_ids == ("P1", "P2")  # either sign answers the question
    assert by_key[("upstream", ("G02",))].relevant_ids == ("P1", "P2", "P3")
    assert by_key[("downstream", ("G01",))].relevant_ids == ("P1", "P2", "P4")
    assert by_key[("downstream", ("G03",))].relevant_ids == ("P3",)
    assert [q.kind for q in qs[:3]] == ["pair", "upstream", "downstream"]  # kinds taken in turn
    assert generate_questions(PAPERS, n=100, seed=0) == qs  # seeded
    assert len(generate_questions(PAPERS, n=2, seed=0)) == 2
    # Paraphrased: no question shares a verb stem with the abstracts.
    verbs = {stem(v) for v in ("activates", "represses", "inhibits", "induces")}
    for q in qs:
        assert q.genes[0] in q.text and not verbs.intersection(tokenize(q.text))


def test_questions_from_the_hidden_world_ask_only_true_edges_with_the_true_sign() -> None:
    truth = OnlyEdges({("G01", "G02"): "-", ("G01", "G04"): "+"})
    qs = generate_questions(PAPERS, n=100, seed=3, evaluator=truth)  # type: ignore[arg-type]
    assert {q.genes for q in qs if q.kind == "pair"} == {("G01", "G02"), ("G01", "G04")}
    assert {q.genes for q in qs if q.kind == "upstream"} == {("G02",), ("G04",)}
    assert next(q for q in qs if q.kind == "upstream" and q.genes == ("G02",)).relevant_ids == ("P1", "P2")
    pair = next(q for q in qs if q.genes == ("G01", "G02"))
    down_words = {"dampen", "lower", "push", "brake"}
    assert down_words.intersection(w.lower().strip("?") for w in pair.text.split())


def test_evaluate_retrieval_on_a_known_case(encoder: Any) -> None:
    index = HybridIndex.build(PAPERS, RetrievalConfig(), encoder=encoder)
    questions = [
        Question("G03 G02", ("P3",), "pair", ("G03", "G02")),  # BM25: P3 holds both, first
        Question("G04", ("P4",), "upstream", ("G04",)),  # BM25: only P4 holds G04
        Question(
            "rainfall coast", ("P1",), "pair", ("G01", "G02")
        ),  # deliberately wrong label: P1 is far down
    ]
    scores = evaluate_retrieval(index, questions, k=1)
    bm25 = scores["bm25"]
    assert bm25["recall@1"] == pytest.approx(2 / 3)
    assert bm25["mrr"] == pytest.approx(2 / 3)  # 1 + 1 + 0 (P1 has no rainfall/coast token: not retrieved)
    assert set(scores) == {"hybrid", "bm25", "dense"}
    assert scores["dense"]["mrr"] < 1.0  # P1 is never the closest to "rainfall coast"


@pytest.fixture(scope="module")
def quick_scores(encoder: Any) -> Scores:
    """Recall@5 and MRR per mode on the quick profile's world and corpus, seeds 0, 1 and 2.

    The benchmark's own measurement (`bench_level5.py --parts quality`): 60 questions per seed about
    true edges, every mode ranked 50 deep.
    """
    from level5_discovery.config import DiscoveryConfig
    from level5_discovery.literature import generate_corpus
    from level5_discovery.simulate import generate_world
    from level5_discovery.truth import Evaluator

    cfg = DiscoveryConfig(profile="quick", show_progress=False)
    rows = []
    for seed in (0, 1, 2):
        world = generate_world(cfg.world, seed)
        papers = generate_corpus(world, cfg.literature, seed)
        index = HybridIndex.build(papers, cfg.section("retrieval", RetrievalConfig), encoder=encoder)
        questions = generate_questions(papers, n=60, seed=seed, evaluator=Evaluator(world))
        assert len(questions) >= 40
        rows.append(evaluate_retrieval(index, questions, k=5))
    return rows


def _mean(rows: Scores, mode: str, metric: str) -> float:
    return sum(r[mode][metric] for r in rows) / len(rows)


@pytest.mark.slow
def test_hybrid_beats_each_half_on_mrr_on_the_quick_profile(quick_scores: Scores) -> None:
    """The issue's target, averaged over the benchmark's seeds 0-2 (the fusion was chosen on seeds 10-39).

    Measured: MRR hybrid 0.826, BM25 0.804, dense 0.801; the asserted margin over each half is 0.01.
    Per seed it does not hold (seed 1: hybrid 0.812, BM25 0.821): ~50 questions per seed and the
    halves' many tied scores move a seed's MRR by about 0.02, so no single seed is asserted.
    """
    hybrid = _mean(quick_scores, "hybrid", "mrr")
    assert hybrid >= _mean(quick_scores, "bm25", "mrr") + 0.01
    assert hybrid >= _mean(quick_scores, "dense", "mrr") + 0.01


@pytest.mark.slow
def test_hybrid_recall_matches_bm25_and_beats_dense_on_the_quick_profile(quick_scores: Scores) -> None:
    """Recall@5 over seeds 0-2: hybrid 0.302, BM25 0.304, dense 0.265 (with k = 60 and equal weights the
    hybrid had 0.291). It does not beat BM25 by a margin worth asserting: neither half reads a
    relation's direction (README, section 2). So: fusion costs no recall against BM25 (0.005 of
    slack) and keeps a clear margin over dense."""
    hybrid = _mean(quick_scores, "hybrid", "recall@5")
    assert hybrid >= _mean(quick_scores, "bm25", "recall@5") - 0.005
    assert hybrid >= _mean(quick_scores, "dense", "recall@5") + 0.02
