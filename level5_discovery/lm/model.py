"""Build, save and load causal language models: the tiny local GPT-2 or any Hugging Face causal LM."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from level5_discovery.lm.config import LMConfig
from shared.atomic import atomic_dir
from shared.errors import ConfigError


def build_model(cfg: LMConfig, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 sized by `cfg` over `tokenizer`'s vocabulary.

    Args:
        cfg: Layers, heads, width, context length, dropout.
        tokenizer: Gives the vocabulary size and the pad/eos ids.
        seed: Seeds the weight initialisation (same seed, same weights).
    """
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # A private generator state: the caller's global torch RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> Path:
    """Save a model and its tokenizer atomically, in the layout `load_base_model` reads back."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(folder)


def _not_a_model(name_or_path: str, local: Path, exc: Exception) -> ConfigError:
    """The one-line error for a base model that cannot be loaded offline."""
    if local.is_dir():
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        return ConfigError(f"base model folder {name_or_path!r} holds no causal LM: {detail}")
    where = "not a local path and not in the Hugging Face cache (offline)"
    return ConfigError(f"unknown base model {name_or_path!r}: {where}")


def check_base_model(name_or_path: str) -> None:
    """Fail early, with `load_base_model`'s one-line error, when a base model cannot be found.

    Reads only the model's config (cheap), so a typo is reported before an index is built.

    Raises:
        ConfigError: The name is neither a local model folder nor in the cache.
    """
    local = Path(name_or_path).expanduser()
    try:
        AutoConfig.from_pretrained(str(local) if local.is_dir() else name_or_path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise _not_a_model(name_or_path, local, exc) from exc


def load_base_model(name_or_path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load any Hugging Face causal LM and its tokenizer from a folder or the local hub cache.

    Never downloads (``local_files_only``): the run is offline. A tokenizer without a padding token
    pads with its end-of-sequence token.

    Args:
        name_or_path: A folder written by `save_model` / ``save_pretrained`` or a hub name already cached.

    Raises:
        ConfigError: The name is neither a local model folder nor in the cache (one line).
    """
    local = Path(name_or_path).expanduser()
    source = str(local) if local.is_dir() else name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise _not_a_model(name_or_path, local, exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer
