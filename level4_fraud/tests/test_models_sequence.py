"""Card sequences (no future rows), the sequence transformer, the GRU baseline and their stages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score

from level4_fraud.models.sequence import (
    SequenceGRU,
    SequenceGRUConfig,
    SequenceTransformer,
    SequenceTransformerConfig,
    build_card_sequences,
    left_to_right_padded,
    run_stages,
)
from level4_fraud.models.training import TrainConfig, fit, load_model, predict_proba, save_model


def _tx(n: int = 300, cards: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2018-04-01")
    secs = np.sort(rng.integers(0, 10 * 86400, size=n))
    # Some transactions share a timestamp: ties are ordered by TRANSACTION_ID.
    secs[10:14] = secs[10]
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n, dtype=np.int64),
            "TX_DATETIME": t0 + pd.to_timedelta(secs, unit="s"),
            "CUSTOMER_ID": rng.integers(0, cards, size=n),
            "TX_AMOUNT": rng.gamma(2.0, 30.0, size=n),
            "F2": rng.normal(size=n),
        }
    )


def _reference(frame: pd.DataFrame, cols: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    # Brute force: for each row, filter the same card's rows up to (time, id) and keep the last ones.
    x = np.zeros((len(frame), max_len, len(cols)), np.float32)
    m = np.zeros((len(frame), max_len), bool)
    for i, row in enumerate(frame.itertuples(index=False)):
        same = frame[frame.CUSTOMER_ID == row.CUSTOMER_ID]
        past = same[
            (same.TX_DATETIME < row.TX_DATETIME)
            | ((same.TX_DATETIME == row.TX_DATETIME) & (same.TRANSACTION_ID <= row.TRANSACTION_ID))
        ].sort_values(["TX_DATETIME", "TRANSACTION_ID"])
        hist = past[cols].to_numpy(np.float32)[-max_len:]
        x[i, max_len - len(hist) :] = hist
        m[i, max_len - len(hist) :] = True
    return x, m


def test_card_sequences_known_answer():
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": [0, 1, 2, 3, 4],
            "TX_DATETIME": pd.to_datetime(
                ["2018-04-01 10:00"] * 2 + ["2018-04-02 00:00", "2018-04-03 00:00", "2018-04-04 00:00"]
            ),
            "CUSTOMER_ID": [7, 8, 7, 7, 7],
            "TX_AMOUNT": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    seq = build_card_sequences(frame, ["TX_AMOUNT"], max_len=3)
    assert seq.x.shape == (5, 3, 1) and seq.mask.dtype == bool
    assert seq.x[:, :, 0].tolist() == [[0, 0, 1], [0, 0, 2], [0, 1, 3], [1, 3, 4], [3, 4, 5]]
    assert seq.mask.tolist()[0] == [False, False, True]
    assert seq.lengths.tolist() == [1, 1, 2, 3, 3]


def test_card_sequences_match_brute_force_and_ignore_row_order():
    frame = _tx()
    cols = ["TX_AMOUNT", "F2"]
    seq = build_card_sequences(frame, cols, max_len=5)
    ref_x, ref_m = _reference(frame, cols, 5)
    np.testing.assert_array_equal(seq.x, ref_x)
    np.testing.assert_array_equal(seq.mask, ref_m)
    shuffled = frame.sample(frac=1.0, random_state=3)
    seq2 = build_card_sequences(shuffled, cols, max_len=5)
    back = np.argsort(shuffled.TRANSACTION_ID.to_numpy())
    np.testing.assert_array_equal(seq2.x[back], seq.x)


def test_card_sequences_never_contain_future_rows():
    frame = _tx(seed=1)
    cols = ["TX_AMOUNT", "F2"]
    before = build_card_sequences(frame, cols, max_len=8)
    cut = frame.TX_DATETIME.iloc[150]
    later = (cut < frame.TX_DATETIME) | ((cut == frame.TX_DATETIME) & (frame.TRANSACTION_ID > 150))
    changed = frame.copy()
    changed.loc[later, cols] = 1e6  # rewrite every later transaction
    after = build_card_sequences(changed, cols, max_len=8)
    early = (~later).to_numpy()
    np.testing.assert_array_equal(after.x[early], before.x[early])
    assert (after.x[~early] == 1e6).any()
    # Tied timestamps: the earlier id does not see the later one.
    ties = frame.iloc[10:14]
    assert (ties.TX_DATETIME.iloc[0] == ties.TX_DATETIME).all()


def test_card_sequences_rows_and_values_options():
    frame = _tx(seed=2)
    full = build_card_sequences(frame, ["TX_AMOUNT"], max_len=4)
    rows = np.array([299, 5, 120])
    sub = build_card_sequences(frame, ["TX_AMOUNT"], max_len=4, rows=rows)
    np.testing.assert_array_equal(sub.x, full.x[rows])
    np.testing.assert_array_equal(sub.rows, rows)
    values = frame[["TX_AMOUNT"]].to_numpy() * 2
    doubled = build_card_sequences(frame, [], max_len=4, values=values)
    np.testing.assert_allclose(doubled.x, full.x * 2)
    with pytest.raises(KeyError):
        build_card_sequences(frame.drop(columns="CUSTOMER_ID"), ["TX_AMOUNT"], max_len=4)


def _seq_inputs(n: int = 8, length: int = 6, f: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, length, f, generator=g)
    lengths = torch.randint(1, length + 1, (n,), generator=g)
    mask = torch.arange(length)[None, :] >= (length - lengths)[:, None]
    x = x * mask[:, :, None]
    return x, mask


def _transformer(**kw) -> SequenceTransformer:
    torch.manual_seed(0)
    cfg = {"n_features": 3, "max_len": 8, "d_model": 16, "n_heads": 2, "n_layers": 2, "ff_dim": 32, **kw}
    return SequenceTransformer(SequenceTransformerConfig(**cfg)).eval()


def _gru() -> SequenceGRU:
    torch.manual_seed(0)
    return SequenceGRU(SequenceGRUConfig(n_features=3, max_len=8, hidden=12)).eval()


def test_transformer_has_lora_targetable_linear_layers_by_name():
    names = {n.rsplit(".", 1)[-1]: type(m) for n, m in _transformer().named_modules()}
    for target in ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]:
        assert names[target] is torch.nn.Linear


@pytest.mark.parametrize("make", [_transformer, _gru], ids=["transformer", "gru"])
def test_padding_never_changes_the_score(make):
    model = make()
    x, mask = _seq_inputs()
    with torch.no_grad():
        out = model(x, mask)
        assert out.shape == (8,)
        noisy = x + torch.randn_like(x) * (~mask)[:, :, None]  # garbage in padded slots
        torch.testing.assert_close(model(noisy, mask), out)
        # More left padding (a longer window, same history) scores the same.
        wide_x = torch.cat([torch.zeros(8, 2, 3), x], dim=1)
        wide_m = torch.cat([torch.zeros(8, 2, dtype=torch.bool), mask], dim=1)
        torch.testing.assert_close(model(wide_x, wide_m), out, rtol=1e-5, atol=1e-6)


def test_gru_equals_running_the_unpadded_history():
    model = _gru()
    x, mask = _seq_inputs()
    with torch.no_grad():
        out = model(x, mask)
        for i in range(len(x)):
            real = x[i, mask[i]][None]
            _, h = model.gru(real)
            torch.testing.assert_close(model.head(h[-1]).squeeze(-1), out[i : i + 1], rtol=1e-5, atol=1e-6)


def test_left_to_right_padded():
    x = torch.arange(8.0).view(2, 4, 1)
    out = left_to_right_padded(x, torch.tensor([2, 4]))
    assert out[:, :, 0].tolist() == [[2, 3, 0, 1], [4, 5, 6, 7]]


@pytest.mark.parametrize("make", [_transformer, _gru], ids=["transformer", "gru"])
def test_stages_compose_to_forward_and_split_the_parameters(make):
    model = make().train()  # dropout on: the same generator state must give the same output
    x, mask = _seq_inputs()
    s0, s1 = model.stages()
    torch.manual_seed(5)
    whole = model(x, mask)
    torch.manual_seed(5)
    composed = run_stages((s0, s1), x, mask)
    torch.testing.assert_close(composed, whole, rtol=0, atol=0)
    p0 = {id(p) for p in s0.parameters()}
    p1 = {id(p) for p in s1.parameters()}
    assert p0 and p1 and not (p0 & p1)
    assert p0 | p1 == {id(p) for p in model.parameters()}
    # Gradients through the composition equal those of forward.
    model.eval()
    g_whole = torch.autograd.grad(model(x, mask).sum(), list(model.parameters()))
    g_comp = torch.autograd.grad(run_stages((s0, s1), x, mask).sum(), list(model.parameters()))
    for a, b in zip(g_whole, g_comp, strict=True):
        torch.testing.assert_close(a, b)


def test_transformer_stage_boundary_carries_a_float_mask_and_custom_split():
    model = _transformer(n_layers=3)
    x, mask = _seq_inputs()
    s0, s1 = model.stages(split=2)
    h, m = s0(x, mask)
    assert h.shape == (8, 6, 16) and m.dtype == torch.float32
    assert len(s0.blocks) == 2 and len(s1.blocks) == 1
    with torch.no_grad():
        torch.testing.assert_close(s1(h, m), model(x, mask))
    with pytest.raises(ValueError):
        model.stages(split=4)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, 3), torch.ones(1, 9, dtype=torch.bool))


def _history_task(n: int, seed: int, length: int = 6):
    # Fraud = the current amount far above the card's earlier amounts: needs the history.
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0, 0.6, size=(n, 1))
    amounts = base * rng.lognormal(0, 0.2, size=(n, length))
    y = (rng.random(n) < 0.15).astype(np.float32)
    amounts[y == 1, -1] *= rng.uniform(2.5, 4, size=int(y.sum()))
    amounts[y == 0, -1] *= rng.uniform(0.5, 1.5, size=int((y == 0).sum()))
    # Large genuine cards make the raw amount alone a weak signal.
    x = np.log(amounts)[:, :, None].astype(np.float32)
    mask = np.ones((n, length), bool)
    return x, mask, y


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_sequence_models_learn_a_history_dependent_task(kind):
    x, m, y = _history_task(2000, 0)
    xv, mv, yv = _history_task(800, 1)
    torch.manual_seed(0)
    if kind == "gru":
        model = SequenceGRU(SequenceGRUConfig(n_features=1, hidden=12))
    else:
        model = _transformer(n_features=1)
    cfg = TrainConfig(epochs=8, batch_size=128, learning_rate=5e-3, device="cpu")
    fit(model, [x, m], y, cfg, val=([xv, mv], yv))
    ap = average_precision_score(yv, predict_proba(model, [xv, mv]))
    current_only = average_precision_score(yv, xv[:, -1, 0])
    assert ap > 0.85 and ap > current_only + 0.2


def test_sequence_models_save_and_load(tmp_path):
    x, mask = _seq_inputs()
    for i, model in enumerate([_transformer(), _gru()]):
        save_model(model, tmp_path / str(i))
        back = load_model(tmp_path / str(i))
        assert type(back) is type(model)
        np.testing.assert_array_equal(
            predict_proba(model, [x.numpy(), mask.numpy()]), predict_proba(back, [x.numpy(), mask.numpy()])
        )
