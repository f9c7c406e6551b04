"""Constrained decoding (outputs always parse, ranked by LM log-probability) and free generation."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from level5_discovery.lm.hypotheses import Hypothesis, format_hypothesis, parse_hypothesis
from level5_discovery.lm.instructions import format_prompt, visible_context

TARGET_ROOM = 96  # tokens kept free after the prompt for the hypothesis


def context_limit(model: Any) -> int:
    """The model's context length (GPT-2 ``n_positions`` or ``max_position_embeddings``)."""
    cfg = model.config
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 1024)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, limit: int) -> list[int]:
    """Prompt ids, cut from the left so that `TARGET_ROOM` tokens remain for the answer."""
    ids = list(tokenizer(prompt)["input_ids"])
    keep = max(8, limit - TARGET_ROOM)
    return ids[-keep:]


def encode_target(tokenizer: PreTrainedTokenizerBase, target: str, *, close: bool = True) -> list[int]:
    """Target ids: a space, the JSON text and (when `close`) the end-of-sequence token."""
    ids = list(tokenizer(" " + target, add_special_tokens=False)["input_ids"])
    return [*ids, int(tokenizer.eos_token_id)] if close else ids


@torch.no_grad()
def score_continuations(
    model: Any, prompt_ids: Sequence[int], continuations: Sequence[Sequence[int]], *, chunk: int = 32
) -> list[float]:
    """Sum of log-probabilities of each continuation given the prompt (the prompt runs once, cached)."""
    device = next(model.parameters()).device
    model.eval()
    out = model(input_ids=torch.tensor([list(prompt_ids)], device=device), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    scores: list[float] = []
    for start in range(0, len(continuations), chunk):
        part = [list(c) for c in continuations[start : start + chunk]]
        width = max(len(c) for c in part)
        ids = torch.zeros((len(part), width), dtype=torch.long, device=device)
        for row, c in enumerate(part):
            ids[row, : len(c)] = torch.tensor(c, dtype=torch.long)
        cache = copy.deepcopy(out.past_key_values)
        cache.batch_repeat_interleave(len(part))
        # Right padding needs no mask: a causal model's scores of real tokens never see later pads.
        logp = torch.log_softmax(
            model(input_ids=ids, past_key_values=cache, use_cache=True).logits.float(), -1
        )
        for row, c in enumerate(part):
            total = float(first[c[0]])
            if len(c) > 1:
                nxt = torch.tensor(c[1:], dtype=torch.long, device=device)
                total += float(logp[row, : len(c) - 1].gather(-1, nxt.unsqueeze(-1)).sum())
            scores.append(total)
    return scores


@dataclass(frozen=True)
class _Partial:
    cause: str
    effect: str = ""
    sign: str = ""


def _allowed_genes(context: Sequence[tuple[str, str]], genes: Sequence[str]) -> list[str]:
    text = " ".join(t for _, t in context)
    named = [g for g in genes if re.search(rf"\b{re.escape(g)}\b", text)]
    return named if len(named) >= 2 else list(genes)


def _top(scores: Sequence[float], k: int, noise: np.ndarray | None) -> list[int]:
    keyed = np.asarray(scores, dtype=float) + (noise if noise is not None else 0.0)
    return [int(i) for i in np.argsort(-keyed, kind="stable")[:k]]


def generate_hypotheses(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    context: Sequence[Any],
    genes: Sequence[str],
    *,
    n: int = 3,
    seed: int = 0,
    beam: int = 4,
    max_evidence: int = 2,
    passage_words: int = 70,
    max_passages: int = 4,
    temperature: float = 0.0,
) -> list[Hypothesis]:
    """The `n` most likely hypotheses for a context, decoded under a forced JSON skeleton.

    Slot by slot (cause, effect, sign, evidence) the LM scores every allowed value by the
    log-probability of the text up to the next slot; a beam keeps the best partial hypotheses. Cause
    and effect come from the genes the visible passages name (all `genes` when fewer than two are
    named), the sign from {+, -}, the evidence from the passage ids (1 to `max_evidence`, in context
    order). The survivors are ranked by the exact log-probability of their whole JSON (plus
    end-of-sequence), so every output parses and the ranking is the model's.

    Args:
        model: A causal LM (plain or with a LoRA adapter).
        tokenizer: Its tokenizer.
        context: Retrieval hits (``.paper_id``/``.text``) or ``(id, text)`` pairs, best first.
        genes: Names the cause and effect may take.
        n: Hypotheses returned (distinct cause, effect, sign).
        seed: Seeds the Gumbel noise when `temperature` > 0 (otherwise decoding is deterministic).
        beam: Partial hypotheses kept per slot (at least `n`).
        max_evidence: Most ids cited.
        passage_words: Words kept per passage (as in training).
        max_passages: Passages kept (as in training).
        temperature: 0 for the most likely hypotheses; > 0 samples slots by Gumbel-perturbed scores.
    """
    ctx = visible_context(context, passage_words, max_passages)
    if not ctx or len(genes) < 2:
        return []
    allowed, ids = _allowed_genes(ctx, genes), [pid for pid, _ in ctx]
    prompt = encode_prompt(tokenizer, format_prompt(ctx), context_limit(model))
    rng = np.random.default_rng(seed)
    width = max(beam, n)

    def noise(m: int) -> np.ndarray | None:
        return rng.gumbel(size=m) * temperature if temperature > 0 else None

    def pick(texts: list[str], k: int) -> list[int]:
        enc = [encode_target(tokenizer, t, close=False) for t in texts]
        return _top(score_continuations(model, prompt, enc), k, noise(len(texts)))

    head = '{"cause": "'
    causes = [_Partial(g) for g in allowed]
    kept = [causes[i] for i in pick([f'{head}{p.cause}", "effect": "' for p in causes], width)]
    effects = [_Partial(p.cause, g) for p in kept for g in allowed if g != p.cause]
    texts = [f'{head}{p.cause}", "effect": "{p.effect}", "sign": "' for p in effects]
    kept = [effects[i] for i in pick(texts, width)]
    signed = [_Partial(p.cause, p.effect, s) for p in kept for s in ("+", "-")]
    texts = [f'{head}{p.cause}", "effect": "{p.effect}", "sign": "{p.sign}", "evidence": ["' for p in signed]
    kept = [signed[i] for i in pick(texts, width)]
    sets: list[tuple[int, ...]] = [(i,) for i in range(len(ids))]
    if max_evidence >= 2:
        sets += [(i, j) for i in range(len(ids)) for j in range(i + 1, len(ids))]
    full = [(p, tuple(ids[i] for i in s)) for p in kept for s in sets]
    enc = [encode_target(tokenizer, format_hypothesis(p.cause, p.effect, p.sign, ev)) for p, ev in full]
    scores = score_continuations(model, prompt, enc)
    seen: set[tuple[str, str, str]] = set()
    out: list[Hypothesis] = []
    for i in _top(scores, len(full), noise(len(full))):
        p, ev = full[i]
        if (p.cause, p.effect, p.sign) in seen:
            continue
        seen.add((p.cause, p.effect, p.sign))
        out.append(Hypothesis(p.cause, p.effect, "+" if p.sign == "+" else "-", ev, score=scores[i]))
        if len(out) == n:
            break
    return out


@torch.no_grad()
def generate_free(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    context: Sequence[Any],
    *,
    max_new_tokens: int = 64,
    passage_words: int = 70,
    max_passages: int = 4,
) -> str:
    """Greedy, unconstrained continuation of the prompt for a context (text up to end-of-sequence)."""
    ctx = visible_context(context, passage_words, max_passages)
    prompt = encode_prompt(tokenizer, format_prompt(ctx), context_limit(model))
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    eos = int(tokenizer.eos_token_id)
    new: list[int] = []
    out = model(input_ids=ids, use_cache=True)
    for _ in range(max_new_tokens):
        nxt = int(out.logits[0, -1].argmax())
        if nxt == eos:
            break
        new.append(nxt)
        out = model(
            input_ids=torch.tensor([[nxt]], device=device),
            past_key_values=out.past_key_values,
            use_cache=True,
        )
    return str(tokenizer.decode(new, skip_special_tokens=True))


def parse_free(text: str, genes: Sequence[str], evidence_ids: Sequence[str]) -> Hypothesis | None:
    """Parse a free generation against the allowed genes and ids (None when it does not validate)."""
    return parse_hypothesis(text, genes=genes, evidence_ids=evidence_ids)
