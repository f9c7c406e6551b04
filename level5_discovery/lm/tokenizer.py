"""A byte-level BPE tokenizer trained on the corpus, with gene names kept as single tokens."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from level5_discovery.lm.config import LMConfig

PAD = "<|pad|>"
EOS = "<|endoftext|>"
# Hypotheses are JSON; abstracts never contain its punctuation, so a few skeletons join the training texts
# to give the keys and delimiters merged tokens (a target of ~20 tokens instead of ~60 single bytes).
_SKELETONS = tuple(
    f'Hypothesis: {{"cause": "X", "effect": "Y", "sign": "{s}", "evidence": ["P00001"{more}]}}'
    for s in ("+", "-")
    for more in ("", ', "P00002"')
)


def gene_tokens(texts: Iterable[str], pattern: str) -> list[str]:
    """Distinct gene-like names in `texts` (sorted), e.g. ``G07``, matched by `pattern`."""
    rx = re.compile(pattern)
    found: set[str] = set()
    for text in texts:
        found.update(rx.findall(text))
    return sorted(found)


def train_tokenizer(
    texts: Sequence[str], cfg: LMConfig, *, extra_tokens: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it for ``transformers``.

    Gene names (found by ``cfg.gene_pattern`` plus `extra_tokens`, e.g. every gene of the world even
    those no paper names) are added as whole tokens, so ``G07`` is one unit wherever it appears: in an
    abstract after a space and in a JSON hypothesis after a quote.

    Args:
        texts: Training texts (abstracts).
        cfg: Vocabulary size and gene pattern.
        extra_tokens: Names to add as single tokens besides those found in the texts.

    Returns:
        A fast tokenizer with ``pad_token`` and ``eos_token`` set.
    """
    if not texts:
        raise ValueError("cannot train a tokenizer on no texts")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) + list(_SKELETONS) * 20, trainer=trainer)
    genes = sorted(set(gene_tokens(texts, cfg.gene_pattern)) | set(extra_tokens))
    tok.add_tokens([AddedToken(g, normalized=False, single_word=True) for g in genes])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=EOS
    )
