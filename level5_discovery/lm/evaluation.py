"""Scores of the hypothesis LM: parse rates, precision against given true edges, the extraction baseline."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from level5_discovery.lm.decode import generate_free, generate_hypotheses
from level5_discovery.lm.extraction import baseline_hypotheses
from level5_discovery.lm.hypotheses import Hypothesis, parse_hypothesis
from level5_discovery.lm.instructions import visible_context

Edge = tuple[str, str]
SignedEdge = tuple[str, str, str]


def hypothesis_precision(
    hypotheses: Sequence[Hypothesis], true_edges: Collection[Edge], true_signs: Collection[SignedEdge] = ()
) -> dict[str, float]:
    """Share of distinct hypotheses whose directed edge is true (and, given signs, whose sign is).

    Args:
        hypotheses: Predictions (duplicates of the same cause/effect/sign count once).
        true_edges: The caller's ``(cause, effect)`` truth (this module never reads the hidden world).
        true_signs: ``(cause, effect, sign)`` truth; empty to skip the signed precision.
    """
    distinct = {(h.cause, h.effect, h.sign) for h in hypotheses}
    edges, signed = set(true_edges), set(true_signs)
    n = len(distinct)
    out = {"n": float(n), "precision": sum((c, e) in edges for c, e, _ in distinct) / n if n else 0.0}
    if signed:
        out["signed_precision"] = sum(t in signed for t in distinct) / n if n else 0.0
    return out


def compare_with_baseline(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[Sequence[Any]],
    genes: Sequence[str],
    true_edges: Collection[Edge],
    true_signs: Collection[SignedEdge] = (),
    *,
    n: int = 1,
    seed: int = 0,
    free: bool = True,
    passage_words: int = 70,
    max_passages: int = 4,
) -> dict[str, Any]:
    """LM hypotheses against the retrieval-only extraction baseline on the same contexts.

    Returns:
        ``{"lm": precision dict, "baseline": precision dict, "constrained_parse_rate",
        "free_parse_rate" (when `free`), "n_contexts"}``; the baseline reads the same visible passages.
    """
    lm: list[Hypothesis] = []
    base: list[Hypothesis] = []
    parsed_constrained = parsed_free = 0
    for i, hits in enumerate(contexts):
        ctx = visible_context(hits, passage_words, max_passages)
        ids = [pid for pid, _ in ctx]
        hyps = generate_hypotheses(
            model,
            tokenizer,
            ctx,
            genes,
            n=n,
            seed=seed + i,
            passage_words=passage_words,
            max_passages=max_passages,
        )
        parsed_constrained += all(parse_hypothesis(h.to_json(), genes=genes, evidence_ids=ids) for h in hyps)
        lm.extend(hyps)
        base.extend(baseline_hypotheses(ctx, top=max_passages, n=n))
        if free:
            text = generate_free(
                model, tokenizer, ctx, passage_words=passage_words, max_passages=max_passages
            )
            parsed_free += parse_hypothesis(text, genes=genes, evidence_ids=ids) is not None
    m = max(1, len(contexts))
    out: dict[str, Any] = {
        "lm": hypothesis_precision(lm, true_edges, true_signs),
        "baseline": hypothesis_precision(base, true_edges, true_signs),
        "constrained_parse_rate": parsed_constrained / m,
        "n_contexts": len(contexts),
    }
    if free:
        out["free_parse_rate"] = parsed_free / m
    return out
