"""Constrained decoding: always parses, respects the allowed values, ranked by exact log-probability."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from level5_discovery.lm.decode import encode_prompt, encode_target, generate_hypotheses, score_continuations
from level5_discovery.lm.evaluation import compare_with_baseline, hypothesis_precision
from level5_discovery.lm.extraction import split_sentences
from level5_discovery.lm.hypotheses import Hypothesis, parse_hypothesis
from level5_discovery.lm.instructions import format_prompt, visible_context
from level5_discovery.lm.lora import lora_finetune
from level5_discovery.tests.test_lm import GENES, TINY, tiny_setup


@pytest.fixture(scope="module")
def tuned() -> dict[str, Any]:
    setup = tiny_setup()
    setup["peft"], _ = lora_finetune(
        copy.deepcopy(setup["model"]), setup["tok"], setup["pairs"], TINY, seed=0
    )
    return setup


def test_constrained_outputs_always_parse_and_respect_the_context(tuned: dict[str, Any]) -> None:
    for ctx in tuned["contexts"]:
        hyps = generate_hypotheses(
            tuned["peft"], tuned["tok"], ctx, GENES, n=3, passage_words=30, max_passages=3
        )
        ids = [pid for pid, _ in ctx[:3]]
        named = [g for g in GENES if any(g in text for _, text in visible_context(ctx, 30, 3))]
        assert len(hyps) == 3
        for h in hyps:
            assert parse_hypothesis(h.to_json(), genes=named, evidence_ids=ids) is not None
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len({(h.cause, h.effect, h.sign) for h in hyps}) == 3


def test_text_scores_are_exact_log_probabilities(tuned: dict[str, Any]) -> None:
    model, tok, ctx = tuned["peft"], tuned["tok"], tuned["contexts"][0]
    hyp = generate_hypotheses(model, tok, ctx, GENES, n=1, passage_words=30, max_passages=3, rank_by="text")[
        0
    ]
    prompt = encode_prompt(tok, format_prompt(visible_context(ctx, 30, 3)), 256)
    (exact,) = score_continuations(model, prompt, [encode_target(tok, hyp.to_json())])
    assert hyp.score == pytest.approx(exact, abs=1e-4)


def test_claim_scores_bound_their_full_text_and_cite_grounded_passages(tuned: dict[str, Any]) -> None:
    # A claim's probability sums over its citations, so it is at least that of its most likely full text.
    model, tok = tuned["peft"], tuned["tok"]
    for ctx in tuned["contexts"][:4]:
        visible = visible_context(ctx, 30, 3)
        prompt = encode_prompt(tok, format_prompt(visible), 256)
        kw: dict[str, Any] = {"passage_words": 30, "max_passages": 3, "rank_by": "claim"}
        hyps = generate_hypotheses(model, tok, ctx, GENES, n=2, **kw)
        texts = dict(visible)
        for hyp in hyps:
            (full,) = score_continuations(model, prompt, [encode_target(tok, hyp.to_json())])
            assert hyp.score >= full - 1e-4
            for pid in hyp.evidence:
                assert any(
                    re.search(rf"\b{hyp.cause}\b", sentence) and re.search(rf"\b{hyp.effect}\b", sentence)
                    for sentence in split_sentences(texts[pid])
                )


def test_decoding_is_deterministic_and_seeded_sampling_varies(tuned: dict[str, Any]) -> None:
    model, tok, ctx = tuned["peft"], tuned["tok"], tuned["contexts"][1]
    assert generate_hypotheses(model, tok, ctx, GENES, n=3, seed=0) == generate_hypotheses(
        model, tok, ctx, GENES, n=3, seed=0
    )
    a = [generate_hypotheses(model, tok, ctx, GENES, n=3, seed=s, temperature=5.0) for s in range(4)]
    assert a[0] == generate_hypotheses(model, tok, ctx, GENES, n=3, seed=0, temperature=5.0)
    assert len({tuple(h) for h in a}) > 1


def test_hypothesis_precision_known_values() -> None:
    hyps = [
        Hypothesis("G01", "G02", "+", ("P1",)),
        Hypothesis("G02", "G03", "-", ("P1",)),
        Hypothesis("G01", "G02", "+", ("P2",)),
        Hypothesis("G03", "G01", "+", ("P3",)),
    ]
    out = hypothesis_precision(
        hyps, [("G01", "G02"), ("G02", "G03")], [("G01", "G02", "+"), ("G02", "G03", "+")]
    )
    assert out == {"n": 3.0, "precision": 2 / 3, "signed_precision": 1 / 3}


def test_compare_with_baseline_reports_parse_rates(tuned: dict[str, Any]) -> None:
    truth = sorted({p.relations[0][:2] for p in tuned["papers"]})
    res = compare_with_baseline(
        tuned["peft"],
        tuned["tok"],
        tuned["contexts"][:4],
        GENES,
        truth,
        n=1,
        passage_words=30,
        max_passages=3,
    )
    assert res["constrained_parse_rate"] == 1.0 and res["n_contexts"] == 4
    assert 0.0 <= res["free_parse_rate"] <= 1.0 and res["lm"]["n"] >= 1
