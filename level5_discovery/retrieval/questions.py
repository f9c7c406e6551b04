"""Evaluation questions from the hidden world, with the papers that answer them.

Questions paraphrase the literature on purpose: their verbs ("boost", "dampen", "govern", "lies
upstream of") are not the abstracts' verbs ("activates", "represses", "up-regulates"), so an
exact-term ranker gets the gene names and misses the meaning, and a dense one the reverse. A
paper is relevant to a question when its hidden ``relations`` state the relation asked about
(any sign: a paper claiming the opposite sign still answers "does A dampen B?").
For evaluation only: it reads the papers' hidden labels and, optionally, the world's truth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from level5_discovery.corpus import Paper
    from level5_discovery.truth import Evaluator

QuestionKind = Literal["pair", "upstream", "downstream"]

_PAIR_UP = (
    "Does {c} boost {e}?",
    "Is {e} raised when {c} is more abundant?",
    "Would extra {c} lift the level of {e}?",
    "Is {c} a positive driver of {e}?",
)
_PAIR_DOWN = (
    "Does {c} dampen {e}?",
    "Is {e} lowered when {c} is more abundant?",
    "Would extra {c} push the level of {e} down?",
    "Is {c} a brake on {e}?",
)
_UPSTREAM = (
    "What controls {e}?",
    "Which genes govern {e}?",
    "What acts upstream of {e}?",
    "Which regulators feed into {e}?",
)
_DOWNSTREAM = (
    "What does {c} control?",
    "Which genes are governed by {c}?",
    "What lies downstream of {c}?",
    "Which targets respond to {c}?",
)


@dataclass(frozen=True)
class Question:
    """A question, the ids of the papers that answer it, and what it asks about."""

    text: str
    relevant_ids: tuple[str, ...]
    kind: QuestionKind
    genes: tuple[str, ...]


def _relation_index(
    papers: Sequence[Paper], evaluator: Evaluator | None
) -> dict[QuestionKind, dict[tuple[str, ...], set[str]]]:
    found: dict[QuestionKind, dict[tuple[str, ...], set[str]]] = {
        "pair": defaultdict(set),
        "upstream": defaultdict(set),
        "downstream": defaultdict(set),
    }
    for paper in papers:
        for cause, effect, _sign in paper.relations:
            if evaluator is not None and not evaluator.is_true_edge(cause, effect):
                continue
            found["pair"][(cause, effect)].add(paper.id)
            found["upstream"][(effect,)].add(paper.id)
            found["downstream"][(cause,)].add(paper.id)
    return found


def _pair_sign(papers: Sequence[Paper], cause: str, effect: str, evaluator: Evaluator | None) -> str:
    if evaluator is not None:
        return "+" if evaluator.is_true_edge(cause, effect, "+") else "-"
    signs = [s for p in papers for c, e, s in p.relations if (c, e) == (cause, effect)]
    return "-" if signs.count("-") > signs.count("+") else "+"


def generate_questions(
    papers: Sequence[Paper],
    *,
    n: int = 60,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    kinds: Sequence[QuestionKind] = ("pair", "upstream", "downstream"),
) -> list[Question]:
    """Paraphrased questions about the relations the papers state, with their relevant papers.

    Args:
        papers: The corpus, with its hidden ``relations``.
        n: Most questions returned (fewer when the corpus states fewer relations).
        seed: Picks the relations and the wording.
        evaluator: When given, only relations that are true edges of the world are asked about,
            and pair questions use the true sign.
        kinds: ``pair`` ("does A dampen B?"), ``upstream`` ("what controls B?"),
            ``downstream`` ("what does A control?"); taken in turn.

    Returns:
        Questions in a seeded order; each has at least one relevant paper.
    """
    rng = np.random.default_rng(seed)
    found = _relation_index(papers, evaluator)
    pools = {}
    for kind in kinds:
        keys = sorted(found[kind])
        pools[kind] = [keys[i] for i in rng.permutation(len(keys))]
    questions: list[Question] = []
    while len(questions) < n and any(pools.values()):
        for kind in kinds:
            if not pools[kind] or len(questions) >= n:
                continue
            key = pools[kind].pop()
            questions.append(_question(kind, key, found, papers, evaluator, rng))
    return questions


def _question(
    kind: QuestionKind,
    key: tuple[str, ...],
    found: dict[QuestionKind, dict[tuple[str, ...], set[str]]],
    papers: Sequence[Paper],
    evaluator: Evaluator | None,
    rng: np.random.Generator,
) -> Question:
    if kind == "pair":
        cause, effect = key
        up = _pair_sign(papers, cause, effect, evaluator) == "+"
        templates = _PAIR_UP if up else _PAIR_DOWN
        text = templates[int(rng.integers(len(templates)))].format(c=cause, e=effect)
    elif kind == "upstream":
        text = _UPSTREAM[int(rng.integers(len(_UPSTREAM)))].format(e=key[0])
    else:
        text = _DOWNSTREAM[int(rng.integers(len(_DOWNSTREAM)))].format(c=key[0])
    return Question(text, tuple(sorted(found[kind][key])), kind, key)
