"""What the models learn from: the corpus turned into genes, contexts and instruction pairs.

Level 5's inputs are texts, not table columns, so its "features" are the units the language model
and the loop consume:

* the gene vocabulary of a corpus (`corpus_genes`): the world's genes, or the names a real
  corpus mentions;
* retrieved contexts, one per question the agent asks about each gene (`retrieval_contexts`);
* instruction pairs ``passages -> {"cause", "effect", "sign", "evidence"}`` built from what the
  passages *state*, never from the hidden truth (`training_pairs` on lexical contexts for
  training, `context_pairs` on any contexts, e.g. retrieved ones for held-out measurement);
* a seeded training / held-out split of abstracts (`split_texts`).

The measurements `discover` learns from are read by `measurements.py`; the reinforcement
learner's observation features live beside it in `rl/features.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from level5_discovery.corpus import Paper
from level5_discovery.hypothesise import gene_questions
from level5_discovery.lm.config import LMConfig
from level5_discovery.lm.instructions import (
    InstructionPair,
    gene_contexts,
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


def training_pairs(
    papers: Sequence[Paper], genes: Sequence[str], cfg: LMConfig, seed: int, n_draws: int = 4
) -> list[InstructionPair]:
    """Instruction pairs from lexical contexts (papers naming each gene, several seeded draws)."""
    contexts = [
        c for s in range(n_draws) for c in gene_contexts(papers, genes, k=cfg.context_passages, seed=seed + s)
    ]
    return context_pairs(contexts, papers, cfg)


def context_pairs(
    contexts: Sequence[Sequence[Any]], papers: Sequence[Paper], cfg: LMConfig
) -> list[InstructionPair]:
    return instruction_pairs(
        contexts,
        stated_relations(papers),
        passage_words=cfg.passage_words,
        max_passages=cfg.context_passages,
        max_evidence=cfg.max_evidence,
    )
