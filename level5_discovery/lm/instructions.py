"""Instruction pairs: retrieved passages -> the hypothesis those passages state (never hidden truth)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from level5_discovery.lm.extraction import HEDGED_WEIGHT, Relation, extract_relations
from level5_discovery.lm.hypotheses import format_hypothesis

Triple = tuple[str, str, str]
PROMPT_END = "Hypothesis:"


@dataclass(frozen=True)
class InstructionPair:
    """A prompt (context passages + ``Hypothesis:``) and its target JSON (without the leading space)."""

    prompt: str
    target: str


def context_items(hits: Sequence[Any]) -> list[tuple[str, str]]:
    """``(paper_id, text)`` pairs from retrieval hits (``.paper_id``), papers (``.id``) or tuples."""
    out: list[tuple[str, str]] = []
    for h in hits:
        if isinstance(h, tuple):
            out.append((str(h[0]), str(h[1])))
        elif hasattr(h, "paper_id"):
            out.append((str(h.paper_id), str(h.text)))
        else:
            out.append((str(h.id), str(h.text)))
    return out


def visible_context(hits: Sequence[Any], passage_words: int, max_passages: int) -> list[tuple[str, str]]:
    """The first `max_passages` hits, each cut to its first `passage_words` words (what the LM sees)."""
    return [(pid, " ".join(text.split()[:passage_words])) for pid, text in context_items(hits)[:max_passages]]


def format_prompt(context: Sequence[tuple[str, str]]) -> str:
    """One ``[id] text`` line per passage, then ``Hypothesis:``."""
    return "".join(f"[{pid}] {text}\n" for pid, text in context) + PROMPT_END


def stated_relations(papers: Sequence[Any]) -> dict[str, tuple[Triple, ...]]:
    """Paper id -> the relations its text states: the corpus's ``relations`` field when it has one (the
    generator writes what the text says), else what the lexicon extractor reads in the text."""
    out: dict[str, tuple[Triple, ...]] = {}
    for p in papers:
        rels = tuple(getattr(p, "relations", ()) or ())
        if not rels:
            rels = tuple((r.cause, r.effect, r.sign) for r in extract_relations([(p.id, p.text)]))
        out[str(p.id)] = tuple((str(c), str(e), str(s)) for c, e, s in rels)
    return out


def _mentions(text: str, gene: str) -> bool:
    return re.search(rf"\b{re.escape(gene)}\b", text) is not None


def firmness(stated: Sequence[Relation], relation: Triple) -> float:
    """How firmly a passage states a relation: `HEDGED_WEIGHT` when every statement of it is hedged, else 1.

    Hedged means the sentence stating the link carries weak-evidence wording ("a trend", "n = 3",
    "preliminary"), read by the lexicon extractor; a link it does not find counts as firmly stated.

    Args:
        stated: What the extractor reads in the passage (`extract_relations` of it).
        relation: ``(cause, effect, sign)``.
    """
    found = [r.weak for r in stated if (r.cause, r.effect) == relation[:2]]
    return HEDGED_WEIGHT if found and all(found) else 1.0


def context_targets(
    context: Sequence[tuple[str, str]], relations: Mapping[str, Sequence[Triple]]
) -> list[tuple[Triple, tuple[str, ...]]]:
    """Relations the visible passages state, with the ids stating each, best-supported first.

    A relation counts for a passage only when both genes are visible in its (cut) text. Support is the
    number of passages stating it, a hedged statement counting half (`firmness`), as a careful
    reader weighs a pilot result against a replicated one; ties keep the rank order of the first
    passage stating it.
    """
    cites: dict[Triple, list[str]] = {}
    support: dict[Triple, float] = {}
    for pid, text in context:
        stated: list[Relation] | None = None  # read once per passage, only when it counts
        for rel in relations.get(pid, ()):
            if (
                rel[2] in ("+", "-")
                and rel[0] != rel[1]
                and _mentions(text, rel[0])
                and _mentions(text, rel[1])
            ):
                ids = cites.setdefault(rel, [])
                if pid not in ids:
                    ids.append(pid)
                    if stated is None:
                        stated = extract_relations([(pid, text)])
                    support[rel] = support.get(rel, 0.0) + firmness(stated, rel)
    order = sorted(cites, key=lambda r: -support[r])  # stable: rank order among ties
    return [(r, tuple(cites[r])) for r in order]


def instruction_pairs(
    contexts: Sequence[Sequence[Any]],
    relations: Mapping[str, Sequence[Triple]],
    *,
    passage_words: int = 70,
    max_passages: int = 4,
    max_targets: int = 2,
    max_evidence: int = 2,
) -> list[InstructionPair]:
    """Instruction pairs from retrieved contexts.

    Args:
        contexts: One list of hits per query (retrieval output, papers or ``(id, text)`` pairs).
        relations: Paper id -> stated relations (see `stated_relations`); hidden truth never enters.
        passage_words: Words kept per passage.
        max_passages: Passages kept per context.
        max_targets: Pairs per context (its most-supported stated relations).
        max_evidence: Ids cited per target (the first stating passages).

    Returns:
        Pairs whose targets are canonical hypothesis JSON; contexts stating nothing give none.
    """
    pairs: list[InstructionPair] = []
    for hits in contexts:
        ctx = visible_context(hits, passage_words, max_passages)
        prompt = format_prompt(ctx)
        for (cause, effect, sign), ids in context_targets(ctx, relations)[:max_targets]:
            pairs.append(InstructionPair(prompt, format_hypothesis(cause, effect, sign, ids[:max_evidence])))
    return pairs


def disjoint_contexts(
    contexts: Sequence[Sequence[Any]],
    held_out: Sequence[Sequence[Any]],
    *,
    passage_words: int = 70,
    max_passages: int = 4,
) -> list[list[Any]]:
    """Training contexts whose visible passages never form a held-out context's prompt, each once.

    A context is compared by the set of passage ids the LM sees (`visible_context`), so a training
    context showing the same passages as an evaluation context, in any order, is dropped; so is a
    repeat of an earlier training context (same ids, same order: the same prompt).

    Args:
        contexts: Candidate training contexts (hits, papers or ``(id, text)`` pairs).
        held_out: Contexts the model is evaluated on.
        passage_words: Words kept per passage.
        max_passages: Passages kept per context.
    """

    def ids(hits: Sequence[Any]) -> tuple[str, ...]:
        return tuple(pid for pid, _ in visible_context(hits, passage_words, max_passages))

    banned = {frozenset(ids(h)) for h in held_out}
    seen: set[tuple[str, ...]] = set()
    out: list[list[Any]] = []
    for hits in contexts:
        key = ids(hits)
        if key and frozenset(key) not in banned and key not in seen:
            seen.add(key)
            out.append(list(hits))
    return out


def gene_contexts(
    papers: Sequence[Any], genes: Sequence[str], *, k: int = 4, seed: int = 0
) -> list[list[tuple[str, str]]]:
    """A lexical stand-in for retrieval: per gene, `k` papers naming it (seeded choice), best first.

    Papers naming the gene most often come first; used to build training contexts without an index.
    """
    rng = np.random.default_rng(seed)
    items = [(str(p.id), str(p.text)) for p in papers]
    out: list[list[tuple[str, str]]] = []
    for gene in genes:
        rx = re.compile(rf"\b{re.escape(gene)}\b")
        naming = [(len(rx.findall(text)), i) for i, (_, text) in enumerate(items) if rx.search(text)]
        if not naming:
            continue
        jitter = rng.random(len(naming))
        ranked = sorted(zip(naming, jitter, strict=True), key=lambda t: (-t[0][0], t[1]))
        out.append([items[i] for (_, i), _ in ranked[:k]])
    return out
