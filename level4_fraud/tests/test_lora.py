"""LoRA on the sequence transformer: frozen base, adapter share, save/load, few-label adaptation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from level4_fraud.lora import (
    AdaptationConfig,
    LoraSettings,
    SequenceSet,
    apply_lora,
    base_weights,
    compare_adaptation,
    load_adapter,
    pretrain,
    save_adapter,
)
from level4_fraud.models.sequence import SequenceTransformer, SequenceTransformerConfig
from level4_fraud.models.training import TrainConfig, count_parameters, fit, predict_proba

SMALL = SequenceTransformerConfig(n_features=3, max_len=8, d_model=32, n_heads=2, ff_dim=64)


def population(n: int, seed: int, *, mu=3.0, mu_sd=0.5, sd=0.3, jump=1.2, ecom=0.3, night_w=1.0, length=8):
    """Card sequences of [log amount, ecom, night]; a fraud is a jump above the card's habit.

    Population B (another bank) spends on another scale, online more often, and its frauds
    are not night-time ones: the parameters say how.
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(mu, mu_sd, size=(n, 1))
    amount = base + rng.normal(0, sd, size=(n, length))
    ecom_flag = (rng.random((n, length)) < ecom).astype(np.float32)
    night = (rng.random((n, length)) < 0.2).astype(np.float32)
    y = (rng.random(n) < 0.1).astype(np.float32)
    k = int(y.sum())
    amount[y == 1, -1] += rng.uniform(jump * 0.6, jump * 1.6, size=k)
    night[y == 1, -1] = (rng.random(k) < 0.2 + 0.5 * night_w).astype(np.float32)
    lengths = rng.integers(2, length + 1, size=n)
    mask = np.arange(length)[None, :] >= (length - lengths)[:, None]
    x = np.stack([amount, ecom_flag, night], axis=-1).astype(np.float32) * mask[:, :, None]
    return SequenceSet(x, mask, y)


BANK_B = {"mu": 5.0, "mu_sd": 0.9, "sd": 0.5, "jump": 1.6, "ecom": 0.7, "night_w": 0.0}


def _model(cfg: SequenceTransformerConfig = SMALL) -> SequenceTransformer:
    torch.manual_seed(0)
    return SequenceTransformer(cfg)


def test_default_adapter_trains_under_5_percent_of_the_parameters():
    model = _model(SequenceTransformerConfig(n_features=3))  # the level's default architecture
    peft_model = apply_lora(model, LoraSettings())
    trainable, total = count_parameters(peft_model)
    assert 0 < trainable / total < 0.05
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or ".modules_to_save." in n for n in names)
    assert any("q_proj.lora_A" in n for n in names) and any("v_proj.lora_B" in n for n in names)
    assert not any("k_proj.lora" in n for n in names)
    # The model passed in is not modified (peft works on a copy).
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_apply_lora_rejects_targets_the_model_lacks():
    with pytest.raises(ValueError, match="not in the model"):
        apply_lora(_model(), LoraSettings(target_modules=["query"]))


def test_training_changes_only_the_adapter_weights():
    model = _model()
    data = population(256, 0)
    peft_model = apply_lora(model, LoraSettings(r=2, alpha=4))
    before = {k: v.clone() for k, v in base_weights(peft_model).items()}
    adapters_before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert set(before) == set(model.state_dict())  # every pretrained weight is accounted for
    fit(
        peft_model,
        data.inputs,
        data.y,
        TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2, device="cpu"),
    )
    after = base_weights(peft_model)
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)
    changed = [
        n
        for n, p in peft_model.named_parameters()
        if p.requires_grad and not torch.equal(p, adapters_before[n])
    ]
    assert any("lora_B" in n for n in changed) and any("modules_to_save" in n for n in changed)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_saved_adapter_loads_back_with_identical_predictions(tmp_path):
    model = _model()
    data = population(200, 1)
    peft_model = apply_lora(model, LoraSettings(r=2, alpha=4))
    fit(
        peft_model,
        data.inputs,
        data.y,
        TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2, device="cpu"),
    )
    folder = save_adapter(peft_model, tmp_path / "adapter")
    files = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    # The adapter file holds the adapters and head copy only, far less than the base model.
    base_bytes = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert (folder / "adapter_model.safetensors").stat().st_size < 0.2 * base_bytes
    back = load_adapter(model, folder)
    np.testing.assert_array_equal(predict_proba(back, data.inputs), predict_proba(peft_model, data.inputs))
    assert not np.array_equal(predict_proba(model, data.inputs), predict_proba(back, data.inputs))
    with pytest.raises(FileNotFoundError):
        load_adapter(model, tmp_path / "missing")


def test_lora_beats_training_from_scratch_with_few_labels():
    pop_a, val_a = population(2000, 0), population(800, 1)
    train_b, val_b, test_b = (
        population(100, 2, **BANK_B),
        population(100, 3, **BANK_B),
        population(2000, 4, **BANK_B),
    )
    pretrained, _ = pretrain(
        SMALL, pop_a, val_a, TrainConfig(epochs=4, batch_size=128, learning_rate=3e-3, device="cpu")
    )
    fast = TrainConfig(epochs=15, batch_size=64, patience=5, device="cpu")
    cfg = AdaptationConfig(
        lora=LoraSettings(r=2, alpha=4),
        lora_train=fast.model_copy(update={"learning_rate": 1e-2, "weight_decay": 0.0}),
        finetune=fast.model_copy(update={"learning_rate": 1e-3}),
        scratch=fast.model_copy(update={"learning_rate": 3e-3}),
    )
    result = compare_adaptation(pretrained, train_b, val_b, test_b, cfg)
    table = result.table.set_index("method")
    assert list(table.index) == ["pretrained_only", "lora", "full_finetune", "scratch"]
    assert table.loc["lora", "trainable_share"] < 0.05
    assert table.loc["full_finetune", "trainable_share"] == 1.0
    assert table.loc["lora", "ap"] > table.loc["scratch", "ap"] + 0.1
    assert table.loc["lora", "ap"] > table.loc["pretrained_only", "ap"]
    assert (table.loc[["lora", "full_finetune", "scratch"], "seconds"] > 0).all()
    assert set(result.models) == {"lora", "full_finetune", "scratch"}


def test_sequence_set_checks_alignment():
    with pytest.raises(ValueError, match="align"):
        SequenceSet(np.zeros((3, 2, 1)), np.ones((3, 2), bool), np.zeros(2))
