"""A small SMILES transformer pretrained without labels; mean-pooled molecule embeddings.

Pretraining is BERT-style masked-token prediction (15 % of tokens chosen; of those 80 % become
``<mask>``, 10 % a random token, 10 % stay) with an optional contrastive term (NT-Xent) between
two random SMILES of the same molecule, which pushes the pooled embedding to describe the
molecule rather than one way of writing it. Inference runs eager, through ``torch.compile`` or as
an ONNX graph in onnxruntime (`make_runner`); `matmul_peak_gflops` measures the machine's
matrix-multiply peak so throughput can be stated against it.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as fn

from level5_discovery.chem.smiles_tokens import Vocab, build_vocab, randomize_smiles, token_counts
from shared.atomic import atomic_dir, atomic_write_bytes
from shared.errors import ConfigError, EmptyDataError

Runner = Callable[[np.ndarray], np.ndarray]
Backend = Literal["eager", "onnx", "compile"]


class EncoderConfig(BaseModel):
    """Encoder size and pretraining settings; defaults are the quick profile (2 CPU cores, ~1-2 min)."""

    model_config = ConfigDict(extra="forbid")

    d_model: int = Field(128, ge=8)
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    d_ff: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_len: int = Field(
        100, ge=8, description="longest token sequence (<cls> included); longer ones are cut"
    )
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_steps: int = Field(50, ge=0)
    mask_prob: float = Field(0.15, gt=0.0, lt=1.0)
    randomize: bool = Field(True, description="train on random (non-canonical) SMILES, new ones each epoch")
    contrastive_weight: float = Field(0.0, ge=0.0, description="weight of the two-view NT-Xent term")
    temperature: float = Field(0.1, gt=0.0)
    log_every: int = Field(20, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @classmethod
    def full(cls) -> EncoderConfig:
        """The full profile: a wider, deeper encoder trained longer (a GPU or hours of CPU)."""
        return cls(
            d_model=256,
            n_layers=6,
            n_heads=8,
            d_ff=1024,
            epochs=10,
            batch_size=256,
            warmup_steps=500,
            contrastive_weight=0.1,
        )


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: multi-head self-attention (SDPA) and a GELU feed-forward.

    Written out rather than `nn.TransformerEncoderLayer` because that layer's attention bakes the
    traced batch size into its reshapes, so its ONNX graph fails on any other batch; this one
    reshapes only the head axis and exports, compiles and runs eager identically.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        """`x` ``(n, L, d)``; `attn_bias` ``(n, 1, 1, L)`` additive (-inf-like on padding keys)."""
        q, k, v = (
            self.qkv(self.norm1(x)).unflatten(-1, (3, self.n_heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)
        )
        a = fn.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.out(a.transpose(1, 2).flatten(2)))
        out: torch.Tensor = x + self.drop(self.ff(self.norm2(x)))
        return out


class SmilesEncoder(nn.Module):
    """Token + position embeddings, pre-norm transformer blocks, an MLM head and a projection head.

    ``forward(ids)`` returns the mean-pooled embedding over non-padding positions, shape ``(n, d)``;
    that graph (ids in, embeddings out) is what gets compiled or exported.
    """

    def __init__(self, vocab_size: int, cfg: EncoderConfig, pad_id: int = 0) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ConfigError(f"d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}")
        self.cfg = cfg
        self.pad_id = pad_id
        self.tok = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad_id)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(
            EncoderBlock(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.mlm_head = nn.Linear(cfg.d_model, vocab_size)
        self.proj = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_model), nn.ReLU(), nn.Linear(cfg.d_model, cfg.d_model)
        )

    def hidden(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token states ``(n, L, d)`` and the padding mask ``(n, L)`` (True = padding)."""
        pad = ids == self.pad_id
        # A large finite negative, not -inf: a row of only padding keys would otherwise give NaN.
        bias = pad.to(torch.float32)[:, None, None, :] * -1e9
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.tok(ids) + self.pos(positions)[None, :, :]
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x), pad

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean-pooled embeddings ``(n, d)`` of id rows ``(n, L)``."""
        h, pad = self.hidden(ids)
        return _mean_pool(h, pad)


def _mean_pool(h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    keep = (~pad).to(h.dtype)[:, :, None]
    return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


# ------------------------------------------------------------------------------------ masking
def select_positions(ids: torch.Tensor, n_special: int, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Boolean ``(n, L)``: each real (non-special) token chosen with probability `prob`."""
    return (torch.rand(ids.shape, generator=gen) < prob) & (ids >= n_special)


def mask_tokens(
    ids: torch.Tensor, vocab: Vocab, prob: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT corruption of CPU id rows: (inputs, labels with -100 where no loss is taken)."""
    chosen = select_positions(ids, vocab.n_special, prob, gen)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=gen)
    random_ids = torch.randint(vocab.n_special, len(vocab), ids.shape, generator=gen)
    inputs = torch.where(chosen & (r < 0.8), torch.full_like(ids, vocab.mask_id), ids)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, inputs)
    return inputs, labels


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: row i of `a` and row i of `b` are the positive pair among 2n views."""
    z = fn.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / temperature
    n = a.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return fn.cross_entropy(sim, target)


# ------------------------------------------------------------------------------------ pretraining
def pretrain_encoder(
    smiles: Sequence[str], cfg: EncoderConfig | None = None, seed: int = 0
) -> tuple[SmilesEncoder, Vocab, list[dict[str, float]]]:
    """Pretrain an encoder on unlabelled SMILES with masked-token prediction (+ optional contrast).

    Args:
        smiles: Unlabelled molecules (the vocabulary is built from their canonical tokens).
        cfg: Size and schedule; default the quick profile.
        seed: Drives initialisation, shuffling, masking, random SMILES and dropout.

    Returns:
        ``(model, vocab, history)``: the model in eval mode on its device; history rows
        ``{"step", "epoch", "mlm_loss", "contrastive_loss", "seconds"}``, the first row being the
        untrained model's loss on the first batch.
    """
    cfg = cfg or EncoderConfig()
    smiles = list(smiles)
    if len(smiles) < 2:
        raise EmptyDataError("pretraining needs at least two SMILES")
    device = pick_device(cfg.device)
    vocab = build_vocab(smiles)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = SmilesEncoder(len(vocab), cfg, vocab.pad_id).to(device)
        history = _train(model, vocab, smiles, cfg, seed, gen, device)
    model.eval()
    return model, vocab, history


def _train(
    model: SmilesEncoder,
    vocab: Vocab,
    smiles: list[str],
    cfg: EncoderConfig,
    seed: int,
    gen: torch.Generator,
    device: torch.device,
) -> list[dict[str, float]]:
    steps_per_epoch = math.ceil(len(smiles) / cfg.batch_size)
    total = (
        steps_per_epoch * cfg.epochs
        if cfg.max_steps is None
        else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg.warmup_steps, total))
    history: list[dict[str, float]] = []
    start, step, run_mlm, run_con, run_n = time.perf_counter(), 0, 0.0, 0.0, 0
    model.train()
    for epoch in range(cfg.epochs):
        views = _epoch_views(smiles, cfg, seed, epoch)
        order = torch.randperm(len(smiles), generator=gen).tolist()
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            mlm, con = _step_losses(model, vocab, views, idx, cfg, gen, device)
            loss = mlm + cfg.contrastive_weight * con if cfg.contrastive_weight > 0 else mlm
            if step == 0:
                history.append(
                    {
                        "step": 0.0,
                        "epoch": 0.0,
                        "mlm_loss": mlm.item(),
                        "contrastive_loss": con.item(),
                        "seconds": 0.0,
                    }
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            run_mlm, run_con, run_n = run_mlm + mlm.item(), run_con + con.item(), run_n + 1
            if step % cfg.log_every == 0 or step == total:
                history.append(
                    {
                        "step": float(step),
                        "epoch": float(epoch),
                        "mlm_loss": run_mlm / run_n,
                        "contrastive_loss": run_con / run_n,
                        "seconds": time.perf_counter() - start,
                    }
                )
                run_mlm, run_con, run_n = 0.0, 0.0, 0
            if step >= total:
                return history
    return history


def _lr_factor(step: int, warmup: int, total: int) -> float:
    # Linear warm-up, then cosine decay to 5 % of the peak rate.
    if step < warmup:
        return (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac))


def _epoch_views(
    smiles: list[str], cfg: EncoderConfig, seed: int, epoch: int
) -> tuple[list[str], list[str] | None]:
    # Fresh random SMILES each epoch; the second view exists only for the contrastive term.
    first = randomize_smiles(smiles, seed * 7919 + 2 * epoch) if cfg.randomize else smiles
    second = randomize_smiles(smiles, seed * 7919 + 2 * epoch + 1) if cfg.contrastive_weight > 0 else None
    return first, second


def _step_losses(
    model: SmilesEncoder,
    vocab: Vocab,
    views: tuple[list[str], list[str] | None],
    idx: list[int],
    cfg: EncoderConfig,
    gen: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    first, second = views
    ids = torch.from_numpy(vocab.encode_batch([first[i] for i in idx], cfg.max_len))
    inputs, labels = mask_tokens(ids, vocab, cfg.mask_prob, gen)
    h, pad = model.hidden(inputs.to(device))
    logits = model.mlm_head(h)
    mlm = fn.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.to(device).reshape(-1), ignore_index=-100
    )
    if second is None:
        return mlm, torch.zeros((), device=device)
    other = model(torch.from_numpy(vocab.encode_batch([second[i] for i in idx], cfg.max_len)).to(device))
    con = nt_xent(model.proj(_mean_pool(h, pad)), model.proj(other), cfg.temperature)
    return mlm, con


# ------------------------------------------------------------------------------------ evaluation
def masked_token_loss(
    model: SmilesEncoder,
    vocab: Vocab,
    smiles: Sequence[str],
    seed: int = 0,
    mask_prob: float = 0.15,
    batch_size: int = 256,
) -> float:
    """Mean cross-entropy (nats) of predicting masked tokens, every chosen token shown as ``<mask>``.

    Positions are chosen exactly as `unigram_masked_loss` chooses them for the same seed, so the
    two numbers are comparable.
    """
    device = next(model.parameters()).device
    ids = torch.from_numpy(vocab.encode_batch(list(smiles), model.cfg.max_len))
    chosen = select_positions(ids, vocab.n_special, mask_prob, torch.Generator().manual_seed(seed))
    inputs = torch.where(chosen, torch.full_like(ids, vocab.mask_id), ids)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(ids), batch_size):
            h, _ = model.hidden(inputs[b : b + batch_size].to(device))
            logits = model.mlm_head(h)
            sel = chosen[b : b + batch_size].to(device)
            targets = ids[b : b + batch_size].to(device)[sel]
            total += float(fn.cross_entropy(logits[sel], targets, reduction="sum"))
            count += int(sel.sum())
    model.train(was_training)
    return total / max(count, 1)


def unigram_masked_loss(
    vocab: Vocab,
    train_smiles: Sequence[str],
    smiles: Sequence[str],
    seed: int = 0,
    mask_prob: float = 0.15,
    max_len: int = 100,
) -> float:
    """The context-free baseline: cross-entropy of the training token frequencies (add-one) at the
    positions `masked_token_loss` would mask."""
    counts = token_counts(vocab, train_smiles).astype(np.float64)
    counts[vocab.n_special :] += 1.0
    logp = np.log(np.where(counts > 0, counts / counts.sum(), 1.0))
    ids = torch.from_numpy(vocab.encode_batch(list(smiles), max_len))
    chosen = select_positions(ids, vocab.n_special, mask_prob, torch.Generator().manual_seed(seed))
    targets = ids[chosen].numpy()
    return float(-logp[targets].mean()) if len(targets) else float("nan")


# ------------------------------------------------------------------------------------ inference
def make_runner(
    model: SmilesEncoder,
    backend: Backend = "eager",
    onnx_path: str | Path | None = None,
    threads: int | None = None,
) -> Runner:
    """A function ``ids (n, L) int64 -> embeddings (n, d) float32`` for one inference backend.

    Args:
        model: A trained encoder (switched to eval mode; compiled/exported copies are made).
        backend: ``eager`` (PyTorch, eval mode), ``compile`` (``torch.compile``, dynamic shapes)
            or ``onnx`` (exported, run by onnxruntime; CUDA provider when available).
        onnx_path: Where the ONNX graph goes (a fresh temporary folder when None).
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """
    model = model.eval()
    device = next(model.parameters()).device
    if backend == "eager":
        return _torch_runner(model, device)
    if backend == "compile":
        compiled = torch.compile(copy.deepcopy(model), dynamic=True)
        return _torch_runner(compiled, device)
    if backend == "onnx":
        return _onnx_runner(model, onnx_path, threads)
    raise ConfigError(f"unknown encoder backend {backend!r}: eager, compile or onnx")


def _torch_runner(model: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> Runner:
    def run(ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device))
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)

    return run


def onnx_bytes(model: SmilesEncoder, opset: int = 17) -> bytes:
    """The ``ids -> embeddings`` graph as ONNX bytes (TorchScript exporter; batch and length dynamic)."""
    cpu = copy.deepcopy(model).cpu().eval()
    example = torch.full((2, 8), 5, dtype=torch.int64)
    example[1, 6:] = model.pad_id
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation; its graph is what we test against eager.
        warnings.filterwarnings("ignore")
        torch.onnx.export(
            cpu,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            dynamo=False,
            input_names=["ids"],
            output_names=["embedding"],
            dynamic_axes={"ids": {0: "batch", 1: "length"}, "embedding": {0: "batch"}},
            opset_version=opset,
        )
    return buffer.getvalue()


def export_onnx(model: SmilesEncoder, path: str | Path, opset: int = 17) -> Path:
    """Write the ONNX graph of `onnx_bytes` to `path`, atomically."""
    return atomic_write_bytes(path, onnx_bytes(model, opset))


def _onnx_runner(model: SmilesEncoder, onnx_path: str | Path | None, threads: int | None) -> Runner:
    import onnxruntime as ort

    graph = onnx_bytes(model)
    if onnx_path is not None:
        atomic_write_bytes(onnx_path, graph)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    session = ort.InferenceSession(graph, sess_options=opts, providers=providers)

    def run(ids: np.ndarray) -> np.ndarray:
        out = session.run(None, {"ids": np.ascontiguousarray(ids, dtype=np.int64)})[0]
        return np.asarray(out, dtype=np.float32)

    return run


def embed(
    model: SmilesEncoder | Runner,
    vocab: Vocab,
    smiles: Sequence[str],
    batch_size: int = 256,
    max_len: int | None = None,
    pad_multiple: int = 8,
) -> np.ndarray:
    """Mean-pooled embeddings ``(n, d)`` float32, in input order.

    Molecules are batched by length (less padding) and each batch is padded to a multiple of
    `pad_multiple` (fewer distinct shapes for compiled graphs); neither changes the result.

    Args:
        model: An encoder (run eager) or a runner from `make_runner`.
        vocab: The encoder's vocabulary.
        smiles: Molecules to embed.
        batch_size: Molecules per forward pass.
        max_len: Token cap; the encoder's ``cfg.max_len`` when `model` is an encoder, else 100.
        pad_multiple: Pad each batch's length up to a multiple of this.
    """
    if isinstance(model, SmilesEncoder):
        max_len = max_len or model.cfg.max_len
        runner = make_runner(model, "eager")
    else:
        runner = model
    max_len = max_len or 100
    smiles = list(smiles)
    lengths = np.array([len(vocab.encode(s)) for s in smiles])
    order = np.argsort(lengths, kind="stable")
    parts: list[np.ndarray] = []
    for b in range(0, len(smiles), batch_size):
        idx = order[b : b + batch_size]
        ids = vocab.encode_batch([smiles[i] for i in idx], max_len)
        width = min(max_len, -(-ids.shape[1] // pad_multiple) * pad_multiple)
        if width > ids.shape[1]:
            ids = np.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=vocab.pad_id)
        parts.append(runner(ids))
    if not parts:
        raise EmptyDataError("no SMILES to embed")
    out = np.empty((len(smiles), parts[0].shape[1]), dtype=np.float32)
    out[order] = np.concatenate(parts)
    return out


def bits_and_embeddings(model: SmilesEncoder | Runner, vocab: Vocab) -> Callable[[Sequence[str]], np.ndarray]:
    """A featurizer for the ``tanimoto+rbf`` activity model: each molecule's Morgan bits
    (`chem.activity.morgan_features`) followed by its embedding, ``(n, 2048 + d)`` float64."""
    from level5_discovery.chem.activity import morgan_features

    def featurize(smiles: Sequence[str]) -> np.ndarray:
        smiles = list(smiles)
        bits = morgan_features(smiles).astype(np.float64)
        return np.hstack([bits, embed(model, vocab, smiles).astype(np.float64)])

    return featurize


# ------------------------------------------------------------------------------------ persistence
def save_encoder(model: SmilesEncoder, vocab: Vocab, folder: str | Path) -> Path:
    """Write ``model.pt`` (state dict), ``vocab.json`` and ``config.json`` into `folder`, atomically."""
    with atomic_dir(folder) as tmp:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, tmp / "model.pt")
        (tmp / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
        (tmp / "config.json").write_text(model.cfg.model_dump_json(indent=2), encoding="utf-8")
    return Path(folder)


def load_encoder(folder: str | Path, device: str = "auto") -> tuple[SmilesEncoder, Vocab]:
    """Inverse of `save_encoder`: the encoder (eval mode, on `device`) and its vocabulary."""
    folder = Path(folder)
    cfg = EncoderConfig.model_validate(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    vocab = Vocab.from_json((folder / "vocab.json").read_text(encoding="utf-8"))
    model = SmilesEncoder(len(vocab), cfg, vocab.pad_id)
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return model.to(pick_device(device)).eval(), vocab


# ------------------------------------------------------------------------------------ speed
def matmul_peak_gflops(
    n: int = 2048, repeats: int = 5, device: str = "auto", dtype: torch.dtype = torch.float32
) -> float:
    """The machine's measured matrix-multiply rate: best of `repeats` ``torch.mm`` of two n x n matrices."""
    dev = pick_device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dev, dtype)
    b = torch.randn(n, n, generator=gen).to(dev, dtype)
    torch.mm(a, b)  # warm-up (allocations, cuBLAS handles)
    best = float("inf")
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


def encoder_flops(cfg: EncoderConfig, n_tokens: float) -> float:
    """Forward-pass FLOPs of the pooled encoder for one molecule of `n_tokens` tokens.

    Counts the matrix multiplies (2 FLOPs per multiply-add): per layer the Q/K/V/output
    projections (8 L d^2), the feed-forward block (4 L d d_ff) and attention scores and
    mixing (4 L^2 d). Embedding look-ups, norms and softmax are left out (memory-bound).
    """
    d, f, n_l = cfg.d_model, cfg.d_ff, cfg.n_layers
    per_layer = 8 * n_tokens * d * d + 4 * n_tokens * d * f + 4 * n_tokens * n_tokens * d
    return float(n_l * per_layer)


def describe(model: SmilesEncoder) -> dict[str, Any]:
    """Parameter count and shape facts for reports."""
    return {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "d_model": model.cfg.d_model,
        "n_layers": model.cfg.n_layers,
        "n_heads": model.cfg.n_heads,
        "d_ff": model.cfg.d_ff,
    }
