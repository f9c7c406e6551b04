"""Causal-LM training loops (pretraining on abstracts, shared with LoRA) and perplexity."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from level5_discovery.lm.config import LMConfig, resolve_device
from shared.progress import make_progress

IGNORE = -100

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input_ids, attention_mask, labels


def pad_batch(sequences: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int) -> Batch:
    """Right-pad token sequences into ``(input_ids, attention_mask, labels)``; padded labels are ignored."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    lab = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
    for row, (seq, lbl) in enumerate(zip(sequences, labels, strict=True)):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        lab[row, : len(lbl)] = torch.tensor(lbl, dtype=torch.long)
    return ids, mask, lab


def train_loop(
    model: Any,
    make_batch: Callable[[torch.Generator], Batch],
    *,
    steps: int,
    lr: float,
    seed: int,
    device: torch.device,
    description: str,
    weight_decay: float = 0.0,
    show_progress: bool = True,
) -> list[float]:
    """AdamW with linear warm-up and cosine decay over the trainable parameters; returns per-step losses.

    Args:
        model: A causal LM (plain or peft-wrapped); only parameters with ``requires_grad`` move.
        make_batch: Draws one batch from a seeded generator.
        steps: Optimiser steps.
        lr: Peak learning rate.
        seed: Seeds batch sampling and dropout (same seed, same losses on CPU).
        device: Where to train.
        description: Progress-bar label.
        weight_decay: AdamW weight decay.
        show_progress: Draw a rich progress bar on stderr.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params or steps == 0:
        return []
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]), make_progress(disable=not show_progress) as progress:
        torch.manual_seed(seed)
        task = progress.add_task(description, total=steps)
        for _ in range(steps):
            ids, mask, labels = (t.to(device) for t in make_batch(gen))
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            progress.advance(task)
    model.eval()
    return losses


def token_blocks(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], block: int) -> list[list[int]]:
    """Concatenate tokenised texts (each ended by EOS) and cut the stream into blocks of `block` tokens."""
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(int(tokenizer.eos_token_id))
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    return [b for b in blocks if len(b) > 1]


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    cfg: LMConfig,
    seed: int,
) -> dict[str, Any]:
    """Causal-LM pretraining on abstracts (all weights train).

    Args:
        model: The model to train in place (moved to ``cfg.device``).
        tokenizer: Its tokenizer.
        texts: Training abstracts.
        cfg: Steps, batch size, block length, learning rate.
        seed: Same seed, same losses and weights on CPU.

    Returns:
        ``{"losses": [...], "steps": int, "n_tokens": int}``.
    """
    device = resolve_device(cfg.device)
    model.to(device)  # type: ignore[arg-type]
    blocks = token_blocks(tokenizer, texts, min(cfg.pretrain_block, cfg.n_positions))
    if not blocks:
        raise ValueError("no text to pretrain on")
    pad_id = int(tokenizer.pad_token_id)

    def make_batch(gen: torch.Generator) -> Batch:
        idx = torch.randint(len(blocks), (cfg.pretrain_batch_size,), generator=gen).tolist()
        chosen = [blocks[i] for i in idx]
        return pad_batch(chosen, chosen, pad_id)

    losses = train_loop(
        model,
        make_batch,
        steps=cfg.pretrain_steps,
        lr=cfg.pretrain_lr,
        seed=seed,
        device=device,
        description="pretrain LM",
        weight_decay=cfg.weight_decay,
        show_progress=cfg.progress,
    )
    return {"losses": losses, "steps": len(losses), "n_tokens": sum(len(b) for b in blocks)}


@torch.no_grad()
def mean_nll(model: Any, batches: Sequence[Batch]) -> float:
    """Mean negative log-likelihood per labelled token over `batches` (labels ``-100`` are skipped)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    for ids, mask, labels in batches:
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(device)
        keep = shift_labels != IGNORE
        logp = torch.log_softmax(shift_logits, dim=-1)
        picked = logp.gather(-1, shift_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total -= float(picked[keep].sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("no tokens to score")
    return total / count


def perplexity(
    model: Any, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, batch_size: int = 16
) -> float:
    """Per-token perplexity of `texts` (each scored on its own, truncated to the model's context)."""
    cfg = model.config
    limit = int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 1024)
    pad_id = int(tokenizer.pad_token_id)
    seqs = [ids[:limit] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    batches = [
        pad_batch(seqs[i : i + batch_size], seqs[i : i + batch_size], pad_id)
        for i in range(0, len(seqs), batch_size)
    ]
    return math.exp(mean_nll(model, batches))
