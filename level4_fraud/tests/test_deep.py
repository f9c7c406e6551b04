"""The deep stage on a tiny simulated fold: aligned scores, saved models, routing, the student's
exports, the transfer set's time rules, teacher checks and the stage's configuration."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score

from level4_fraud import datasets, schema
from level4_fraud.deep import DeepConfig, member_scores, resolve_config, run_deep_stage
from level4_fraud.deep_distill import (
    FastPathConfig,
    StudentInputs,
    Teacher,
    ThresholdStudent,
    ThresholdStudentConfig,
    check_teacher,
    fit_thresholds,
    student_matrix,
    teacher_from_scores,
    transfer_set,
)
from level4_fraud.deep_models import (
    MODEL_NAMES,
    amount_band_labels,
    predict_saved_models,
    sequence_arrays,
)
from level4_fraud.distributed.cluster import RayConfig
from level4_fraud.evaluate import EvaluationConfig
from level4_fraud.models.sequence import build_card_sequences
from level4_fraud.models.torch_models import TabularPreprocessor
from level4_fraud.models.training import load_model, read_model_meta
from level4_fraud.quantize import OnnxScorer, load_quantized

# Two epochs per model, a short student run, few latency calls: the machinery, not the figures.
TINY = {
    "models": {
        "mlp": {"train": {"epochs": 2, "patience": 1, "batch_size": 256}},
        "moe": {"train": {"epochs": 2, "patience": 1, "batch_size": 256}},
        "sequence": {"train": {"epochs": 2, "patience": 1, "batch_size": 512}},
    },
    "fast_path": {
        "epochs": 3,
        "max_transfer_rows": 6000,
        "latency": {"n_single": 20, "warmup": 2},
        "teacher_n_single": 5,
    },
    "lora": {"enabled": False},
    "ray": {"enabled": False},
}


@pytest.fixture(scope="module")
def fold(rich_sim) -> datasets.FoldData:
    _, tx, customers, terminals = rich_sim
    folds = datasets.build_folds(
        tx, customers=customers, terminals=terminals, eval_cfg=EvaluationConfig(n_folds=1)
    )
    return folds[0]


@pytest.fixture(scope="module")
def stage(fold, tmp_path_factory) -> tuple[dict, object]:
    run_dir = tmp_path_factory.mktemp("run")
    return run_deep_stage(fold, DeepConfig.model_validate(TINY), run_dir), run_dir


def test_stage_returns_scores_aligned_with_the_valid_and_test_rows(fold, stage):
    result, _ = stage
    assert set(result["scores"]) == set(MODEL_NAMES)
    for name, s in result["scores"].items():
        assert s["valid"].shape == (len(fold.valid),), name
        assert s["test"].shape == (len(fold.test),), name
        for arr in s.values():
            assert np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1
    metrics = result["metrics"].set_index("model")
    assert list(metrics.index) == list(MODEL_NAMES)
    assert metrics["test_ap"].notna().all() and (metrics["device"] == result["device"]).all()
    assert result["skipped"] == {"lora": "disabled", "ray": "disabled"}
    assert result["student_scores"]["test"].shape == (len(fold.test),)


def test_saved_models_score_the_test_rows_as_the_stage_did(fold, stage):
    result, run_dir = stage
    saved = predict_saved_models(run_dir / "deep" / "models", fold.frame, fold.index["test"])
    assert set(saved) == set(MODEL_NAMES)
    for name, scores in saved.items():
        np.testing.assert_allclose(scores, result["scores"][name]["test"], atol=1e-5, err_msg=name)
    # member_scores (the teacher's building block) scores any rows, in the order asked.
    labels = fold.index["test"][::-1][:50]
    again = member_scores(result, fold.frame, labels)
    for name in MODEL_NAMES:
        np.testing.assert_allclose(again[name], result["scores"][name]["test"][::-1][:50], atol=1e-5)


def test_sequences_built_for_the_needed_rows_equal_sequences_over_the_whole_frame(fold):
    prep = TabularPreprocessor(fold.spec.numeric).fit(fold.train)
    labels = fold.index["test"][::7]
    x, mask = sequence_arrays(fold.frame, prep, labels, 8)
    full = build_card_sequences(
        fold.frame, (), 8, values=prep.transform(fold.frame)[0], rows=fold.frame.index.get_indexer(labels)
    )
    np.testing.assert_array_equal(mask, full.mask)
    np.testing.assert_allclose(x, full.x, atol=1e-6)
    assert mask[:, -1].all() and (mask.sum(1) > 1).any()


def test_routing_table_says_what_each_expert_takes_by_channel_scenario_and_amount_band(fold, stage):
    routing = stage[0]["routing"]
    assert set(routing["grouping"]) == {"channel", "scenario", "amount_band"}
    experts = [c for c in routing.columns if c.startswith("expert_")]
    np.testing.assert_allclose(routing[experts].sum(axis=1), 1.0, atol=1e-6)
    for _, part in routing.groupby("grouping"):
        groups = part.set_index("group")
        assert groups.loc["all", "n"] == len(fold.test) == groups.drop("all")["n"].sum()
    bands = routing.loc[routing["grouping"] == "amount_band", "group"].tolist()
    in_order = ["<10", "10-50", "50-100", "100-220", ">=220"]
    assert bands == [*(b for b in in_order if b in bands), "all"] and len(bands) >= 4
    assert "compromised_terminal" in set(routing.loc[routing["grouping"] == "scenario", "group"])


def test_amount_bands_include_their_lower_edge():
    got = amount_band_labels(np.array([0.0, 9.99, 10.0, 219.99, 220.0, 5000.0]), [10, 50, 100, 220])
    assert got.tolist() == ["<10", "<10", "10-50", "100-220", ">=220", ">=220"]


def test_onnx_and_int8_students_load_back_and_reproduce_the_torch_student(fold, stage):
    result, run_dir = stage
    paths, table = result["paths"], result["distillation"].set_index("model")
    assert paths["student"] == run_dir / "deep" / "student" and paths["student_onnx"].is_file()
    student = load_model(paths["student"])
    inputs = StudentInputs.from_dict(read_model_meta(paths["student"])["extra"]["inputs"])
    x = student_matrix(fold.test_eval, inputs, student.mlp.mean.numpy())
    with torch.no_grad():
        p_torch = torch.sigmoid(student(torch.from_numpy(x))).numpy()
    p_onnx = OnnxScorer(paths["student_onnx"]).predict_proba(x)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-5)
    y = fold.test_eval[schema.TX_FRAUD].to_numpy()
    p_int8 = load_quantized(paths["student_int8"])(torch.from_numpy(x)).sigmoid().detach().numpy()
    assert average_precision_score(y, p_int8) == pytest.approx(table.loc["student_int8", "ap"], abs=1e-9)
    assert average_precision_score(y, p_torch) == pytest.approx(table.loc["student", "ap"], abs=1e-6)
    assert result["distillation_info"]["onnx_max_abs_diff"] < 1e-5
    assert table["size_kb"].iloc[1:].gt(0).all() and table["p99_ms"].iloc[1:].gt(0).all()


def test_transfer_set_holds_no_training_week_no_test_day_and_no_label_unknown_at_the_test_start(fold):
    asked: list[pd.Index] = []

    def predict_rows(labels: pd.Index) -> np.ndarray:
        asked.append(labels)
        return np.full(len(labels), 0.5)

    teacher = Teacher("t", np.zeros(len(fold.valid)), np.zeros(len(fold.test)), predict_rows=predict_rows)
    ts = transfer_set(fold, teacher, FastPathConfig(min_transfer_rows=100))
    assert ts.source == "final_teacher" and asked and asked[0].equals(ts.labels)
    rows = fold.frame.loc[ts.labels]
    assert not ts.labels.isin(fold.index["train"]).any()
    assert rows[schema.TX_DATETIME].max() < fold.periods["test"][0]
    after_training = (rows[schema.TX_DATETIME] >= fold.periods["train"][1]).to_numpy()
    assert after_training.any() and np.isnan(ts.y[after_training]).all()  # the delay week
    np.testing.assert_array_equal(ts.y[~after_training], rows.loc[~after_training, schema.TX_FRAUD])
    # Without a scorer of the final teacher: the validation rows and the validation teacher.
    ts_valid = transfer_set(
        fold, Teacher("t", np.full(len(fold.valid), 0.2), np.zeros(len(fold.test))), FastPathConfig()
    )
    assert ts_valid.source == "validation_teacher" and ts_valid.labels.equals(fold.index["valid"])


def test_teacher_scores_are_checked_against_the_fold(fold):
    ok = {"valid": np.zeros(len(fold.valid)), "test": np.zeros(len(fold.test))}
    assert check_teacher(teacher_from_scores(ok), fold).name == "ensemble"
    with pytest.raises(ValueError, match="valid"):
        check_teacher(teacher_from_scores({**ok, "valid": np.zeros(3)}), fold)
    with pytest.raises(ValueError, match="probabilities"):
        check_teacher(teacher_from_scores({**ok, "test": np.full(len(fold.test), 2.0)}), fold)
    with pytest.raises(ValueError, match="missing"):
        teacher_from_scores({"valid": ok["valid"]})
    with pytest.raises(ValueError, match="unknown"):
        teacher_from_scores({**ok, "tset": ok["test"]})


def test_thresholds_find_the_teachers_step_and_the_student_reads_them():
    rng = np.random.default_rng(0)
    amount = rng.uniform(0, 400, 5000)
    x = np.column_stack([amount, rng.integers(0, 2, 5000)]).astype(np.float32)
    target = np.where(amount > 220, 3.0, -4.0) + rng.normal(0, 0.1, 5000)
    th = fit_thresholds(x, target, leaves=4, min_rows=20)
    assert th[1] == []  # a 0/1 column is a step already
    assert any(abs(t - 220) < 2 for t in th[0])
    model = ThresholdStudent(ThresholdStudentConfig(n_features=2, thresholds=th, hidden=[8]))
    xt = torch.tensor([[100.0, 1.0], [300.0, 0.0]])
    expanded = model.expand(xt)
    manual = torch.cat([xt, torch.tensor([[float(v > t) for t in th[0]] for v in (100.0, 300.0)])], dim=1)
    torch.testing.assert_close(expanded, manual)
    assert model(xt).shape == (2,)


def test_config_is_resolved_from_the_level_config_with_its_seed_and_ray_cluster(fold):
    assert resolve_config(None) == DeepConfig()
    assert resolve_config({"seed": 3}).seed == 3
    parent = SimpleNamespace(deep={"threads": 2}, seed=11, ray=RayConfig(num_cpus=1))
    assert resolve_config(parent).threads == 2
    with pytest.raises(TypeError):
        resolve_config(42)
    from level4_fraud.deep import _inherit

    inherited = _inherit(resolve_config(parent), parent)
    assert inherited.seed == 11 and inherited.ray.cluster.num_cpus == 1
    own = _inherit(resolve_config(SimpleNamespace(deep={"seed": 5}, seed=11)), SimpleNamespace(seed=11))
    assert own.seed == 5


def test_a_callable_teacher_gets_the_models_scores_and_a_prior_result_is_reused(fold, stage, tmp_path):
    result, _ = stage
    seen = {}

    def ensemble(scores):
        seen.update(scores)
        mean = {split: np.mean([s[split] for s in scores.values()], axis=0) for split in ("valid", "test")}
        return {**mean, "name": "mean-of-members"}

    cfg = DeepConfig.model_validate({**TINY, "models": {"mlp": {"enabled": False}}})
    again = run_deep_stage(fold, cfg, tmp_path, teacher_scores=ensemble, prior=result)
    assert set(seen) == set(MODEL_NAMES) and again["timings"]["models"] == 0.0
    for name in MODEL_NAMES:
        np.testing.assert_array_equal(again["scores"][name]["test"], result["scores"][name]["test"])
    assert again["teacher"] == "mean-of-members"
    assert again["distillation"]["model"].iloc[0] == "teacher (mean-of-members)"
    # The validation teacher's rows: no scorer of the final teacher was given.
    assert again["distillation_info"]["transfer"]["source"] == "validation_teacher"


def test_switched_off_parts_leave_empty_tables(fold, tmp_path):
    no_models = {"mlp": {"enabled": False}, "moe": {"enabled": False}}
    no_models["sequence"] = {"transformer": False, "gru": False}
    off = {"models": no_models, "fast_path": {"enabled": False}, "lora": {"enabled": False}}
    off["ray"] = {"enabled": False}
    result = run_deep_stage(fold, DeepConfig.model_validate(off), tmp_path)
    assert result["scores"] == {} and result["routing"].empty and result["distillation"].empty
    assert set(result["skipped"]) == {"fast_path", "lora", "ray"}
    assert (tmp_path / "deep" / "summary.json").is_file() and not (tmp_path / "deep" / "models").exists()


def test_a_two_argument_teacher_gets_a_scorer_of_the_members_for_its_transfer_set(fold, stage, tmp_path):
    result, _ = stage
    asked = []

    def ensemble(scores, members):
        def mean(parts):
            return np.mean(list(parts.values()), axis=0)

        def predict_rows(labels):
            asked.append(len(labels))
            return mean(members(labels))

        valid = mean({k: s["valid"] for k, s in scores.items()})
        test = mean({k: s["test"] for k, s in scores.items()})
        return {"valid": valid, "test": test, "predict_rows": predict_rows}

    cfg = DeepConfig.model_validate(TINY)
    again = run_deep_stage(fold, cfg, tmp_path, teacher_scores=ensemble, prior=result)
    transfer = again["distillation_info"]["transfer"]
    assert transfer["source"] == "final_teacher" and asked == [transfer["rows"]]
