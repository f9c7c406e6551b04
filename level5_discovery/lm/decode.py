"""Constrained decoding (outputs always parse, ranked by LM log-probability) and free generation."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from level5_discovery.lm.extraction import split_sentences
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


Pair = tuple[str, str]
Claim = tuple[str, str, str]
# A slot value no candidate takes: with it among the texts, the common token prefix of a slot stops
# before whatever the next slot's value could merge with, so a prefix is a prefix of every candidate.
_OTHER = "?"


def grounded_pairs(context: Sequence[tuple[str, str]], genes: Sequence[str]) -> dict[Pair, tuple[int, ...]]:
    """Ordered gene pairs that one sentence of a visible passage names together, with those passages.

    A hypothesis must rest on the evidence it cites: both its genes appear in one sentence of every
    cited passage. Both orders of a pair are allowed, since which gene is the cause is the LM's call.

    Args:
        context: Visible ``(paper_id, text)`` passages.
        genes: Names a cause or effect may take.

    Returns:
        ``(cause, effect)`` -> positions (in context order) of the passages naming both in one sentence.
    """
    if not genes:
        return {}
    names = sorted(set(genes), key=len, reverse=True)  # longest first: "G100" before "G10"
    rx = re.compile(r"\b(" + "|".join(re.escape(g) for g in names) + r")\b")
    out: dict[Pair, list[int]] = {}
    for i, (_, text) in enumerate(context):
        for sentence in split_sentences(text):
            named = list(dict.fromkeys(rx.findall(sentence)))
            for a, b in itertools.permutations(named, 2):
                cited = out.setdefault((a, b), [])
                if i not in cited:
                    cited.append(i)
    return {pair: tuple(ids) for pair, ids in out.items()}


def evidence_sets(positions: Sequence[int], max_evidence: int) -> list[tuple[int, ...]]:
    """Citable passage sets: 1 to `max_evidence` of `positions`, each in context order."""
    return [c for k in range(1, max_evidence + 1) for c in itertools.combinations(positions, k)]


def _common_prefix(seqs: Sequence[Sequence[int]]) -> list[int]:
    first, n = seqs[0], len(seqs[0])
    for seq in seqs[1:]:
        n = min(n, len(seq))
        n = next((i for i in range(n) if seq[i] != first[i]), n)
    return list(first[:n])


def slot_prefix(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """The target tokens every one of `texts` starts with (each text a full canonical hypothesis).

    A slot is scored by the tokens its value fixes. Cutting the *text* at the next slot would not do:
    the tokenizer merges a delimiter with the value after it (``"+",`` is one token), so a text cut
    before a value ends in a token the full target never has there, whose (untrained) probability
    would then rank the candidates. Token prefixes of full targets are what training scored.
    """
    return _common_prefix([encode_target(tokenizer, t, close=False) for t in texts])


def _top(scores: Sequence[float], k: int, noise: np.ndarray | None) -> list[int]:
    keyed = np.asarray(scores, dtype=float) + (noise if noise is not None else 0.0)
    return [int(i) for i in np.argsort(-keyed, kind="stable")[:k]]


@dataclass(frozen=True)
class _Search:
    """One context's decoding: the prompt, what the grammar allows, the tokenizer and the noise."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    prompt: list[int]
    pairs: dict[Pair, tuple[int, ...]]
    ids: list[str]
    max_evidence: int
    rng: np.random.Generator
    temperature: float

    def noise(self, m: int) -> np.ndarray | None:
        return self.rng.gumbel(size=m) * self.temperature if self.temperature > 0 else None

    def scores(self, prefixes: Sequence[Sequence[int]]) -> list[float]:
        return score_continuations(self.model, self.prompt, prefixes)

    def pick(self, prefixes: Sequence[Sequence[int]], k: int) -> tuple[list[int], list[float]]:
        scores = self.scores(prefixes)
        return _top(scores, k, self.noise(len(scores))), scores

    def evidence(self, pair: Pair) -> list[tuple[str, ...]]:
        return [tuple(self.ids[i] for i in s) for s in evidence_sets(self.pairs[pair], self.max_evidence)]

    def text(self, claim: Claim, evidence: Sequence[str]) -> str:
        return format_hypothesis(claim[0], claim[1], claim[2], evidence)


def _causes(search: _Search, width: int) -> list[str]:
    causes = list(dict.fromkeys(c for c, _ in search.pairs))
    effects = {c: [e for a, e in search.pairs if a == c] for c in causes}
    prefixes = [
        slot_prefix(search.tokenizer, [search.text((c, e, "+"), [_OTHER]) for e in [*effects[c], _OTHER]])
        for c in causes
    ]
    return [causes[i] for i in search.pick(prefixes, width)[0]]


def _pairs(search: _Search, causes: Sequence[str], width: int) -> list[Pair]:
    pairs = [p for c in causes for p in search.pairs if p[0] == c]
    prefixes = [
        slot_prefix(search.tokenizer, [search.text((c, e, s), [_OTHER]) for s in "+-"]) for c, e in pairs
    ]
    return [pairs[i] for i in search.pick(prefixes, width)[0]]


def _claims(search: _Search, pairs: Sequence[Pair], width: int) -> list[tuple[Claim, float]]:
    claims = [(c, e, s) for c, e in pairs for s in ("+", "-")]
    prefixes = [
        slot_prefix(search.tokenizer, [search.text(k, ev) for ev in [*search.evidence(k[:2]), (_OTHER,)]])
        for k in claims
    ]
    order, scores = search.pick(prefixes, width)
    return [(claims[i], scores[i]) for i in order]


def _cite(search: _Search, claims: Sequence[Claim]) -> list[tuple[tuple[str, ...], float]]:
    """Each claim's most likely citation and the log-probability of its whole JSON (with end-of-sequence)."""
    options = [(k, ev) for k in claims for ev in search.evidence(k[:2])]
    scores = search.scores([encode_target(search.tokenizer, search.text(k, ev)) for k, ev in options])
    keyed = np.asarray(scores) + (search.noise(len(scores)) if search.temperature > 0 else 0.0)
    best: dict[Claim, int] = {}
    for i, (k, _) in enumerate(options):
        if k not in best or keyed[i] > keyed[best[k]]:
            best[k] = i
    return [(options[best[k]][1], scores[best[k]]) for k in claims]


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
    rank_by: Literal["claim", "text"] = "text",
) -> list[Hypothesis]:
    """The `n` most likely hypotheses for a context, decoded under a forced JSON skeleton.

    Slot by slot (cause, effect, sign) the LM scores every allowed value by the log-probability of the
    target tokens that value fixes (`slot_prefix`); a beam keeps the best partial hypotheses. The
    grammar only allows what the context grounds (`grounded_pairs`): a cause and effect that one
    sentence of a visible passage names together, citing 1 to `max_evidence` of the passages that
    do (in context order). Every output parses and cites passages naming both its genes.

    A hypothesis is a claim (cause, effect, sign); its evidence is the most likely citation for it. By
    default (`rank_by` "text") claims are ranked by the exact log-probability of that whole JSON, as
    the model would write it. "claim" ranks by the claim's own log-probability, whatever it cites
    (the token prefix its citations share); it sounds better, since a claim several passages state
    is not split over its citation sets, but it did not measure better: on the quick profile's 40
    retrieval contexts (seeds 0-2) directed-edge precision 0.661 against 0.705, signed 0.542 against
    0.537, each seed within the noise of 17-23 distinct hypotheses.

    Args:
        model: A causal LM (plain or with a LoRA adapter).
        tokenizer: Its tokenizer.
        context: Retrieval hits (``.paper_id``/``.text``) or ``(id, text)`` pairs, best first.
        genes: Names the cause and effect may take.
        n: Hypotheses returned (distinct cause, effect, sign); fewer when the context grounds fewer,
            none when no sentence names two of `genes`.
        seed: Seeds the Gumbel noise when `temperature` > 0 (otherwise decoding is deterministic).
        beam: Partial hypotheses kept per slot (at least `n`).
        max_evidence: Most ids cited.
        passage_words: Words kept per passage (as in training).
        max_passages: Passages kept (as in training).
        temperature: 0 for the most likely hypotheses; > 0 samples slots by Gumbel-perturbed scores.
        rank_by: "claim" (score = log-probability of the claim) or "text" (score = log-probability of
            the whole JSON with its best citation and end-of-sequence).
    """
    ctx = visible_context(context, passage_words, max_passages)
    pairs = grounded_pairs(ctx, genes)
    if not pairs:
        return []
    prompt = encode_prompt(tokenizer, format_prompt(ctx), context_limit(model))
    search = _Search(
        model,
        tokenizer,
        prompt,
        pairs,
        [pid for pid, _ in ctx],
        max_evidence,
        np.random.default_rng(seed),
        temperature,
    )
    width = max(beam, n)
    claims = _claims(search, _pairs(search, _causes(search, width), width), width)
    cited = _cite(search, [k for k, _ in claims])
    rank = [
        score if rank_by == "claim" else text for (_, score), (_, text) in zip(claims, cited, strict=True)
    ]
    out: list[Hypothesis] = []
    for i in _top(rank, n, search.noise(len(rank))):
        (cause, effect, sign), evidence = claims[i][0], cited[i][0]
        out.append(Hypothesis(cause, effect, "+" if sign == "+" else "-", evidence, score=rank[i]))
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
