"""Distillation of a teacher's scores into the student MLP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from level4_fraud.distill import (
    DistillConfig,
    StudentConfig,
    StudentMLP,
    bernoulli_kl,
    distill,
    distillation_loss,
    soften,
)
from level4_fraud.models.training import TrainConfig, load_model, predict_proba, save_model

SCALE = np.array([50.0, 1.0, 3.0, 1.0, 10.0, 1.0, 1.0, 1.0])
SHIFT = np.array([80.0, 0.0, 12.0, 0.0, 500.0, 0.0, 0.0, 0.0])


def _task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw features on very different scales, a non-linear fraud logit, ~4 % positives."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8))
    logit = -4.6 + 1.8 * z[:, 0] + 1.4 * z[:, 1] * z[:, 2] + 2.0 * (z[:, 3] > 1.2) - 0.8 * z[:, 4] ** 2 + 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return (z * SCALE + SHIFT).astype(np.float32), y, logit


def _teacher(logit: np.ndarray, seed: int) -> np.ndarray:
    # A good but imperfect ensemble: the true logit plus noise.
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(logit + rng.normal(0, 0.4, size=len(logit)))))


def test_soften_known_values():
    p = torch.tensor([0.5, 0.9, 0.01])
    torch.testing.assert_close(soften(p, 1.0), p)
    s = soften(p, 2.0)
    assert s[0].item() == pytest.approx(0.5)
    assert s[1].item() == pytest.approx(1 / (1 + math.sqrt(1 / 9)), rel=1e-5)  # sigmoid(log 9 / 2) = 3/4
    assert 0.01 < s[2].item() < 0.5


def test_kl_is_zero_when_student_matches_teacher_and_positive_otherwise():
    p = torch.tensor([0.02, 0.3, 0.97])
    logits = torch.log(p / (1 - p))
    torch.testing.assert_close(bernoulli_kl(p, logits), torch.zeros(3), atol=1e-5, rtol=0)
    assert (bernoulli_kl(p, logits + 1.0) > 0).all()
    # With alpha=1 the whole loss is the tempered KL: zero when the tempered logits match.
    targets = torch.stack([torch.full((3,), float("nan")), p], dim=1)
    loss = distillation_loss(logits, targets, temperature=3.0, alpha=1.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


def test_hard_term_uses_only_labelled_rows():
    logits = torch.tensor([0.0, 0.0, 5.0], requires_grad=True)
    targets = torch.tensor([[1.0, 0.5], [float("nan"), 0.5], [0.0, 0.5]])
    loss = distillation_loss(logits, targets, temperature=1.0, alpha=0.0)
    expected = (math.log(2) + math.log1p(math.exp(5.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[1].item() == 0.0
    unlabelled = torch.tensor([[float("nan"), 0.5]])
    assert distillation_loss(torch.zeros(1), unlabelled, temperature=1.0, alpha=0.5).item() == pytest.approx(
        0.0
    )


def test_student_standardises_raw_inputs_and_round_trips(tmp_path):
    x, _, _ = _task(500, 0)
    torch.manual_seed(0)
    student = StudentMLP(StudentConfig(n_features=8, hidden=[4])).set_standardisation(x)
    np.testing.assert_allclose(student.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(1 / student.scale.numpy(), x.std(0), rtol=1e-4)
    with torch.no_grad():
        manual = student.net(torch.as_tensor((x - x.mean(0)) / x.std(0))).squeeze(-1)
        torch.testing.assert_close(student(torch.as_tensor(x)), manual, rtol=1e-4, atol=1e-5)
    save_model(student, tmp_path / "s")
    back = load_model(tmp_path / "s")
    np.testing.assert_array_equal(predict_proba(back, [x]), predict_proba(student, [x]))


def test_distilled_student_keeps_teacher_ap_and_beats_hard_labels_when_labels_are_scarce():
    x, y, logit = _task(8000, 1)
    xv, yv, logit_v = _task(1500, 2)
    xt, yt, logit_t = _task(5000, 3)
    teacher_train, teacher_val, teacher_test = (
        _teacher(logit, 10),
        _teacher(logit_v, 12),
        _teacher(logit_t, 11),
    )
    # Only 600 of the training labels have arrived (about 40 frauds); the teacher scored every row.
    known = np.random.default_rng(4).random(len(y)) < 600 / len(y)
    y_scarce = np.where(known, y, np.nan)
    student = distill(
        x, y_scarce, teacher_train, DistillConfig(), val=(xv, yv), val_teacher_probs=teacher_val
    ).model
    hard = distill(x, y_scarce, teacher_train, DistillConfig(alpha=0.0), val=(xv, yv)).model
    ap_teacher = average_precision_score(yt, teacher_test)
    ap_student = average_precision_score(yt, predict_proba(student, [xt]))
    ap_hard = average_precision_score(yt, predict_proba(hard, [xt]))
    assert ap_student >= 0.95 * ap_teacher
    assert ap_student > ap_hard + 0.05


def test_fidelity_selection_scores_epochs_by_kl_to_the_teacher():
    x, y, logit = _task(1000, 5)
    xv, _, logit_v = _task(300, 6)
    cfg = DistillConfig(train=TrainConfig(epochs=3, batch_size=256, device="cpu"))
    res = distill(
        x, y, _teacher(logit, 0), cfg, val=(xv, np.full(300, np.nan)), val_teacher_probs=_teacher(logit_v, 1)
    )
    scores = [h["val_score"] for h in res.fit.history]
    assert all(s <= 0 for s in scores) and res.fit.best_val_ap == max(scores)
    with pytest.raises(ValueError, match="val_teacher_probs"):
        distill(x, y, _teacher(logit, 0), cfg, val_teacher_probs=_teacher(logit_v, 1))


def test_distill_rejects_bad_inputs():
    x, y, logit = _task(50, 5)
    with pytest.raises(ValueError, match="align"):
        distill(x, y[:-1], _teacher(logit, 0))
    with pytest.raises(ValueError, match="probabilities"):
        distill(x, y, logit)
    with pytest.raises(ValueError, match="labelled"):
        distill(x, np.full(50, np.nan), _teacher(logit, 0), DistillConfig(alpha=0.5))
