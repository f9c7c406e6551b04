"""Retrieval-only baseline: (cause, effect, sign) relations read from passages with a verb lexicon, no LM."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from level5_discovery.lm.hypotheses import Hypothesis

GENE = re.compile(r"\bG\d{2,3}\b")
_SENTENCE = re.compile(r"(?<=[.;!?])\s+")
# Verb stems: a stem at the start of a word between two gene names decides the sign of the link.
POSITIVE = (
    "activat",
    "up-regulat",
    "upregulat",
    "induc",
    "increas",
    "enhanc",
    "promot",
    "stimulat",
    "elevat",
    "rais",
    "boost",
    "driv",
    "potentiat",
    "augment",
    "amplif",
    "positively regulat",
)
NEGATIVE = (
    "repress",
    "inhibit",
    "silenc",
    "suppress",
    "down-regulat",
    "downregulat",
    "reduc",
    "decreas",
    "lower",
    "block",
    "attenuat",
    "dampen",
    "diminish",
    "abolish",
    "negatively regulat",
    "impair",
)
LOSS = re.compile(
    r"\b(loss|knock-?out|knock-?down|deletion|depletion|ablation|silencing|inhibition)\s+of\s+$|"
    r"\b(knocking\s+(out|down)|deleting|depleting|silencing)\s+$",
    re.IGNORECASE,
)
NEGATION = re.compile(
    r"\b(not|no|neither|nor|without|failed to|did not|does not|unchanged|unaffected)\b", re.I
)
WEAK = re.compile(
    r"\b(trend|n\s*=\s*[23]\b|weak|preliminary|suggest|may|might|modest|pilot|unreplicated|non-significant)",
    re.I,
)
# "We report inhibition of G05 by G02": a nominalised verb before the effect, the cause after "by".
NOUN = re.compile(r"(?<![a-z])([a-z-]+(?:\s+regulation)?)\s+of\s+(G\d{2,3})\s+by\s+(G\d{2,3})\b", re.I)


# A hedged statement ("a trend", "n = 3") weighs half a firm one when support is counted.
HEDGED_WEIGHT = 0.5


@dataclass(frozen=True)
class Relation:
    """A relation a passage states: cause, effect, sign, the paper id and whether it was hedged."""

    cause: str
    effect: str
    sign: str
    paper_id: str
    weak: bool = False


def _verb_sign(between: str) -> tuple[int, bool] | None:
    """(sign, passive) of the first lexicon verb in the text between two gene names, None if none."""
    low = between.lower()
    best: tuple[int, int, bool] | None = None
    for stems, sign in ((POSITIVE, 1), (NEGATIVE, -1)):
        for stem in stems:
            m = re.search(r"(?<![a-z])" + re.escape(stem), low)
            if m and (best is None or m.start() < best[0]):
                passive = bool(
                    re.search(r"\b(is|are|was|were|be|been)\s+\w*\s*$", low[: m.start()])
                ) and bool(re.search(r"\bby\b", low[m.start() :]))
                best = (m.start(), sign, passive)
    return None if best is None else (best[1], best[2])


def extract_sentence(sentence: str, paper_id: str) -> list[Relation]:
    """Relations stated in one sentence: each pair of consecutive gene names joined by a lexicon verb."""
    found = list(GENE.finditer(sentence))
    out: list[Relation] = []
    weak = bool(WEAK.search(sentence))
    for m in NOUN.finditer(sentence):
        verb = _verb_sign(m.group(1) + " ")
        if verb is not None and m.group(2) != m.group(3):
            out.append(Relation(m.group(3), m.group(2), "+" if verb[0] > 0 else "-", paper_id, weak))
    for a, b in itertools.pairwise(found):
        if a.group() == b.group():
            continue
        between = sentence[a.end() : b.start()]
        if NEGATION.search(between) or re.fullmatch(r"\s+by\s+", between):
            continue
        verb = _verb_sign(between)
        if verb is None:
            continue
        sign, passive = verb
        cause, effect = (b.group(), a.group()) if passive else (a.group(), b.group())
        # "loss of G03 reduced G11": removing the cause lowers the effect, so the link itself is positive.
        cause_match = b if passive else a
        if LOSS.search(sentence[: cause_match.start()][-40:]):
            sign = -sign
        out.append(Relation(cause, effect, "+" if sign > 0 else "-", paper_id, weak))
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences (and clauses after ``;``) of a passage, the unit a relation is stated in."""
    return _SENTENCE.split(text)


def _items(hits: Sequence[Any]) -> list[tuple[str, str]]:
    return [(str(h[0]), str(h[1])) if isinstance(h, tuple) else (str(h.paper_id), str(h.text)) for h in hits]


def extract_relations(context: Sequence[Any]) -> list[Relation]:
    """Relations stated in the passages of a context (hits or ``(id, text)`` pairs)."""
    out: list[Relation] = []
    for pid, text in _items(context):
        for sentence in split_sentences(text):
            out.extend(extract_sentence(sentence, pid))
    return out


def baseline_hypotheses(context: Sequence[Any], *, top: int = 3, n: int = 1) -> list[Hypothesis]:
    """Hypotheses of the retrieval-only baseline: relations from the `top` passages, most-supported first.

    Support counts the passages stating the same (cause, effect, sign), hedged statements counting half;
    ties keep the order of the best-ranked passage.
    """
    rels = extract_relations(list(context)[:top])
    support: dict[tuple[str, str, str], float] = {}
    cites: dict[tuple[str, str, str], list[str]] = {}
    for r in dict.fromkeys(rels):  # a passage stating a relation twice (title and text) counts once
        key = (r.cause, r.effect, r.sign)
        support[key] = support.get(key, 0.0) + (HEDGED_WEIGHT if r.weak else 1.0)
        if r.paper_id not in cites.setdefault(key, []):
            cites[key].append(r.paper_id)
    order = sorted(support, key=lambda k: -support[k])
    return [
        Hypothesis(c, e, "+" if s == "+" else "-", tuple(cites[(c, e, s)]), score=support[(c, e, s)])
        for c, e, s in order[:n]
    ]
