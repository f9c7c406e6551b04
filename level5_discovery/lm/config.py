"""Settings of the hypothesis language model (tokenizer, tiny GPT-2, pretraining, LoRA, decoding)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field


class LMConfig(BaseModel):
    """Quick-profile defaults: a ~0.7 M-parameter GPT-2 that pretrains on 400 abstracts in about a minute."""

    model_config = ConfigDict(extra="forbid")

    # Tokenizer: byte-level BPE trained on the corpus; names matching `gene_pattern` become single tokens.
    vocab_size: int = Field(2000, ge=300)
    gene_pattern: str = r"\bG\d{2,3}\b"
    # Model (ignored when `base_model` names a Hugging Face causal LM).
    n_layer: int = Field(2, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=8)
    n_positions: int = Field(512, ge=64)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    base_model: str | None = None
    # Pretraining on abstracts.
    pretrain_steps: int = Field(300, ge=0)
    pretrain_batch_size: int = Field(16, ge=1)
    pretrain_block: int = Field(128, ge=16)
    pretrain_lr: float = Field(3e-3, gt=0)
    # LoRA on instruction pairs.
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture
    lora_train_tokens: bool = (
        True  # also train the embedding rows of the target tokens (see lora.lora_config)
    )
    # 500 steps (about 11 passes over the ~360 pairs): at 200 the LM had not yet learned to read the
    # sign and direction (seed 0 precision 0.696 / signed 0.478 against 0.810 / 0.619 at 500).
    lora_steps: int = Field(500, ge=0)
    # Instruction pairs: retrieval contexts of at most this many training questions (one per gene pair),
    # each giving its `train_targets` best-supported stated relations as targets.
    train_questions: int = Field(400, ge=1)
    train_targets: int = Field(1, ge=1)
    lora_batch_size: int = Field(8, ge=1)
    lora_lr: float = Field(5e-3, gt=0)
    # Prompts: each retrieved passage is cut to this many words so k passages fit the context window.
    passage_words: int = Field(70, ge=8)
    context_passages: int = Field(4, ge=1)
    max_evidence: int = Field(2, ge=1)
    beam: int = Field(4, ge=1)
    weight_decay: float = Field(0.0, ge=0.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True


def resolve_device(device: str) -> torch.device:
    """The torch device for a config value: "auto" is CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
