"""SMILES tokenizer and the self-supervised encoder: round trips, pretraining, inference paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from level5_discovery.chem.datasets import moses_train_smiles
from level5_discovery.chem.encoder import (
    EncoderConfig,
    SmilesEncoder,
    embed,
    encoder_flops,
    load_encoder,
    make_runner,
    mask_tokens,
    masked_token_loss,
    matmul_peak_gflops,
    nt_xent,
    pretrain_encoder,
    save_encoder,
    unigram_masked_loss,
)
from level5_discovery.chem.smiles_tokens import build_vocab, randomize_smiles, tokenize

TINY = EncoderConfig(
    d_model=64,
    n_layers=2,
    n_heads=4,
    d_ff=128,
    dropout=0.0,
    epochs=4,
    max_steps=200,
    batch_size=32,
    lr=3e-3,
    warmup_steps=5,
    log_every=10,
    randomize=False,
    device="cpu",
)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    # Two threads on a shared two-core box spin against each other; one is several times faster.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smiles() -> list[str]:
    return moses_train_smiles(2300)


@pytest.fixture(scope="module")
def pretrained(one_thread: None, smiles: list[str]) -> tuple[SmilesEncoder, object, list[dict[str, float]]]:
    return pretrain_encoder(smiles[:2000], TINY, seed=0)


def test_tokenizer_splits_by_the_schwaller_regex() -> None:
    assert tokenize("C[C@@H](Cl)c1ccc%12Br") == [
        "C",
        "[C@@H]",
        "(",
        "Cl",
        ")",
        "c",
        "1",
        "c",
        "c",
        "c",
        "%12",
        "Br",
    ]
    assert tokenize("O=C=O") == ["O", "=", "C", "=", "O"]


def test_tokenizer_round_trips_100_moses_molecules(smiles: list[str]) -> None:
    mols = smiles[:100]
    vocab = build_vocab(mols)
    assert vocab.tokens[:4] == ("<pad>", "<mask>", "<cls>", "<unk>")
    ids = vocab.encode_batch(mols)
    assert ids.shape == (100, max(len(tokenize(s)) + 1 for s in mols))
    assert (ids[:, 0] == vocab.cls_id).all()
    assert vocab.decode_batch(ids) == mols
    assert all(vocab.decode(vocab.encode(s)) == s for s in mols)


def test_unseen_tokens_become_unk_and_vocab_survives_json() -> None:
    vocab = build_vocab(["CCO", "CCC"])
    assert vocab.tokens == ("<pad>", "<mask>", "<cls>", "<unk>", "C", "O")  # C (5 times) before O
    assert vocab.encode("CN") == [vocab.cls_id, vocab.index["C"], vocab.unk_id]
    assert type(vocab).from_json(vocab.to_json()) == vocab


def test_random_smiles_are_the_same_molecule_and_seeded(smiles: list[str]) -> None:
    mols = smiles[:30]
    a, b, c = randomize_smiles(mols, 1), randomize_smiles(mols, 1), randomize_smiles(mols, 2)
    assert a == b and a != c and a != mols
    canon = [Chem.CanonSmiles(s) for s in mols]
    assert [Chem.CanonSmiles(s) for s in a] == canon


def test_bert_masking_proportions_and_specials_untouched() -> None:
    vocab = build_vocab(["CCOc1ccccc1N"])
    ids = torch.randint(vocab.n_special, len(vocab), (400, 50))
    ids[:, 0] = vocab.cls_id
    ids[:, 40:] = vocab.pad_id
    inputs, labels = mask_tokens(ids, vocab, 0.15, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 40:].any()
    assert chosen.float().sum() / (400 * 39) == pytest.approx(0.15, abs=0.01)
    assert (inputs[chosen] == vocab.mask_id).float().mean() == pytest.approx(0.8, abs=0.02)
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_nt_xent_is_small_for_matching_views_and_large_for_shuffled() -> None:
    a = torch.eye(8)
    assert float(nt_xent(a, a.clone(), 0.1)) < 1e-3
    assert float(nt_xent(a, a[torch.randperm(8, generator=torch.Generator().manual_seed(0))], 0.1)) > 5.0


def test_masked_lm_pretraining_beats_unigram_on_held_out(pretrained: tuple, smiles: list[str]) -> None:
    model, vocab, history = pretrained
    assert history[0]["step"] == 0 and history[-1]["step"] == TINY.max_steps
    assert history[-1]["mlm_loss"] < 0.65 * history[0]["mlm_loss"]
    held_out = smiles[2000:]
    ours = masked_token_loss(model, vocab, held_out, seed=1)
    unigram = unigram_masked_loss(vocab, smiles[:2000], held_out, seed=1)
    assert ours < unigram - 0.15, (ours, unigram)


def test_embeddings_are_deterministic_for_a_seed_and_padding_free(
    one_thread: None, smiles: list[str]
) -> None:
    cfg = TINY.model_copy(update={"max_steps": 5, "dropout": 0.1, "randomize": True})
    m1, v1, _ = pretrain_encoder(smiles[:300], cfg, seed=3)
    m2, v2, _ = pretrain_encoder(smiles[:300], cfg, seed=3)
    m3, _, _ = pretrain_encoder(smiles[:300], cfg, seed=4)
    mols = smiles[2000:2050]
    e1 = embed(m1, v1, mols, batch_size=7)
    assert e1.shape == (50, cfg.d_model) and e1.dtype == np.float32
    assert np.array_equal(e1, embed(m2, v2, mols, batch_size=7))
    assert not np.allclose(e1, embed(m3, v1, mols, batch_size=7))
    # One molecule alone, or batched with longer ones (more padding), gets the same embedding.
    assert np.allclose(e1, embed(m1, v1, mols, batch_size=50), atol=1e-5)
    assert np.allclose(e1[:1], embed(m1, v1, mols[:1]), atol=1e-5)


def test_onnx_runner_matches_eager(pretrained: tuple, smiles: list[str], tmp_path: Path) -> None:
    model, vocab, _ = pretrained
    mols = smiles[2000:2200]
    eager = embed(model, vocab, mols, batch_size=64)
    onnx = embed(make_runner(model, "onnx", tmp_path / "enc.onnx"), vocab, mols, batch_size=64)
    assert (tmp_path / "enc.onnx").is_file()
    assert np.abs(eager - onnx).max() < 1e-4


def test_save_load_round_trip_gives_identical_embeddings(
    pretrained: tuple, smiles: list[str], tmp_path: Path
) -> None:
    model, vocab, _ = pretrained
    save_encoder(model, vocab, tmp_path / "enc")
    loaded, loaded_vocab = load_encoder(tmp_path / "enc", device="cpu")
    assert loaded_vocab == vocab and loaded.cfg == model.cfg
    mols = smiles[2000:2100]
    assert np.array_equal(embed(model, vocab, mols), embed(loaded, loaded_vocab, mols))


def test_flop_count_by_hand_and_matmul_peak_is_measured() -> None:
    cfg = EncoderConfig(d_model=8, n_heads=2, d_ff=16, n_layers=2)
    # per layer: 8*L*d^2 + 4*L*d*f + 4*L^2*d with L=3: 1536 + 1536 + 288
    assert encoder_flops(cfg, 3) == 2 * (1536 + 1536 + 288)
    assert matmul_peak_gflops(n=256, repeats=2, device="cpu") > 0.1


def test_contrastive_term_pulls_two_random_smiles_of_a_molecule_together(
    one_thread: None, smiles: list[str]
) -> None:
    cfg = TINY.model_copy(
        update={
            "d_model": 32,
            "d_ff": 64,
            "max_steps": 30,
            "epochs": 10,
            "contrastive_weight": 1.0,
            "randomize": True,
        }
    )
    _, _, history = pretrain_encoder(smiles[:300], cfg, seed=0)
    # NT-Xent over a batch of 32 molecules starts near log(63) = 4.1 (views indistinguishable).
    assert history[0]["contrastive_loss"] > 3.5
    assert history[-1]["contrastive_loss"] < 0.75 * history[0]["contrastive_loss"]
