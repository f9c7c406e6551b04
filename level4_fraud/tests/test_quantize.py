"""int8 dynamic quantization, ONNX export and the latency table of the student."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from level4_fraud.distill import DistillConfig, StudentMLP, distill
from level4_fraud.models.training import TrainConfig, predict_proba, save_model
from level4_fraud.quantize import (
    Candidate,
    LatencyConfig,
    OnnxScorer,
    export_onnx,
    latency_table,
    load_quantized,
    onnx_candidate,
    quantize_dynamic_int8,
    save_quantized,
    state_dict_size,
    torch_candidate,
)

N_FEATURES = 12


def _task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, N_FEATURES))
    logit = -3.5 + 1.5 * z[:, 0] + z[:, 1] * z[:, 2] - 0.5 * z[:, 3] ** 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    raw = z * np.linspace(1, 100, N_FEATURES) + 50.0  # raw scales: the student standardises
    return raw.astype(np.float32), y, 1 / (1 + np.exp(-logit))


@pytest.fixture(scope="module")
def student() -> StudentMLP:
    x, y, p = _task(3000, 0)
    cfg = DistillConfig(
        hidden=[128, 64], train=TrainConfig(epochs=4, batch_size=256, learning_rate=1e-2, device="cpu")
    )
    return distill(x, y, p, cfg).model


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = _task(2000, 1)
    return x, y


def test_int8_student_is_close_to_the_float_student_and_leaves_it_untouched(student, rows):
    x, y = rows
    before = {k: v.clone() for k, v in student.state_dict().items()}
    q = quantize_dynamic_int8(student)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    linears = [m for m in q.modules() if isinstance(m, DynamicQuantizedLinear)]
    assert len(linears) == 3 and not any(type(m) is nn.Linear for m in q.modules())
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())
    p_float = predict_proba(student, [x])
    p_int8 = predict_proba(q, [x])
    assert np.abs(p_float - p_int8).max() < 0.02
    assert abs(average_precision_score(y, p_int8) - average_precision_score(y, p_float)) < 0.01


def test_int8_student_is_smaller_on_disk(student, tmp_path):
    q = quantize_dynamic_int8(student)
    save_model(student, tmp_path / "float")
    save_quantized(q, tmp_path / "int8")
    float_size = (tmp_path / "float" / "model.pt").stat().st_size
    int8_size = (tmp_path / "int8" / "model.pt").stat().st_size
    assert int8_size < 0.5 * float_size
    assert state_dict_size(q) < state_dict_size(student)


def test_quantized_save_load_round_trip(student, rows, tmp_path):
    x, _ = rows
    q = quantize_dynamic_int8(student)
    save_quantized(q, tmp_path / "q")
    back = load_quantized(tmp_path / "q")
    np.testing.assert_array_equal(predict_proba(back, [x]), predict_proba(q, [x]))
    save_model(student, tmp_path / "f")
    with pytest.raises(ValueError, match="float model"):
        load_quantized(tmp_path / "f")
    with pytest.raises(FileNotFoundError):
        load_quantized(tmp_path / "none")


def test_onnx_student_matches_float_student_for_any_batch_size(student, rows, tmp_path):
    import onnx

    x, _ = rows
    path = export_onnx(student, tmp_path / "student.onnx", N_FEATURES)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["x"] and [o.name for o in graph.output] == ["score"]
    scorer = OnnxScorer(path)
    expected = predict_proba(student, [x])
    np.testing.assert_allclose(scorer.predict_proba(x), expected, atol=1e-5)
    np.testing.assert_allclose(scorer.predict_proba(x[:1]), expected[:1], atol=1e-5)
    np.testing.assert_allclose(scorer.predict_proba(x[:37].astype(np.float64)), expected[:37], atol=1e-5)
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


@pytest.mark.slow
def test_dynamo_exporter_matches_float_student(student, rows, tmp_path):
    x, _ = rows
    path = export_onnx(student, tmp_path / "dynamo.onnx", N_FEATURES, exporter="dynamo")
    np.testing.assert_allclose(OnnxScorer(path).predict_proba(x), predict_proba(student, [x]), atol=1e-5)


def test_onnx_scorer_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxScorer(tmp_path / "nope.onnx")


def test_latency_table_reports_ap_latency_throughput_and_size(student, rows, tmp_path):
    x, y = rows
    path = export_onnx(student, tmp_path / "s.onnx", N_FEATURES)
    cands = {
        "student": torch_candidate(student),
        "student_int8": torch_candidate(quantize_dynamic_int8(student)),
        "student_onnx": onnx_candidate(path),
    }
    table = latency_table(cands, x, y, LatencyConfig(n_single=50, warmup=5, batch_size=512))
    assert list(table["model"]) == ["student", "student_int8", "student_onnx"]
    assert list(table.columns) == ["model", "ap", "p50_ms", "p99_ms", "throughput_per_s", "size_kb"]
    ap_float = average_precision_score(y, predict_proba(student, [x]))
    assert table.loc[0, "ap"] == pytest.approx(ap_float)
    assert table.loc[2, "ap"] == pytest.approx(ap_float, abs=1e-4)
    assert (table["p50_ms"] > 0).all() and (table["p99_ms"] >= table["p50_ms"]).all()
    assert (table["throughput_per_s"] > 0).all()
    assert table.loc[1, "size_kb"] < table.loc[0, "size_kb"]
    assert table.loc[2, "size_kb"] == pytest.approx(path.stat().st_size / 1024)


def test_latency_table_measures_a_known_delay():
    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.002)
        return x[:, 0].astype(np.float64)

    x = np.arange(20, dtype=np.float32)[:, None]
    y = (np.arange(20) >= 15).astype(int)
    table = latency_table(
        {"slow": Candidate(slow, 2048)}, x, y, LatencyConfig(n_single=10, warmup=1, batch_size=5)
    )
    row = table.iloc[0]
    assert row["ap"] == pytest.approx(1.0)  # the score ranks all positives first
    assert row["p50_ms"] >= 2.0
    assert row["throughput_per_s"] <= 5 / 0.002
    assert row["size_kb"] == 2.0
    with pytest.raises(ValueError, match="scores"):
        latency_table({"bad": Candidate(lambda a: np.zeros(3), 1)}, x, y)
