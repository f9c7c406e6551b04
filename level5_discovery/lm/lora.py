"""LoRA fine-tuning (peft) of a causal LM on instruction pairs, loss on the target tokens only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from level5_discovery.lm.config import LMConfig, resolve_device
from level5_discovery.lm.decode import context_limit, encode_prompt, encode_target
from level5_discovery.lm.instructions import InstructionPair
from level5_discovery.lm.pretrain import IGNORE, Batch, mean_nll, pad_batch, train_loop
from shared.atomic import atomic_dir


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[InstructionPair], limit: int
) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per pair: prompt tokens labelled ``-100``, target tokens (and EOS) kept."""
    out: list[tuple[list[int], list[int]]] = []
    for pair in pairs:
        prompt, target = encode_prompt(tokenizer, pair.prompt, limit), encode_target(tokenizer, pair.target)
        ids = (prompt + target)[:limit]
        out.append((ids, ([IGNORE] * len(prompt) + target)[:limit]))
    return out


def lora_config(cfg: LMConfig, trainable_tokens: Sequence[int] = ()) -> LoraConfig:
    """The peft config: rank, alpha, dropout, target modules (peft's default for the architecture when None).

    `trainable_tokens`: embedding rows trained beside the adapters (peft ``trainable_token_indices``):
    the hypothesis JSON uses tokens a model pretrained on abstracts never saw, whose embeddings
    (tied to the output layer) stay near their tiny initial values and cap their probability; low-rank
    updates of the attention cannot lift that cap, so those rows alone become trainable.
    """
    return LoraConfig(
        trainable_token_indices=list(trainable_tokens) or None,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def lora_finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[InstructionPair],
    cfg: LMConfig,
    seed: int,
) -> tuple[PeftModel, list[float]]:
    """Wrap `model` with LoRA adapters and train only them on `pairs`.

    The base weights are frozen (and left bit-identical); peft injects the adapters into `model` in place,
    so pass a copy when the plain base model is still needed.

    Args:
        model: Pretrained causal LM.
        tokenizer: Its tokenizer.
        pairs: Instruction pairs (prompt -> hypothesis JSON).
        cfg: LoRA rank/alpha/dropout/targets, steps, batch size, learning rate, device.
        seed: Same seed, same adapter on CPU.

    Returns:
        The peft model (adapters trained, in eval mode) and the per-step losses.
    """
    if not pairs:
        raise ValueError("no instruction pairs to fine-tune on")
    device = resolve_device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # adapter initialisation (A is random, B starts at zero)
        encoded = encode_pairs(tokenizer, pairs, context_limit(model))
        tokens = (
            sorted({t for _, labels in encoded for t in labels if t != IGNORE})
            if cfg.lora_train_tokens
            else []
        )
        peft_model = get_peft_model(model, lora_config(cfg, tokens))
    peft_model.to(device)
    pad_id = int(tokenizer.pad_token_id)

    def make_batch(gen: torch.Generator) -> Batch:
        idx = torch.randint(len(encoded), (cfg.lora_batch_size,), generator=gen).tolist()
        return pad_batch([encoded[i][0] for i in idx], [encoded[i][1] for i in idx], pad_id)

    losses = train_loop(
        peft_model,
        make_batch,
        steps=cfg.lora_steps,
        lr=cfg.lora_lr,
        seed=seed,
        device=device,
        description="LoRA fine-tune",
        show_progress=cfg.progress,
    )
    return peft_model, losses


def target_nll(model: Any, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[InstructionPair]) -> float:
    """Mean negative log-likelihood per target token given the prompt (exp of it is the target perplexity)."""
    encoded = encode_pairs(tokenizer, pairs, context_limit(model))
    pad_id = int(tokenizer.pad_token_id)
    batches = [
        pad_batch([e[0] for e in encoded[i : i + 16]], [e[1] for e in encoded[i : i + 16]], pad_id)
        for i in range(0, len(encoded), 16)
    ]
    return mean_nll(model, batches)


def save_adapter(model: PeftModel, folder: Path) -> Path:
    """Save only the adapter weights and config (atomically)."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
    return Path(folder)


def load_adapter(base_model: PreTrainedModel, folder: Path) -> PeftModel:
    """Attach a saved adapter to `base_model` (the same base it was trained on), in eval mode."""
    model = PeftModel.from_pretrained(base_model, str(folder))
    model.eval()
    return model
