"""From the literature to weighted claims: retrieve per gene, propose, aggregate.

For every gene the agent asks two questions ("what regulates G07?", "what does G07 regulate?"),
retrieves passages, and lets a proposer turn each context into hypotheses: the LoRA-tuned LM
under constrained decoding, or the retrieval-only baseline that extracts relations from the top
passages with a lexicon. A proposer's hypotheses for one context are weighted by their share of
its probability mass (the LM's log-probabilities, softmax-normalised; equal shares for the
baseline); the same claim from several contexts combines as independent evidence (noisy-or), and
its citations are the union of the passages that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from level5_discovery.investigate import LiteratureClaim


class HypothesisLike(Protocol):
    """What a proposer returns (`lm.hypotheses.Hypothesis` is one)."""

    @property
    def cause(self) -> str: ...
    @property
    def effect(self) -> str: ...
    @property
    def sign(self) -> str: ...
    @property
    def evidence(self) -> tuple[str, ...]: ...
    @property
    def score(self) -> float: ...


Search = Callable[[str], Sequence[Any]]
Propose = Callable[[Sequence[Any]], Sequence[HypothesisLike]]


def gene_questions(gene: str) -> list[str]:
    """The two questions asked about every gene (upstream and downstream)."""
    return [f"Which genes regulate the expression of {gene}?", f"Which genes does {gene} regulate?"]


def context_weights(hypotheses: Sequence[HypothesisLike]) -> np.ndarray:
    """Each hypothesis's share of one context's probability mass (softmax of the log-probabilities)."""
    if not hypotheses:
        return np.zeros(0)
    scores = np.array([float(h.score) for h in hypotheses])
    scores = scores - scores.max()
    w = np.exp(scores)
    return np.asarray(w / w.sum())


def literature_claims(
    genes: Sequence[str],
    search: Search,
    propose: Propose,
    *,
    max_confidence: float = 0.9,
    on_gene: Callable[[str], None] | None = None,
) -> list[LiteratureClaim]:
    """Claims about every gene, each with its confidence and citations.

    Args:
        genes: Genes to ask about.
        search: Question -> passages (objects with ``paper_id`` and ``text``).
        propose: Passages -> hypotheses (LM or baseline).
        max_confidence: Literature alone never makes a claim certain.
        on_gene: Progress callback.

    Returns:
        One claim per distinct (cause, effect, sign), most confident first.
    """
    known = set(genes)
    miss: dict[tuple[str, str, str], float] = {}  # product of (1 - p): noisy-or
    cites: dict[tuple[str, str, str], list[str]] = {}
    for gene in genes:
        for question in gene_questions(gene):
            hyps = [h for h in propose(search(question)) if h.cause in known and h.effect in known]
            for h, w in zip(hyps, context_weights(hyps), strict=True):
                key = (h.cause, h.effect, h.sign)
                miss[key] = miss.get(key, 1.0) * (1.0 - float(w))
                bucket = cites.setdefault(key, [])
                bucket.extend(p for p in h.evidence if p not in bucket)
        if on_gene is not None:
            on_gene(gene)
    claims = [
        LiteratureClaim(c, e, s, tuple(cites[(c, e, s)]), min(max_confidence, 1.0 - m))
        for (c, e, s), m in miss.items()
    ]
    return sorted(claims, key=lambda c: (-c.confidence, c.cause, c.effect, c.sign))


def claim_precision(
    claims: Sequence[LiteratureClaim], true_signed: set[tuple[str, str, str]]
) -> dict[str, float]:
    """Share of claims that are true signed edges of the hidden world (evaluation only).

    Returns:
        ``precision`` over all claims, ``precision_top`` over the claims at least 0.5 confident,
        ``recall`` of the true edges among the claims, and the counts.
    """
    if not claims:
        return {"precision": 0.0, "precision_top": 0.0, "recall": 0.0, "n_claims": 0.0}
    hits = [(c.cause, c.effect, c.sign) in true_signed for c in claims]
    top = [h for h, c in zip(hits, claims, strict=True) if c.confidence >= 0.5]
    found = {(c.cause, c.effect, c.sign) for c, h in zip(claims, hits, strict=True) if h}
    return {
        "precision": float(np.mean(hits)),
        "precision_top": float(np.mean(top)) if top else 0.0,
        "recall": len(found) / len(true_signed) if true_signed else 0.0,
        "n_claims": float(len(claims)),
    }
