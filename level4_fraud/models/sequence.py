"""Sequence models over each card's recent transactions.

`build_card_sequences` turns a transaction frame into, for every transaction, the card's last
``max_len`` transactions up to and including it (oldest first, left-padded with zeros, a mask
marking the real ones). Order is ``TX_DATETIME`` then ``TRANSACTION_ID``, so a transaction never
sees a later one, nor one that shares its timestamp but comes after it.

Two models read those ``(x (n, L, F), mask (n, L))`` pairs and score the last position, the
current transaction:

* `SequenceTransformer`: a small pre-norm transformer encoder with its own attention, whose
  linear layers are named ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``fc1`` and ``fc2``
  so that LoRA (peft) can target them by name;
* `SequenceGRU`: the recurrent baseline.

Both expose ``stages()``: two ``nn.Module`` halves that share the model's parameters and whose
composition (`run_stages`) equals ``forward``, for pipeline parallelism.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn


@dataclass
class CardSequences:
    """Left-padded per-transaction histories.

    Attributes:
        x: ``(n, max_len, F)`` float32; ``x[i, -1]`` is transaction i itself.
        mask: ``(n, max_len)`` bool, True where a real transaction sits.
        rows: ``(n,)`` positions in the input frame the sequences belong to.
    """

    x: np.ndarray
    mask: np.ndarray
    rows: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Real transactions per sequence."""
        return self.mask.sum(axis=1)


def build_card_sequences(
    tx_frame: pd.DataFrame,
    feature_cols: Sequence[str],
    max_len: int,
    *,
    card_col: str = "CUSTOMER_ID",
    time_col: str = "TX_DATETIME",
    id_col: str | None = "TRANSACTION_ID",
    values: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> CardSequences:
    """For each transaction, the card's last `max_len` transactions up to and including it.

    Args:
        tx_frame: Transactions (any row order) with `card_col`, `time_col` and the features.
        feature_cols: Columns that make up each step's feature vector (ignored with `values`).
        max_len: Steps kept per sequence (the current transaction included).
        card_col: Whose history a sequence is (the Handbook's ``CUSTOMER_ID`` is the card).
        time_col: Event time.
        id_col: Tie-breaker for equal times (``None``: the frame's row order breaks ties).
        values: An ``(len(tx_frame), F)`` matrix to use instead of the frame's columns (e.g. the
            output of a fitted `TabularPreprocessor`), aligned with the frame's rows.
        rows: Positions of the transactions to return sequences for (default: all, in frame
            order); the history still comes from every row of the frame.

    Returns:
        `CardSequences` in the order of `rows`. Missing feature values become 0.
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    missing = [c for c in [card_col, time_col, *([id_col] if id_col else [])] if c not in tx_frame.columns]
    if values is None:
        missing += [c for c in feature_cols if c not in tx_frame.columns]
    if missing:
        raise KeyError(f"missing columns for card sequences: {missing}")
    n = len(tx_frame)
    if values is None:
        feats = tx_frame[list(feature_cols)].to_numpy(dtype=np.float32).reshape(n, -1)
    else:
        feats = np.asarray(values, dtype=np.float32)
        if feats.ndim != 2 or len(feats) != n:
            raise ValueError(f"values must be (n_rows, F) with n_rows={n}, got {feats.shape}")
    feats = np.nan_to_num(feats, nan=0.0)
    targets = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if targets.size and (targets.min() < 0 or targets.max() >= n):
        raise IndexError("rows out of range for the frame")
    n_feat = feats.shape[1]
    x = np.zeros((len(targets), max_len, n_feat), dtype=np.float32)
    mask = np.zeros((len(targets), max_len), dtype=bool)
    if n == 0 or len(targets) == 0:
        return CardSequences(x, mask, targets)

    cards = pd.factorize(tx_frame[card_col], use_na_sentinel=False)[0]
    times = pd.to_datetime(tx_frame[time_col]).to_numpy(dtype="datetime64[ns]").view(np.int64)
    tie = tx_frame[id_col].to_numpy(dtype=np.int64) if id_col else np.arange(n)
    # Stable sort: card, then time, then id (np.lexsort's last key is the primary one).
    order = np.lexsort((np.arange(n), tie, times, cards))
    sorted_cards = cards[order]
    first = np.r_[True, sorted_cards[1:] != sorted_cards[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    pos_in_card = np.arange(n) - group_start
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    sp = where[targets]  # each target's index in the sorted order
    sorted_feats = feats[order]
    for back in range(min(max_len, int(pos_in_card.max()) + 1)):
        ok = np.nonzero(pos_in_card[sp] >= back)[0]
        x[ok, max_len - 1 - back] = sorted_feats[sp[ok] - back]
        mask[ok, max_len - 1 - back] = True
    return CardSequences(x, mask, targets)


class SequenceTransformerConfig(BaseModel):
    """Transformer architecture (quick profile; full: ``max_len=32, d_model=64, n_layers=3``)."""

    model_config = ConfigDict(extra="forbid")

    n_features: int = Field(..., ge=1)
    max_len: int = Field(16, ge=1)
    d_model: int = Field(64, ge=2)
    n_heads: int = Field(4, ge=1)
    n_layers: int = Field(2, ge=1)
    ff_dim: int = Field(128, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> SequenceTransformerConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        return self


class SelfAttention(nn.Module):
    """Multi-head self-attention with separately named projections (LoRA targets)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, length, d = h.shape
        hd = d // self.n_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, self.n_heads, hd).transpose(1, 2)

        q, k, v = split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h))
        attn_mask = key_mask[:, None, None, :]  # True = may attend; padding keys are hidden
        out = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, length, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: attention and a two-layer feed-forward, both residual."""

    def __init__(self, cfg: SequenceTransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ff_dim)
        self.fc2 = nn.Linear(cfg.ff_dim, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        h = h + self.drop(self.attn(self.norm1(h), key_mask))
        return h + self.drop(self.fc2(nn.functional.gelu(self.fc1(self.norm2(h)))))


def _key_mask(mask: torch.Tensor) -> torch.Tensor:
    # Stages pass the mask on as float (pipeline transports carry float tensors); the last
    # position is the scored transaction itself, always real: forcing it keeps a malformed
    # all-padding row from producing NaN attention.
    km = mask > 0.5 if mask.dtype != torch.bool else mask.clone()
    km[:, -1] = True
    return km


def _front(
    in_proj: nn.Module, pos: nn.Embedding, blocks: Iterable[nn.Module], x: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    length = x.shape[1]
    if length > pos.num_embeddings:
        raise ValueError(f"sequence length {length} exceeds max_len {pos.num_embeddings}")
    # Positions count back from the current transaction, so a shorter window reuses the
    # embeddings of the last positions.
    positions = torch.arange(pos.num_embeddings - length, pos.num_embeddings, device=x.device)
    h = in_proj(x) + pos(positions)[None]
    km = _key_mask(mask)
    for block in blocks:
        h = block(h, km)
    return h, km.to(h.dtype)


def _back(
    blocks: Iterable[nn.Module], norm: nn.Module, head: nn.Module, h: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    km = _key_mask(mask)
    for block in blocks:
        h = block(h, km)
    return head(norm(h[:, -1])).squeeze(-1)


class _TransformerStage0(nn.Module):
    """Input projection, positions and the first blocks: ``(x, mask) -> (h, mask_float)``."""

    def __init__(self, model: SequenceTransformer, split: int) -> None:
        super().__init__()
        self.in_proj = model.in_proj
        self.pos = model.pos
        self.blocks = nn.ModuleList(list(model.blocks)[:split])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _front(self.in_proj, self.pos, self.blocks, x, mask)


class _TransformerStage1(nn.Module):
    """The remaining blocks, final norm and head: ``(h, mask) -> logits``."""

    def __init__(self, model: SequenceTransformer, split: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(list(model.blocks)[split:])
        self.norm = model.norm
        self.head = model.head

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _back(self.blocks, self.norm, self.head, h, mask)


class SequenceTransformer(nn.Module):
    """Transformer over a card's recent transactions: ``forward(x, mask) -> (batch,)`` logits."""

    config_cls: ClassVar[type[SequenceTransformerConfig]] = SequenceTransformerConfig

    def __init__(self, config: SequenceTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.in_proj = nn.Linear(config.n_features, config.d_model)
        self.pos = nn.Embedding(config.max_len, config.d_model)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, 1)

    def stages(self, split: int | None = None) -> tuple[nn.Module, nn.Module]:
        """Two halves sharing this model's parameters; ``run_stages`` of them equals ``forward``.

        Args:
            split: Blocks in the first stage (default: half, rounded down, at least 1).
        """
        n = len(self.blocks)
        split = max(1, n // 2) if split is None else split
        if not 0 <= split <= n:
            raise ValueError(f"split must be in [0, {n}]")
        return _TransformerStage0(self, split), _TransformerStage1(self, split)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # The same two functions the stages run, in the same order: stages compose to this.
        split = max(1, len(self.blocks) // 2)
        h, km = _front(self.in_proj, self.pos, list(self.blocks)[:split], x, mask)
        return _back(list(self.blocks)[split:], self.norm, self.head, h, km)


class SequenceGRUConfig(BaseModel):
    """GRU baseline architecture (quick profile; full: ``max_len=32, hidden=64, n_layers=2``)."""

    model_config = ConfigDict(extra="forbid")

    n_features: int = Field(..., ge=1)
    max_len: int = Field(16, ge=1)
    hidden: int = Field(64, ge=1)
    n_layers: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


def left_to_right_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's last ``lengths[i]`` steps to the front (right padding, for packing)."""
    length = x.shape[1]
    idx = (torch.arange(length, device=x.device)[None, :] + (length - lengths)[:, None]) % length
    return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[2]))


def _gru_encode(gru: nn.GRU, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    lengths = (mask > 0.5 if mask.dtype != torch.bool else mask).sum(1).clamp_min(1)
    packed = nn.utils.rnn.pack_padded_sequence(
        left_to_right_padded(x, lengths), lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    _, h_n = gru(packed)
    return h_n[-1]


class _GRUStage0(nn.Module):
    """``(x, mask) -> h``: the GRU's last hidden state after the card's real transactions."""

    def __init__(self, model: SequenceGRU) -> None:
        super().__init__()
        self.gru = model.gru

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _gru_encode(self.gru, x, mask)


class _GRUStage1(nn.Module):
    """``h -> logits``: the classification head."""

    def __init__(self, model: SequenceGRU) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h).squeeze(-1)


class SequenceGRU(nn.Module):
    """GRU baseline over the same sequences: ``forward(x, mask) -> (batch,)`` logits.

    Padding never enters the recurrence: sequences are packed with their true lengths.
    """

    config_cls: ClassVar[type[SequenceGRUConfig]] = SequenceGRUConfig

    def __init__(self, config: SequenceGRUConfig) -> None:
        super().__init__()
        self.config = config
        self.gru = nn.GRU(
            config.n_features,
            config.hidden,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )

    def stages(self) -> tuple[nn.Module, nn.Module]:
        """(recurrent encoder, head), sharing this model's parameters."""
        return _GRUStage0(self), _GRUStage1(self)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(_gru_encode(self.gru, x, mask)).squeeze(-1)


def run_stages(stages: tuple[nn.Module, nn.Module], x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``stage1(*stage0(x, mask))``, a stage0 returning one tensor passed on as one argument."""
    out = stages[0](x, mask)
    return stages[1](*(out if isinstance(out, tuple) else (out,)))
