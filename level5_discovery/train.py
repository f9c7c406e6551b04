"""Train the level's models: the hybrid retrieval index and the hypothesis language model.

The language model learns the literature in two steps, as a domain LM would:

1. **Pretraining** (all weights): a byte-level BPE tokenizer trained on the abstracts, with every
   gene name a single token, and a small GPT-2 trained as a causal LM on 90 % of the abstracts;
   the other 10 % measure perplexity before and after.
2. **LoRA** (adapters only, peft): instruction pairs ``passages -> {"cause", "effect", "sign",
   "evidence"}`` built from what the passages *state* (never from the hidden truth), on the
   retrieval index's contexts for training questions about gene pairs; the contexts of the agent's
   own questions (the ones it will actually ask, two per gene) are held out of training and measure
   target perplexity.

``--base-model NAME`` swaps step 1's fresh model for any Hugging Face causal LM (a local folder or
a cached hub name): it is then pretrained further on the corpus (``pretrain_steps``, 0 to skip)
and tuned with LoRA by the same code.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from level5_discovery.corpus import Paper
from level5_discovery.features import context_pairs, retrieval_contexts, split_texts, training_pairs
from level5_discovery.lm.config import LMConfig
from level5_discovery.lm.decode import generate_hypotheses
from level5_discovery.lm.hypotheses import Hypothesis
from level5_discovery.lm.lora import load_adapter, lora_finetune, save_adapter, target_nll
from level5_discovery.lm.model import build_model, load_base_model, save_model
from level5_discovery.lm.pretrain import perplexity, pretrain
from level5_discovery.lm.tokenizer import train_tokenizer
from level5_discovery.retrieval.index import HybridIndex
from shared.atomic import atomic_write_json
from shared.errors import EmptyDataError, InputFileError
from shared.timing import Timer

LM_DIR = "lm"
BASE_DIR = "base"
ADAPTER_DIR = "adapter"
LM_META = "lm.json"
LOSSES = "losses.json"


@dataclass
class HypothesisModel:
    """The tuned LM with what it needs to propose: its tokenizer, the gene vocabulary, its settings."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    genes: tuple[str, ...]
    cfg: LMConfig

    def propose(self, hits: Sequence[Any], *, n: int = 2, seed: int = 0) -> list[Hypothesis]:
        """The `n` most likely hypotheses for one retrieved context (constrained decoding: all parse)."""
        return generate_hypotheses(
            self.model,
            self.tokenizer,
            hits,
            self.genes,
            n=n,
            seed=seed,
            beam=self.cfg.beam,
            max_evidence=self.cfg.max_evidence,
            passage_words=self.cfg.passage_words,
            max_passages=self.cfg.context_passages,
        )


@dataclass
class TrainResult:
    """A trained hypothesis model, its measurements and its loss curves."""

    model: HypothesisModel
    base: Any
    metrics: dict[str, float]
    losses: dict[str, list[float]] = field(default_factory=dict)


def _base(
    papers: Sequence[Paper], genes: Sequence[str], cfg: LMConfig, seed: int
) -> tuple[Any, PreTrainedTokenizerBase]:
    if cfg.base_model:
        return load_base_model(cfg.base_model)
    tokenizer = train_tokenizer([p.text for p in papers], cfg, extra_tokens=genes)
    return build_model(cfg, tokenizer, seed=seed), tokenizer


def train_hypothesis_model(
    papers: Sequence[Paper],
    genes: Sequence[str],
    index: HybridIndex,
    cfg: LMConfig,
    seed: int,
) -> TrainResult:
    """Pretrain (or load) the LM on the abstracts, then LoRA-tune it to propose cited hypotheses.

    Args:
        papers: The corpus (its ``relations`` field, when present, says what each text states).
        genes: Names hypotheses may use.
        index: The retrieval index; its contexts measure the tuned model on what it will be asked.
        cfg: Model, pretraining and LoRA settings (``base_model`` loads a Hugging Face LM instead).
        seed: One seed for the split, initialisation, batches and adapters.

    Returns:
        The tuned model with pretraining and LoRA measurements and loss curves.

    Raises:
        EmptyDataError: The corpus states no relation an instruction pair could teach.
        ConfigError: ``base_model`` is neither a local folder nor in the Hugging Face cache.
    """
    texts = [p.text for p in papers]
    train_texts, held_texts = split_texts(texts, 0.1, seed)
    model, tokenizer = _base(papers, genes, cfg, seed)
    metrics: dict[str, float] = {"pretrain_ppl_before": perplexity(model, tokenizer, held_texts)}
    with Timer() as t_pre:
        pre = pretrain(model, tokenizer, train_texts, cfg, seed) if cfg.pretrain_steps else {"losses": []}
    metrics["pretrain_seconds"] = t_pre.seconds
    metrics["pretrain_ppl_after"] = perplexity(model, tokenizer, held_texts)

    # The agent's questions (retrieval_contexts) are held out: LoRA trains on other questions'
    # contexts and never on a prompt the evaluation shows (features.training_pairs).
    held_contexts = retrieval_contexts(index, genes)
    pairs, counts = training_pairs(papers, genes, index, cfg, seed, held_out=held_contexts)
    if not pairs:
        raise EmptyDataError("no passage states a relation between two genes: nothing to tune the LM on")
    metrics.update(counts)
    held_pairs = context_pairs(held_contexts, papers, cfg) or pairs[: max(1, len(pairs) // 10)]
    metrics["target_ppl_before_lora"] = float(np.exp(target_nll(model, tokenizer, held_pairs)))
    with Timer() as t_lora, warnings.catch_warnings():
        # peft notes that GPT-2's Conv1D layers need fan_in_fan_out (it sets it); transformers
        # warns about a renamed attribute peft reads: neither is the user's to act on.
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        tuned, lora_losses = lora_finetune(copy.deepcopy(model), tokenizer, pairs, cfg, seed)
    metrics.update(
        {
            "lora_seconds": t_lora.seconds,
            "target_ppl_after_lora": float(np.exp(target_nll(tuned, tokenizer, held_pairs))),
            "n_params": float(sum(p.numel() for p in model.parameters())),
            "n_trainable": float(tuned.get_nb_trainable_parameters()[0]),
            "n_pairs": float(len(pairs)),
            "n_heldout_pairs": float(len(held_pairs)),
        }
    )
    return TrainResult(
        HypothesisModel(tuned, tokenizer, tuple(genes), cfg),
        model,
        metrics,
        {"pretrain": list(pre["losses"]), "lora": list(lora_losses)},
    )


def save_hypothesis_model(result: TrainResult, folder: Path) -> Path:
    """Write ``lm/base`` (pretrained model and tokenizer), ``lm/adapter``, ``lm.json`` and losses."""
    hm = result.model
    # The pretrained model before LoRA (peft injected its layers into a copy): the adapter loads onto it.
    save_model(result.base, hm.tokenizer, folder / BASE_DIR)
    save_adapter(hm.model, folder / ADAPTER_DIR)
    atomic_write_json(
        folder / LM_META, {"genes": list(hm.genes), "config": hm.cfg.model_dump(), "metrics": result.metrics}
    )
    atomic_write_json(folder / LOSSES, result.losses)
    return folder


def load_hypothesis_model(folder: Path, *, device: str | None = None) -> HypothesisModel:
    """The tuned model a run saved (`save_hypothesis_model`).

    Raises:
        InputFileError: The folder holds no saved hypothesis model.
    """
    meta_path = folder / LM_META
    if not meta_path.is_file():
        raise InputFileError(f"{folder}: no trained hypothesis model here (run `train` first)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    cfg = LMConfig.model_validate(meta["config"])
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    base, tokenizer = load_base_model(str(folder / BASE_DIR))
    model = load_adapter(base, folder / ADAPTER_DIR)
    return HypothesisModel(model, tokenizer, tuple(meta["genes"]), cfg)
