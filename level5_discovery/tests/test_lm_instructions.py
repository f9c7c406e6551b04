"""Instruction pairs for LoRA: training questions, held-out contexts, grounding, support weights."""

from __future__ import annotations

import re

from level5_discovery.features import training_questions
from level5_discovery.hypothesise import gene_questions
from level5_discovery.lm.decode import evidence_sets, grounded_pairs
from level5_discovery.lm.instructions import context_targets, disjoint_contexts

GENES = [f"G{i}" for i in range(1, 13)]  # G1 and G10-G12: a name that is a prefix of others


def test_training_questions_name_two_genes_and_are_never_the_agents_questions() -> None:
    questions = training_questions(GENES, limit=50, seed=3)
    agent = {q for g in GENES for q in gene_questions(g)}
    assert len(questions) == 50 and len(set(questions)) == 50
    for q in questions:
        named = re.findall(r"\bG\d+\b", q)
        assert len(set(named)) == 2 and q not in agent
    assert questions == training_questions(GENES, limit=50, seed=3)
    assert questions != training_questions(GENES, limit=50, seed=4)


def test_training_questions_draw_both_directions_of_pairs() -> None:
    # The wording must not hint at which gene is upstream: the first-named gene is drawn per pair.
    questions = training_questions(GENES, limit=10_000, seed=0, templates=("Does {a} regulate {b}?",))
    first = [re.findall(r"\bG\d+\b", q) for q in questions]
    assert len(questions) == len(GENES) * (len(GENES) - 1) // 2
    assert 0.3 < sum(int(a[1:]) < int(b[1:]) for a, b in first) / len(first) < 0.7


def test_disjoint_contexts_drop_held_out_prompts_in_any_order_and_repeats() -> None:
    def ctx(*ids: str) -> list[tuple[str, str]]:
        return [(i, f"text of {i}") for i in ids]

    held = [ctx("P1", "P2", "P3")]
    candidates = [ctx("P3", "P1", "P2"), ctx("P1", "P2", "P4"), ctx("P1", "P2", "P4"), ctx("P2", "P4", "P1")]
    kept = disjoint_contexts(candidates, held, max_passages=3)
    assert [[pid for pid, _ in c] for c in kept] == [["P1", "P2", "P4"], ["P2", "P4", "P1"]]
    # Only the visible passages count: a fourth passage beyond max_passages does not make it new.
    assert disjoint_contexts([ctx("P1", "P2", "P3", "P9")], held, max_passages=3) == []


def test_grounded_pairs_need_both_genes_in_one_sentence() -> None:
    context = [
        ("A", "G1 activates G10. G2 was measured."),
        ("B", "G2 is studied here; G10 represses G1 in liver."),
        ("C", "We find that G1 and G2 change together with G11"),
    ]
    pairs = grounded_pairs(context, GENES)
    assert pairs[("G1", "G10")] == (0, 1) and pairs[("G10", "G1")] == (0, 1)
    assert pairs[("G1", "G2")] == (2,) and pairs[("G2", "G11")] == (2,)
    assert ("G2", "G10") not in pairs  # named in passage B, but in different clauses
    assert grounded_pairs([("A", "G1 alone. G10 alone.")], GENES) == {}
    assert evidence_sets((0, 1, 3), 2) == [(0,), (1,), (3,), (0, 1), (0, 3), (1, 3)]


def test_context_targets_count_a_hedged_statement_half() -> None:
    # Gene names as the lexicon extractor reads them (two or three digits).
    context = [
        ("P1", "A pilot study (n = 3) suggests a trend: G01 activates G02."),
        ("P2", "Preliminary data: G01 activates G02, a trend."),
        ("P3", "G03 represses G04 in every replicate."),
    ]
    relations = {"P1": (("G01", "G02", "+"),), "P2": (("G01", "G02", "+"),), "P3": (("G03", "G04", "-"),)}
    targets = context_targets(context, relations)
    # Two hedged statements (1.0 in all) tie one firm statement: the firm one is ranked by its passage.
    assert [t for t, _ in targets] == [("G01", "G02", "+"), ("G03", "G04", "-")]
    firm = [("P3", "G03 represses G04 in every replicate."), *context[:2]]
    assert next(t for t, _ in context_targets(firm, relations)) == ("G03", "G04", "-")
    three = [*context, ("P4", "A pilot: G01 activates G02, a trend (n = 3).")]
    relations["P4"] = (("G01", "G02", "+"),)
    assert context_targets(three, relations)[0] == (("G01", "G02", "+"), ("P1", "P2", "P4"))
