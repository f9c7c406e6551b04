"""The deep-learning stage of level 4 on one fold: sections 3 (PyTorch models), 4 (distillation,
quantization, ONNX, LoRA) and 5 (Ray Tune and Ray Train) of the issue.

The pipeline calls ``run_deep_stage(fold_data, cfg, run_dir)``; each part lives in its own module
and is switchable in `DeepConfig`:

1. **models** (`deep_models`): the tabular MLP, the mixture of experts (with its routing table by
   channel, fraud scenario and amount band on the test rows), the sequence transformer and its
   GRU baseline. Each returns validation scores (model fitted on ``valid_train``, scored on
   ``valid``) and test scores (refitted on ``train``, scored on ``test``), aligned with
   ``fold.valid`` and ``fold.test``: the ensemble's inputs.
2. **fast_path** (`deep_distill`): the teacher (the ensemble's scores when given, else the best
   single model above by validation AP) distilled into a student MLP, quantized to int8 and
   exported to ONNX, with the table teacher / student / int8 / ONNX (AP, batch-1 p50/p99,
   throughput, size). The student's artefacts go to ``<run_dir>/deep/``.
3. **lora** (`deep_lora`): the transformer of part 1 (population A) adapted to a second simulated
   bank with few labels: LoRA vs full fine-tuning vs training from scratch.
4. **ray** (`deep_ray`): a small Optuna + ASHA search over LightGBM and the MLP, and one 2-worker
   Ray Train run of the MLP, inside one `ray_session`.

The ensemble needs part 1's scores and part 2 needs the ensemble's: ``teacher_scores`` may be a
callable that receives part 1's scores and returns the teacher's (the ensemble fitted on them),
or the integration calls the stage twice, the second time with ``prior=`` the first result (part
1 is then reused, not retrained). Everything trains on CUDA when present (``device="auto"``);
quantized and ONNX students are measured on one CPU thread, where the real-time path runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from level4_fraud.datasets import FeatureConfig, FoldData
from level4_fraud.deep_distill import (
    FastPathConfig,
    FastPathOutcome,
    Teacher,
    run_fast_path,
    teacher_from_scores,
)
from level4_fraud.deep_lora import LoraOutcome, LoraStageConfig, run_lora
from level4_fraud.deep_models import (
    ModelsConfig,
    ModelsOutcome,
    TrainedModel,
    save_models,
    sequence_arrays,
    train_models,
)
from level4_fraud.deep_ray import RayOutcome, RayStageConfig, run_ray
from level4_fraud.distributed.cluster import RayConfig
from level4_fraud.lora import SequenceSet, pretrain
from level4_fraud.models.sequence import SequenceTransformer, SequenceTransformerConfig
from level4_fraud.models.torch_models import TabularPreprocessor
from level4_fraud.models.training import resolve_device
from level4_fraud.quantize import state_dict_size
from shared.atomic import atomic_write_json, atomic_write_text, json_safe
from shared.tracking import MlflowTracker

DEEP_DIR = "deep"
"""The stage's folder inside a run folder."""

TeacherScores = Mapping[str, Any]
"""``{"valid": scores of fold.valid rows, "test": scores of fold.test rows}``, optionally with
``"predict_rows"`` (``f(index labels of fold.frame) -> scores`` of the final teacher: the
student's large transfer set), ``"predict_frame"`` (``f(frame rows) -> scores``, to time the
teacher), ``"size_bytes"`` and ``"name"``."""


TeacherFn = Callable[..., TeacherScores]
"""``f(scores)`` or ``f(scores, members)`` -> `TeacherScores`, called after part 1: ``scores`` is
``{model: {"valid", "test"}}``; ``members(labels)`` gives part 1's final models' scores of any
rows of ``fold.frame`` (``{model: scores}``), to build the ensemble's ``predict_rows``."""


class DeepConfig(BaseModel):
    """Settings of the deep stage; defaults are the quick profile's (full-profile values are
    documented on each part's class).

    Args:
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda`` for all training.
        threads: torch CPU threads while training (None: each part's own setting).
        seed: Seed of every model, search and draw.
        models: Section 3's models (each switchable).
        fast_path: Distillation, quantization, ONNX, latency table.
        lora: The LoRA experiment on a second bank.
        ray: Ray Tune searches and the Ray Train run.
        save_models: Write part 1's final models under ``<run>/deep/models`` (for
            `deep_models.predict_saved_models`).
        write_tables: Write every table as CSV and a ``summary.json`` under ``<run>/deep``.
    """

    model_config = ConfigDict(extra="forbid")

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(1, ge=1)
    seed: int = 42
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    fast_path: FastPathConfig = Field(default_factory=FastPathConfig)
    lora: LoraStageConfig = Field(default_factory=LoraStageConfig)
    ray: RayStageConfig = Field(default_factory=RayStageConfig)
    save_models: bool = True
    write_tables: bool = True


def resolve_config(cfg: Any) -> DeepConfig:
    """A `DeepConfig` from itself, a level config holding one as ``.deep``, a mapping, or None."""
    if cfg is None:
        return DeepConfig()
    if isinstance(cfg, DeepConfig):
        return cfg
    if isinstance(cfg, Mapping):
        return DeepConfig.model_validate(dict(cfg))
    inner = getattr(cfg, "deep", None)
    if isinstance(inner, DeepConfig):
        return inner
    if isinstance(inner, Mapping):
        return DeepConfig.model_validate(dict(inner))
    raise TypeError(f"expected a DeepConfig (or a config with a .deep one), not {type(cfg).__name__}")


def _inherit(dcfg: DeepConfig, parent: Any) -> DeepConfig:
    """Take the level's seed and Ray cluster when the deep settings do not set their own."""
    if parent is None or isinstance(parent, DeepConfig | Mapping):
        return dcfg
    update: dict[str, Any] = {}
    seed = getattr(parent, "seed", None)
    if isinstance(seed, int) and "seed" not in dcfg.model_fields_set:
        update["seed"] = seed
    ray = getattr(parent, "ray", None)
    if isinstance(ray, RayConfig) and "cluster" not in dcfg.ray.model_fields_set:
        update["ray"] = dcfg.ray.model_copy(update={"cluster": ray})
    return dcfg.model_copy(update=update) if update else dcfg


def _feature_config(cfg: Any, given: FeatureConfig | None) -> FeatureConfig | None:
    if given is not None:
        return given
    features = getattr(cfg, "features", None)
    return features if isinstance(features, FeatureConfig) else None


def model_scores(outcome: ModelsOutcome) -> dict[str, dict[str, np.ndarray]]:
    """``{model: {"valid": ..., "test": ...}}`` from part 1 (aligned with fold.valid / fold.test)."""
    return {n: {"valid": m.valid_scores, "test": m.test_scores} for n, m in outcome.models.items()}


def member_scores(
    source: ModelsOutcome | Mapping[str, Any], frame: pd.DataFrame, labels: pd.Index
) -> dict[str, np.ndarray]:
    """Part 1's final models scoring any rows of a feature frame (e.g. the ensemble's members for
    the teacher's ``predict_rows``). Sequence models take each card's history from `frame`.

    Args:
        source: A `ModelsOutcome`, or a result of `run_deep_stage` (its ``"trained"`` entry).
        frame: The fold's feature frame (``fold.frame``) or another one with the same columns.
        labels: Index labels of the rows to score.

    Returns:
        ``{model name: scores aligned with labels}``.
    """
    outcome = source if isinstance(source, ModelsOutcome) else source["trained"]
    return {name: m.predict_rows(frame, labels) for name, m in outcome.models.items()}


def best_single_teacher(outcome: ModelsOutcome, fold: FoldData) -> Teacher | None:
    """The part-1 model with the highest validation AP, as a teacher (None without models)."""
    ranked = [m for m in outcome.models.values() if math.isfinite(m.valid_ap)]
    if not ranked:
        return None
    best: TrainedModel = max(ranked, key=lambda m: m.valid_ap)
    return Teacher(
        name=best.name,
        valid=best.valid_scores,
        test=best.test_scores,
        predict_rows=lambda labels: best.predict_rows(fold.frame, labels),
        predict_frame=best.predict_frame if best.inputs.kind == "tabular" else None,
        size_bytes=state_dict_size(best.model),
    )


def _pretrained_transformer(
    outcome: ModelsOutcome, fold: FoldData, cfg: DeepConfig, device: str
) -> tuple[SequenceTransformer, TabularPreprocessor]:
    """Part 1's transformer, or one trained here on the fold's training week (population A)."""
    trained = outcome.models.get("seq_transformer")
    if trained is not None:
        return trained.model, trained.inputs.prep  # type: ignore[return-value]
    s = cfg.models.sequence
    prep = TabularPreprocessor(fold.spec.numeric).fit(fold.train)

    def seqs(split: str) -> SequenceSet:
        x, mask = sequence_arrays(fold.frame, prep, fold.index[split], s.max_len)
        return SequenceSet(x, mask, fold.y(split).astype(np.float32))  # type: ignore[arg-type]

    config = SequenceTransformerConfig(
        n_features=len(prep.numeric_cols), max_len=s.max_len, d_model=s.d_model, n_heads=s.n_heads,
        n_layers=s.transformer_layers, ff_dim=s.ff_dim, dropout=s.dropout,
    )  # fmt: skip
    update: dict[str, Any] = {"device": device, "seed": cfg.seed}
    if cfg.threads is not None:
        update["threads"] = cfg.threads
    model, _ = pretrain(config, seqs("train"), seqs("valid"), cfg.lora.pretrain.model_copy(update=update))
    return model.eval(), prep


def _takes_two(fn: Callable[..., Any]) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _resolve_teacher(
    teacher_scores: TeacherScores | TeacherFn | None,
    outcome: ModelsOutcome,
    fold: FoldData,
) -> Teacher | None:
    if teacher_scores is None:
        return best_single_teacher(outcome, fold)
    if callable(teacher_scores):
        scores = model_scores(outcome)
        if _takes_two(teacher_scores):

            def members(labels: pd.Index) -> dict[str, np.ndarray]:
                return member_scores(outcome, fold.frame, labels)

            teacher_scores = teacher_scores(scores, members)
        else:
            teacher_scores = teacher_scores(scores)
    return teacher_from_scores(teacher_scores)


def _write_tables(
    folder: Path, tables: Mapping[str, pd.DataFrame], summary: dict[str, Any]
) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name, table in tables.items():
        if table is None or table.empty:
            continue
        paths[f"{name}_csv"] = atomic_write_text(folder / f"{name}.csv", table.to_csv(index=False))
    paths["summary_json"] = atomic_write_json(folder / "summary.json", json_safe(summary))
    return paths


def _models_part(
    fold_data: FoldData,
    dcfg: DeepConfig,
    prior: Mapping[str, Any] | None,
    folder: Path | None,
    timings: dict[str, float],
    paths: dict[str, Any],
) -> ModelsOutcome:
    """Part 1: train the models (or reuse `prior`'s) and save them under ``<folder>/models``."""
    if prior is not None and isinstance(prior.get("trained"), ModelsOutcome):
        outcome: ModelsOutcome = prior["trained"]
        timings["models"] = 0.0
    else:
        t0 = time.perf_counter()
        outcome = train_models(
            fold_data, dcfg.models, device=dcfg.device, threads=dcfg.threads, seed=dcfg.seed
        )
        timings["models"] = time.perf_counter() - t0
        timings.update({f"model_{k}": v for k, v in outcome.seconds.items()})
    if folder is not None and dcfg.save_models and outcome.models:
        paths["models"] = folder / "models"
        save_models(outcome, paths["models"])
    return outcome


def _fast_path_part(
    fold_data: FoldData,
    dcfg: DeepConfig,
    outcome: ModelsOutcome,
    teacher_scores: TeacherScores | TeacherFn | None,
    folder: Path | None,
    timings: dict[str, float],
    skipped: dict[str, str],
    paths: dict[str, Any],
) -> tuple[FastPathOutcome | None, str | None]:
    """Part 2: distillation, quantization and ONNX; returns the outcome and the teacher's name."""
    import tempfile

    if not dcfg.fast_path.enabled:
        skipped["fast_path"] = "disabled"
        return None, None
    teacher = _resolve_teacher(teacher_scores, outcome, fold_data)
    if teacher is None:
        skipped["fast_path"] = "no teacher: no ensemble scores given and no model trained"
        return None, None
    t0 = time.perf_counter()
    # The student is measured from its exported files, so without a run folder they still need
    # a place to live for the duration of the measurements.
    with tempfile.TemporaryDirectory(prefix="l4-student-") as tmp:
        target = folder if folder is not None else Path(tmp)
        fast = run_fast_path(fold_data, teacher, dcfg.fast_path, target, device=dcfg.device)
        if folder is not None:
            paths.update(fast.paths)
    timings["fast_path"] = time.perf_counter() - t0
    return fast, teacher.name


def _lora_part(
    fold_data: FoldData,
    dcfg: DeepConfig,
    outcome: ModelsOutcome,
    feature_settings: FeatureConfig | None,
    folder: Path | None,
    timings: dict[str, float],
    skipped: dict[str, str],
    paths: dict[str, Any],
) -> LoraOutcome | None:
    """Part 3: adapt part 1's transformer to the second bank (LoRA vs full vs scratch)."""
    if not dcfg.lora.enabled:
        skipped["lora"] = "disabled"
        return None
    t0 = time.perf_counter()
    pretrained, prep = _pretrained_transformer(outcome, fold_data, dcfg, dcfg.device)
    lora_out = run_lora(
        pretrained, prep, fold_data.spec, dcfg.lora, folder,
        feature_cfg=feature_settings, device=dcfg.device, threads=dcfg.threads, seed=dcfg.seed,
    )  # fmt: skip
    timings["lora"] = time.perf_counter() - t0
    if lora_out.adapter_path is not None:
        paths["lora_adapter"] = lora_out.adapter_path
    return lora_out


def _ray_part(
    fold_data: FoldData,
    dcfg: DeepConfig,
    tracker: MlflowTracker | None,
    timings: dict[str, float],
    skipped: dict[str, str],
) -> RayOutcome | None:
    """Part 4: the Ray Tune searches and the Ray Train run (skipped when none is switched on)."""
    ray_parts = dcfg.ray.tune_lightgbm or dcfg.ray.tune_mlp or dcfg.ray.data_parallel
    if not (dcfg.ray.enabled and ray_parts):
        skipped["ray"] = "disabled"
        return None
    t0 = time.perf_counter()
    ray_out = run_ray(fold_data, dcfg.ray, tracker=tracker, seed=dcfg.seed)
    timings["ray"] = time.perf_counter() - t0
    timings.update({f"ray_{k}": v for k, v in ray_out.seconds.items() if k != "total"})
    return ray_out


def _distillation_info(fast: FastPathOutcome | None) -> dict[str, Any]:
    if fast is None:
        return {}
    return {
        "teacher": fast.teacher,
        "transfer": fast.transfer,
        "eval_rows": fast.eval_rows,
        "onnx_max_abs_diff": fast.onnx_max_abs_diff,
        "int8_max_abs_diff": fast.int8_max_abs_diff,
        "student_inputs": fast.inputs.names,
    }


def _write_stage_tables(
    folder: Path, dcfg: DeepConfig, result: Mapping[str, Any], paths: dict[str, Any]
) -> None:
    """Write the result's tables as CSV and the rest as ``summary.json``, adding their paths."""
    tables = {k: result[k] for k in ("metrics", "routing", "distillation", "lora", "tune", "data_parallel")}
    summary = {
        k: result[k]
        for k in (
            "distillation_info",
            "lora_population",
            "tune_best",
            "timings",
            "device",
            "teacher",
            "skipped",
        )
    }
    summary["cuda"] = torch.cuda.is_available()
    summary["config"] = dcfg.model_dump()
    paths.update(_write_tables(folder, tables, summary))


def run_deep_stage(
    fold_data: FoldData,
    cfg: Any = None,
    run_dir: str | Path | None = None,
    *,
    teacher_scores: TeacherScores | TeacherFn | None = None,
    prior: Mapping[str, Any] | None = None,
    tracker: MlflowTracker | None = None,
    feature_cfg: FeatureConfig | None = None,
) -> dict[str, Any]:
    """Run the deep stage on one fold (see the module docstring).

    Args:
        fold_data: The fold (`datasets.prequential_fold_data` or `training_fold_data`).
        cfg: A `DeepConfig`, a level config with one as ``.deep`` (a `DeepConfig` or its
            mapping; the level's ``.features`` then featurise bank B, and its ``.seed`` and
            ``.ray`` cluster apply unless the deep settings set their own), a mapping, or None
            (quick defaults).
        run_dir: The run folder; artefacts and tables go to ``<run_dir>/deep``. None: nothing is
            written (the student is exported to a temporary folder for its measurements).
        teacher_scores: The ensemble's scores (`TeacherScores`), or a callable (`TeacherFn`)
            that receives part 1's ``{model: {"valid", "test"}}`` scores (and, if it takes two
            arguments, a scorer of part 1's final models on any rows) and returns them. None:
            the best single model of part 1 is the teacher. Give ``predict_rows``: without it
            the student learns from the validation rows only and keeps far less of the
            teacher's AP (about 70 % instead of 100 % on the quick profile).
        prior: A result of an earlier call on the same fold whose part-1 models to reuse.
        tracker: MLflow tracker for the Ray searches and the Ray Train run.
        feature_cfg: The feature settings of the level (windows, label delay), for bank B.

    Returns:
        A dict:

        - ``scores``: ``{model: {"valid": ndarray, "test": ndarray}}`` aligned with
          ``fold_data.valid`` and ``fold_data.test`` (part 1; the ensemble's inputs);
        - ``metrics``: part 1's table (``model, valid_ap, test_ap, best_epoch,
          trainable_params, seconds, device``);
        - ``routing``: the MoE's routing table (``grouping`` in channel / scenario /
          amount_band, ``group, n, expert_0.., top_expert``);
        - ``distillation``: the section-4 table (``model, ap, ap_vs_teacher, p50_ms, p99_ms,
          throughput_per_s, size_kb``) and ``distillation_info`` (teacher, transfer set,
          holdout fidelity, ONNX/int8 max differences, which rows were evaluated);
        - ``student_scores``: ``{"test": ndarray}``, the float student on every test row;
        - ``lora``: the adaptation table (``method, ap, trainable_params, total_params,
          trainable_share, seconds, epochs``) and ``lora_population`` (B's split sizes);
        - ``tune`` (one row per trial of each search), ``tune_best`` (best configuration per
          search) and ``data_parallel`` (the Ray Train run's summary);
        - ``paths``: ``dir``, ``models``, ``student``, ``student_int8``, ``student_onnx``,
          ``lora_adapter`` and the CSV/JSON tables written;
        - ``timings``: seconds per part and ``total``; ``device``; ``teacher``;
        - ``skipped``: ``{part: why}`` for the parts that did not run;
        - ``trained``: the `ModelsOutcome` (models and preprocessing; not JSON).

        A part that is switched off leaves its tables empty (``pd.DataFrame()``).
    """
    dcfg = _inherit(resolve_config(cfg), cfg)
    feature_settings = _feature_config(cfg, feature_cfg)
    device = str(resolve_device(dcfg.device))
    start = time.perf_counter()
    timings: dict[str, float] = {}
    skipped: dict[str, str] = {}
    folder = Path(run_dir) / DEEP_DIR if run_dir is not None else None
    paths: dict[str, Any] = {"dir": folder}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    outcome = _models_part(fold_data, dcfg, prior, folder, timings, paths)
    fast, teacher_name = _fast_path_part(
        fold_data, dcfg, outcome, teacher_scores, folder, timings, skipped, paths
    )
    lora_out = _lora_part(fold_data, dcfg, outcome, feature_settings, folder, timings, skipped, paths)
    ray_out = _ray_part(fold_data, dcfg, tracker, timings, skipped)
    timings["total"] = time.perf_counter() - start

    # `paths` is the result's own dict, so the tables written below are listed in the result too.
    result: dict[str, Any] = {
        "scores": model_scores(outcome),
        "metrics": outcome.table,
        "routing": outcome.routing,
        "distillation": fast.table if fast else pd.DataFrame(),
        "distillation_info": _distillation_info(fast),
        "student_scores": {"test": fast.student_test} if fast else {},
        "lora": lora_out.table if lora_out else pd.DataFrame(),
        "lora_population": lora_out.population if lora_out else {},
        "tune": ray_out.tune if ray_out else pd.DataFrame(),
        "tune_best": ray_out.best if ray_out else {},
        "data_parallel": ray_out.data_parallel if ray_out else pd.DataFrame(),
        "paths": paths,
        "timings": timings,
        "device": device,
        "teacher": teacher_name,
        "skipped": skipped,
        "trained": outcome,
    }
    if folder is not None and dcfg.write_tables:
        _write_stage_tables(folder, dcfg, result, paths)
    return result


def summary_json(result: Mapping[str, Any]) -> str:
    """The JSON-safe parts of a `run_deep_stage` result (tables as records), for logs."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if key in ("trained", "scores", "student_scores"):
            continue
        out[key] = value.to_dict("records") if isinstance(value, pd.DataFrame) else value
    return json.dumps(json_safe(out), indent=2, default=str)
