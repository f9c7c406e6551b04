"""Tabular preprocessing, the embedding MLP and the shared training loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score

from level4_fraud.models.torch_models import (
    UNKNOWN,
    TabularMLP,
    TabularMLPConfig,
    TabularPreprocessor,
    embedding_size,
)
from level4_fraud.models.training import (
    TrainConfig,
    auto_pos_weight,
    count_parameters,
    fit,
    focal_loss,
    load_model,
    make_loss,
    predict_proba,
    read_model_meta,
    resolve_device,
    save_model,
)

FAST = TrainConfig(epochs=8, batch_size=128, learning_rate=5e-3, patience=3, threads=1, device="cpu")


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [10.0, 20.0, 30.0, np.nan],
            "hour": [1.0, 1.0, 1.0, 1.0],
            "channel": ["pos", "ecom", "pos", None],
        }
    )


def test_preprocessor_standardises_with_training_statistics():
    pre = TabularPreprocessor(["amount", "hour"], ["channel"]).fit(_frame())
    # nan-aware statistics: amount mean 20, population std sqrt(200/3); constant hour gets std 1.
    assert pre.mean_.tolist() == pytest.approx([20.0, 1.0])
    assert pre.std_.tolist() == pytest.approx([math.sqrt(200 / 3), 1.0])
    x_num, _ = pre.transform(
        pd.DataFrame({"amount": [20.0, 40.0, np.nan], "hour": [1.0, 3.0, 1.0], "channel": "pos"})
    )
    assert x_num.dtype == np.float32
    np.testing.assert_allclose(x_num[:, 0], [0.0, 20 / math.sqrt(200 / 3), 0.0], rtol=1e-6)
    np.testing.assert_allclose(x_num[:, 1], [0.0, 2.0, 0.0])


def test_preprocessor_clips_extremes():
    pre = TabularPreprocessor(["amount"], clip=3.0).fit(pd.DataFrame({"amount": [0.0, 1.0, 2.0]}))
    x_num, x_cat = pre.transform(pd.DataFrame({"amount": [1e9, -1e9, np.inf]}))
    assert x_num[:, 0].tolist() == [3.0, -3.0, 3.0]
    assert x_cat.shape == (3, 0)


def test_preprocessor_indexes_categories_by_frequency_unknown_and_missing_to_zero():
    pre = TabularPreprocessor(["amount"], ["channel"]).fit(_frame())
    assert pre.vocab_["channel"] == ["pos", "ecom"]  # pos seen twice, first
    assert pre.cardinalities == [3]
    _, x_cat = pre.transform(pd.DataFrame({"amount": [1.0] * 4, "channel": ["ecom", "pos", "atm", None]}))
    assert x_cat[:, 0].tolist() == [2, 1, UNKNOWN, UNKNOWN]


def test_preprocessor_caps_vocabulary():
    frame = pd.DataFrame({"c": ["a"] * 3 + ["b"] * 2 + ["c"]})
    pre = TabularPreprocessor([], ["c"], max_categories=2).fit(frame)
    _, x_cat = pre.transform(frame)
    assert pre.vocab_["c"] == ["a", "b"]
    assert sorted(set(x_cat[:, 0].tolist())) == [0, 1, 2]


def test_preprocessor_save_load_round_trip(tmp_path):
    pre = TabularPreprocessor(["amount", "hour"], ["channel"]).fit(_frame())
    path = pre.save(tmp_path / "pre.json")
    json.loads(path.read_text())  # plain JSON
    back = TabularPreprocessor.load(path)
    probe = pd.DataFrame({"amount": [5.0, np.nan], "hour": [2.0, 1.0], "channel": ["ecom", "zzz"]})
    for a, b in zip(pre.transform(probe), back.transform(probe), strict=True):
        np.testing.assert_array_equal(a, b)


def test_preprocessor_refuses_missing_columns_and_unfitted_use():
    pre = TabularPreprocessor(["amount"], ["channel"])
    with pytest.raises(RuntimeError):
        pre.transform(_frame())
    with pytest.raises(KeyError, match="channel"):
        pre.fit(_frame().drop(columns="channel"))


def test_embedding_size_rule():
    assert embedding_size(2, 16) == 2
    assert embedding_size(100, 16) == 16
    assert embedding_size(10, 16) == round(1.6 * 10**0.56)


def test_tabular_mlp_forward_shape_and_wrong_categorical_width():
    model = TabularMLP(TabularMLPConfig(n_numeric=3, cardinalities=[4, 7]))
    out = model(torch.randn(5, 3), torch.randint(0, 4, (5, 2)))
    assert out.shape == (5,)
    with pytest.raises(ValueError, match="categorical"):
        model(torch.randn(5, 3), torch.randint(0, 4, (5, 1)))


def _categorical_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Fraud lives in one category of a field (plus a numeric tilt): only the embedding can find it.
    rng = np.random.default_rng(seed)
    cat = rng.integers(1, 6, size=(n, 1))
    x = rng.normal(size=(n, 2)).astype(np.float32)
    logit = -3.5 + 3.0 * (cat[:, 0] == 3) + 1.0 * x[:, 0]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, cat.astype(np.int64), y


def test_fit_learns_categorical_signal_and_keeps_best_epoch():
    x, c, y = _categorical_task(3000, 0)
    xv, cv, yv = _categorical_task(1500, 1)
    model = TabularMLP(TabularMLPConfig(n_numeric=2, cardinalities=[6], hidden=[16]))
    res = fit(model, [x, c], y, FAST, val=([xv, cv], yv))
    p = predict_proba(model, [xv, cv])
    ap = average_precision_score(yv, p)
    oracle = average_precision_score(yv, 3.0 * (cv[:, 0] == 3) + xv[:, 0])
    assert ap > 0.9 * oracle
    # The weights kept are those of the best validation epoch, and its AP is the one reported.
    assert res.best_val_ap == pytest.approx(ap, abs=1e-9)
    aps = [h["val_ap"] for h in res.history]
    assert res.best_epoch == int(np.argmax(aps)) + 1
    assert not model.training


def test_fit_stops_after_patience_epochs_without_improvement():
    x, c, y = _categorical_task(600, 2)
    model = TabularMLP(TabularMLPConfig(n_numeric=2, cardinalities=[6], hidden=[8]))
    cfg = FAST.model_copy(update={"epochs": 40, "patience": 2, "learning_rate": 0.0 + 1e-12})
    # A negligible learning rate never improves on the first epoch's AP: epoch 1 + 2 patience.
    res = fit(model, [x, c], y, cfg, val=([x, c], y))
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 1


def test_fit_trains_only_parameters_that_require_grad_and_restores_threads():
    x, c, y = _categorical_task(400, 3)
    model = TabularMLP(TabularMLPConfig(n_numeric=2, cardinalities=[6], hidden=[8]))
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    frozen = model.encoder.embeddings[0].weight.clone()
    head = model.net[0].weight.clone()
    before = torch.get_num_threads()
    fit(model, [x, c], y, FAST.model_copy(update={"epochs": 2, "threads": 1}))
    assert torch.get_num_threads() == before
    assert torch.equal(model.encoder.embeddings[0].weight, frozen)
    assert not torch.equal(model.net[0].weight, head)
    assert count_parameters(model)[0] < count_parameters(model)[1]


def test_fit_is_reproducible_for_a_seed():
    x, c, y = _categorical_task(500, 4)
    preds = []
    for _ in range(2):
        torch.manual_seed(123)
        model = TabularMLP(TabularMLPConfig(n_numeric=2, cardinalities=[6], hidden=[8]))
        fit(model, [x, c], y, FAST.model_copy(update={"epochs": 2}))
        preds.append(predict_proba(model, [x, c]))
    np.testing.assert_array_equal(preds[0], preds[1])


def test_fit_rejects_misaligned_inputs():
    model = TabularMLP(TabularMLPConfig(n_numeric=2))
    with pytest.raises(ValueError, match="rows"):
        fit(model, [np.zeros((5, 2), np.float32)], np.zeros(4), FAST)


def test_auto_pos_weight_and_bce_weighting():
    y = np.array([1] + [0] * 99, dtype=np.float32)
    assert auto_pos_weight(y) == pytest.approx(math.sqrt(99))
    assert auto_pos_weight(np.zeros(3)) == 1.0
    loss = make_loss(TrainConfig(pos_weight=4.0), y)
    z = torch.zeros(2)
    # At logit 0 each term is log 2; the positive counts 4 times.
    assert float(loss(z, torch.tensor([1.0, 0.0]))) == pytest.approx((4 * math.log(2) + math.log(2)) / 2)


def test_focal_loss_known_values():
    z = torch.tensor([2.0, -1.0, 0.5])
    t = torch.tensor([1.0, 0.0, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, t)
    assert float(focal_loss(z, t, gamma=0.0, alpha=None)) == pytest.approx(float(bce))
    # gamma down-weights the confident, correct first example by (1 - p)^gamma.
    p = torch.sigmoid(torch.tensor(2.0))
    one = focal_loss(z[:1], t[:1], gamma=2.0, alpha=None)
    assert float(one) == pytest.approx(float(-torch.log(p) * (1 - p) ** 2), rel=1e-5)
    assert float(focal_loss(z[:1], t[:1], gamma=2.0, alpha=0.25)) == pytest.approx(
        0.25 * float(one), rel=1e-5
    )


def test_focal_loss_config_trains():
    x, c, y = _categorical_task(1500, 5)
    model = TabularMLP(TabularMLPConfig(n_numeric=2, cardinalities=[6], hidden=[16]))
    fit(model, [x, c], y, FAST.model_copy(update={"loss": "focal", "epochs": 6}))
    assert average_precision_score(y, predict_proba(model, [x, c])) > 2 * y.mean()


def test_save_load_round_trip(tmp_path):
    model = TabularMLP(TabularMLPConfig(n_numeric=2, cardinalities=[6], hidden=[8]))
    save_model(model, tmp_path / "m", extra={"features": ["a", "b"]})
    assert read_model_meta(tmp_path / "m")["extra"] == {"features": ["a", "b"]}
    back = load_model(tmp_path / "m")
    assert isinstance(back, TabularMLP) and back.config == model.config
    x, c, _ = _categorical_task(50, 6)
    np.testing.assert_array_equal(predict_proba(model, [x, c]), predict_proba(back, [x, c]))


def test_save_refuses_models_without_config_and_load_refuses_foreign_classes(tmp_path):
    with pytest.raises(TypeError):
        save_model(torch.nn.Linear(2, 1), tmp_path / "x")
    model = TabularMLP(TabularMLPConfig(n_numeric=1))
    save_model(model, tmp_path / "m")
    meta = read_model_meta(tmp_path / "m")
    meta["class"] = "os.system"
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="refusing"):
        load_model(tmp_path / "m")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing")


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
