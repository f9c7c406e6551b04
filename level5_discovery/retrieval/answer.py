"""Extractive answers with citations: the retrieved sentences that mention the question's genes."""

from __future__ import annotations

from dataclasses import dataclass

from level5_discovery.retrieval.index import HybridIndex, Mode
from level5_discovery.retrieval.text import gene_mentions, split_sentences, tokenize


@dataclass(frozen=True)
class Evidence:
    """One sentence an answer rests on, with the paper it comes from and that paper's rank."""

    paper_id: str
    sentence: str
    rank: int


@dataclass(frozen=True)
class Answer:
    """An extractive answer: ``text`` quotes each sentence followed by ``[paper id]``."""

    text: str
    citations: tuple[str, ...]
    evidence: tuple[Evidence, ...]


def answer(
    index: HybridIndex, question: str, k: int = 5, *, mode: Mode = "hybrid", max_sentences: int = 6
) -> Answer:
    """Answer ``question`` from the top ``k`` passages, citing the paper of every sentence used.

    A sentence is used when it mentions a gene named in the question; sentences naming more of
    the question's genes come first, then by passage rank and position. A question without gene
    names falls back to sentences sharing a content word with it.

    Args:
        index: The retrieval index.
        question: Free text.
        k: Passages retrieved.
        mode: Retrieval mode.
        max_sentences: Most sentences quoted.

    Returns:
        The answer; when no passage supports one, ``citations`` is empty and ``text`` says so.
    """
    hits = index.search(question, k, mode)
    genes = set(gene_mentions(question))
    words = set(tokenize(question)) - genes
    scored: list[tuple[int, int, int, Evidence]] = []
    for hit in hits:
        for pos, sentence in enumerate(split_sentences(hit.text)):
            if genes:
                overlap = len(genes.intersection(gene_mentions(sentence)))
            else:
                overlap = len(words.intersection(tokenize(sentence)))
            if overlap:
                scored.append((-overlap, hit.rank, pos, Evidence(hit.paper_id, sentence, hit.rank)))
    scored.sort(key=lambda item: item[:3])
    evidence = tuple(item[3] for item in scored[:max_sentences])
    if not evidence:
        what = ", ".join(sorted(genes)) if genes else "the question's terms"
        return Answer(f"No retrieved passage mentions {what}.", (), ())
    citations = tuple(dict.fromkeys(e.paper_id for e in evidence))
    text = " ".join(f"{e.sentence} [{e.paper_id}]" for e in evidence)
    return Answer(text, citations, evidence)
