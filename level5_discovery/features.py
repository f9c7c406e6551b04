"""What the models learn from: the corpus turned into genes, contexts and instruction pairs.

Level 5's inputs are texts, not table columns, so its "features" are the units the language model
and the loop consume:

* the gene vocabulary of a corpus (`corpus_genes`): the world's genes, or the names a real
  corpus mentions;
* retrieved contexts, one per question the agent asks about each gene (`retrieval_contexts`);
* instruction pairs ``passages -> {"cause", "effect", "sign", "evidence"}`` built from what the
  passages *state*, never from the hidden truth (`training_pairs` on the retrieved contexts of
  training questions about gene pairs, disjoint from the agent's own questions and contexts;
  `context_pairs` on any contexts, e.g. the agent's for held-out measurement);
* a seeded training / held-out split of abstracts (`split_texts`).

The measurements `discover` learns from are read by `measurements.py`; the reinforcement
learner's observation features live beside it in `rl/features.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from level5_discovery.corpus import Paper
from level5_discovery.hypothesise import gene_questions
from level5_discovery.lm.config import LMConfig
from level5_discovery.lm.instructions import (
    InstructionPair,
    disjoint_contexts,
    instruction_pairs,
    stated_relations,
)
from level5_discovery.lm.tokenizer import gene_tokens
from level5_discovery.retrieval.index import HybridIndex
from shared.errors import EmptyDataError


def corpus_genes(papers: Sequence[Paper], pattern: str) -> tuple[str, ...]:
    """Gene names a corpus mentions (``LMConfig.gene_pattern``), sorted: the genes of a real corpus.

    Raises:
        EmptyDataError: No paper names a gene matching the pattern.
    """
    genes = tuple(sorted(set(gene_tokens([p.text for p in papers], pattern))))
    if len(genes) < 2:
        raise EmptyDataError(
            f"the corpus names fewer than two genes matching {pattern!r} (set lm.gene_pattern for your names)"
        )
    return genes


def retrieval_contexts(index: HybridIndex, genes: Sequence[str], k: int | None = None) -> list[list[Any]]:
    """One retrieved context per question the agent asks (upstream and downstream of every gene)."""
    questions = [q for g in genes for q in gene_questions(g)]
    return [list(hits) for hits in index.search_many(questions, k)]


def split_texts(texts: Sequence[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded split of abstracts into training and held-out texts (at least one held out)."""
    order = np.random.default_rng(seed).permutation(len(texts))
    n_held = max(1, round(holdout * len(texts))) if len(texts) > 1 else 0
    held = {int(i) for i in order[:n_held]}
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


# Questions about a pair of genes, worded two ways: the wordings rank passages differently, so one pair
# gives two training contexts. The agent's own questions (`gene_questions`) name a single gene.
PAIR_QUESTIONS = ("Does {a} regulate {b}?", "Is {b} controlled by {a}?")


def training_questions(
    genes: Sequence[str], *, limit: int, seed: int, templates: Sequence[str] = PAIR_QUESTIONS
) -> list[str]:
    """The questions instruction pairs are retrieved with: about pairs of genes, none the agent asks.

    Every template for every unordered pair of genes (each pair's order drawn at random, so the
    wording never hints at a direction), a seeded sample of `limit` questions when there are more.

    Args:
        genes: The gene vocabulary.
        limit: Most questions returned.
        seed: Seeds the pair orders and the sample.
        templates: Question wordings with ``{a}`` and ``{b}``.
    """
    rng = np.random.default_rng(seed)
    pairs = [
        (b, a) if flip else (a, b)
        for (a, b), flip in zip(
            itertools.combinations(genes, 2),
            rng.random(len(genes) * (len(genes) - 1) // 2) < 0.5,
            strict=True,
        )
    ]
    questions = [t.format(a=a, b=b) for a, b in pairs for t in templates]
    if len(questions) > limit:
        questions = [questions[i] for i in sorted(rng.choice(len(questions), size=limit, replace=False))]
    return questions


def training_pairs(
    papers: Sequence[Paper],
    genes: Sequence[str],
    index: HybridIndex,
    cfg: LMConfig,
    seed: int,
    *,
    held_out: Sequence[Sequence[Any]] = (),
) -> tuple[list[InstructionPair], dict[str, float]]:
    """Instruction pairs from retrieval contexts of the training questions, disjoint from `held_out`.

    The LM is asked about retrieved contexts, so it learns on retrieved contexts too (the index's
    top passages for `training_questions`); a context showing the same passages as a held-out
    (evaluation) context is dropped (`disjoint_contexts`), so training and evaluation share no
    question and no prompt.

    Returns:
        The pairs and counts: training questions, contexts kept, contexts dropped as held out or repeated.
    """
    questions = training_questions(genes, limit=cfg.train_questions, seed=seed)
    retrieved = [list(hits) for hits in index.search_many(questions)] if questions else []
    kept = disjoint_contexts(
        retrieved, held_out, passage_words=cfg.passage_words, max_passages=cfg.context_passages
    )
    counts = {
        "n_train_questions": float(len(questions)),
        "n_train_contexts": float(len(kept)),
        "n_train_contexts_dropped": float(len(retrieved) - len(kept)),
    }
    return context_pairs(kept, papers, cfg, max_targets=cfg.train_targets), counts


def context_pairs(
    contexts: Sequence[Sequence[Any]], papers: Sequence[Paper], cfg: LMConfig, *, max_targets: int = 2
) -> list[InstructionPair]:
    """Instruction pairs of `contexts`: their `max_targets` best-supported stated relations each."""
    return instruction_pairs(
        contexts,
        stated_relations(papers),
        passage_words=cfg.passage_words,
        max_passages=cfg.context_passages,
        max_targets=max_targets,
        max_evidence=cfg.max_evidence,
    )
