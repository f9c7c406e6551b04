"""Section 4's fast path: distil the teacher into a student MLP, quantize it, export it to ONNX.

The teacher is the ensemble (its scores computed by the integration and handed in), or, without
them, the stage's best single model by validation AP.

**Transfer set** (the rows the student imitates the teacher on). Distilling an ensemble of trees
into a small network needs many teacher-scored rows (Bucila et al. 2006, "Model compression"); a
teacher scores any transaction without its label, so:

* with a scorer of the final teacher (`Teacher.predict_rows`), the student learns from every
  transaction before the test days that the final teacher did not train on (the weeks before
  its training week and the delay week after it), the most recent ``max_transfer_rows`` of them:
  the teacher's scores there are out-of-sample, as on the test days. Labels known at the test
  start (transactions before the end of the training week) add the hard term of
  `distill.distillation_loss`; the delay week's labels are not known yet and are NaN;
* without one, from the ``valid`` rows scored by the validation teacher (models that never saw
  them), with their labels.

**Training** runs a fixed number of epochs with a one-cycle learning rate (a short warm-up, then
cosine annealing to ~0), and keeps the last weights. The student's ranking of the few top rows
(what AP and CP@100 measure) jumps from epoch to epoch at a constant rate, and a validation
signal to pick an epoch by is too noisy with a few dozen frauds; an annealed run ends in a
stable state instead. A random ``holdout_share`` of the transfer rows is held out to report
the student's **fidelity at the top** (the AP with which it recovers the teacher's top
``top_share`` of those rows). No label and no test row chooses anything.

**Student** (`ThresholdStudent`). An MLP on raw inputs has to learn the teacher's sharp steps
(an amount above a limit, a terminal risk above 0) as steep slopes, which it does badly from a
few thousand frauds. Following the tree-based bins of Gorishniy et al. (2022, "On embeddings for
numerical features in tabular deep learning"), each numeric input gets the thresholds of a small
regression tree fitted on the teacher's logits against it, and the student reads the raw inputs
plus one 0/1 step per threshold, then a `distill.StudentMLP` (standardisation stored inside).
Steps and standardisation are part of the model, so the int8 copy and the ONNX graph take the
raw inputs. The inputs are the numeric features (`FeatureSpec.numeric`) and one 0/1 column per
frequent category value (`StudentInputs`); a missing numeric value is replaced by the student's
stored mean, the one step a caller of the exports repeats (`student_matrix`).

The student, its int8 copy and its ONNX graph are scored on the test rows the metrics use
(`FoldData.test_eval`; the held-out transfer rows when the fold has no test days), with the
teacher: AP, batch-1 latency p50/p99, throughput and size on disk (the issue's section-4 table).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score
from sklearn.tree import DecisionTreeRegressor
from torch import nn

from level4_fraud import schema
from level4_fraud.datasets import FoldData
from level4_fraud.distill import StudentConfig, StudentMLP, distillation_loss
from level4_fraud.models.training import FitResult, predict_logits, resolve_device, save_model, torch_threads
from level4_fraud.quantize import (
    Candidate,
    LatencyConfig,
    OnnxScorer,
    export_onnx,
    latency_table,
    onnx_candidate,
    quantize_dynamic_int8,
    save_quantized,
    torch_candidate,
)

STUDENT_DIR = "student"
STUDENT_INT8_DIR = "student_int8"
STUDENT_ONNX = "student.onnx"
TABLE_COLUMNS = ["model", "ap", "ap_vs_teacher", "p50_ms", "p99_ms", "throughput_per_s", "size_kb"]
_EPS = 1e-6


class FastPathConfig(BaseModel):
    """Distillation, quantization, ONNX and the latency table (quick profile; full:
    ``hidden=[128, 64]``, ``epochs=20``, ``batch_size=1024``, ``max_transfer_rows=500_000``,
    ``latency.n_single=5000``, ``teacher_n_single=1000``).

    Args:
        enabled: Run this part of the stage.
        hidden: The student MLP's hidden layers.
        dropout: Its dropout.
        temperature: Softening temperature of the teacher's scores.
        alpha: Weight of the teacher term (``1 - alpha``: the hard labels known at the time).
        epochs: Passes over the transfer rows (all of them run; the last weights are kept).
        batch_size: Rows per step.
        learning_rate: Peak learning rate of the one-cycle schedule (AdamW).
        weight_decay: AdamW's decoupled weight decay.
        warmup_share: Share of the steps spent warming the learning rate up.
        grad_clip: Gradient-norm bound (None: no clipping).
        threads: torch CPU threads while training.
        threshold_leaves: Leaves of each input's threshold tree (steps per input: one fewer).
        threshold_min_rows: Rows per leaf of those trees at least.
        max_transfer_rows: Most recent transfer rows kept (teacher-scored rows the student sees).
        min_transfer_rows: Fewer transfer rows than this outside the teacher's training week:
            learn from the validation rows instead.
        holdout_share: Random share of the transfer rows held out to measure fidelity.
        top_share: Share of the teacher's highest scores the fidelity is measured on.
        onehot_min_count: Rows a category value needs in the transfer set to get an input.
        onehot_max_values: Inputs per categorical column at most.
        latency: How the student, its int8 copy and its ONNX graph are timed.
        teacher_n_single: Batch-1 calls timed for the teacher (an ensemble scoring one-row
            frames is slow; its p99 needs fewer calls to be useful).
        onnx_exporter: ``legacy`` (TorchScript, under a second) or ``dynamo`` (torch.export).
        seed: Holdout draw and student initialisation.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.0, ge=0, lt=1)
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_share: float = Field(0.1, gt=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    threads: int = Field(1, ge=1)
    threshold_leaves: int = Field(16, ge=2)
    threshold_min_rows: int = Field(20, ge=1)
    max_transfer_rows: int = Field(60_000, ge=100)
    min_transfer_rows: int = Field(2_000, ge=1)
    holdout_share: float = Field(0.1, gt=0, lt=1)
    top_share: float = Field(0.01, gt=0, lt=1)
    onehot_min_count: int = Field(20, ge=1)
    onehot_max_values: int = Field(20, ge=0)
    latency: LatencyConfig = Field(default_factory=lambda: LatencyConfig(n_single=500, warmup=20))
    teacher_n_single: int = Field(100, ge=1)
    onnx_exporter: Literal["legacy", "dynamo"] = "legacy"
    seed: int = 42


@dataclass
class Teacher:
    """What the student imitates.

    Attributes:
        name: Shown in the table (``ensemble``, or the best single model's name).
        valid: The validation teacher's scores of ``fold.valid`` rows (fold order), in [0, 1].
        test: The final teacher's scores of ``fold.test`` rows (fold order), in [0, 1].
        predict_rows: Optional ``f(index labels of fold.frame rows) -> scores`` of the final
            teacher: gives the student its large transfer set (see the module docstring).
        predict_frame: Optional ``f(rows of the feature frame) -> scores``, to time the teacher
            at batch size 1 (None: its latency and throughput are left NaN).
        size_bytes: The teacher's size on disk (None: NaN).
    """

    name: str
    valid: np.ndarray
    test: np.ndarray
    predict_rows: Callable[[pd.Index], np.ndarray] | None = None
    predict_frame: Callable[[pd.DataFrame], np.ndarray] | None = None
    size_bytes: int | None = None


def _check_probs(arr: Any, n: int, what: str) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float64).reshape(-1)
    if len(out) != n:
        raise ValueError(f"{what}: {len(out)} values for {n} rows")
    if len(out) and (not np.isfinite(out).all() or out.min() < 0 or out.max() > 1):
        raise ValueError(f"{what} must be probabilities in [0, 1]")
    return out


def check_teacher(teacher: Teacher, fold: FoldData) -> Teacher:
    """Validate shapes and values against the fold (one score per valid and per test row)."""
    teacher.valid = _check_probs(teacher.valid, len(fold.index["valid"]), "teacher valid scores")
    teacher.test = _check_probs(teacher.test, len(fold.index["test"]), "teacher test scores")
    return teacher


def teacher_from_scores(scores: Mapping[str, Any], *, name: str = "ensemble") -> Teacher:
    """A `Teacher` from ``{"valid": ..., "test": ...}`` and optionally ``"predict_rows"``,
    ``"predict_frame"``, ``"size_bytes"`` and ``"name"`` (which overrides `name`)."""
    missing = [k for k in ("valid", "test") if k not in scores]
    if missing:
        raise ValueError(f"teacher scores need the keys 'valid' and 'test' (missing {missing})")
    unknown = set(scores) - {"valid", "test", "predict_rows", "predict_frame", "size_bytes", "name"}
    if unknown:
        raise ValueError(f"unknown teacher keys: {sorted(unknown)}")
    return Teacher(
        name=str(scores.get("name", name)),
        valid=np.asarray(scores["valid"], dtype=np.float64),
        test=np.asarray(scores["test"], dtype=np.float64),
        predict_rows=scores.get("predict_rows"),
        predict_frame=scores.get("predict_frame"),
        size_bytes=scores.get("size_bytes"),
    )


@dataclass(frozen=True)
class StudentInputs:
    """The student's input columns: raw numeric features, then one 0/1 column per frequent
    category value (``"MERCHANT_CATEGORY=crypto"``) — the drift pattern and colluding merchants
    are told apart by their category, which an all-numeric student would not see.

    Attributes:
        numeric: Numeric feature columns, raw (the student standardises them itself).
        onehot: ``(column, value)`` pairs, each one input that is 1.0 when the row's value equals it.
    """

    numeric: tuple[str, ...]
    onehot: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> list[str]:
        """Input names in order (the ONNX graph's input columns)."""
        return [*self.numeric, *(f"{c}={v}" for c, v in self.onehot)]

    @classmethod
    def fit(
        cls,
        rows: pd.DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        min_count: int,
        max_values: int,
    ) -> StudentInputs:
        """Keep the values of each categorical column seen at least `min_count` times in `rows`
        (at most `max_values` per column, most frequent first)."""
        pairs: list[tuple[str, str]] = []
        for col in categorical:
            counts = rows[col].dropna().astype(str).value_counts()
            top = sorted(((v, n) for v, n in counts.items() if n >= min_count), key=lambda t: (-t[1], t[0]))
            pairs += [(col, str(v)) for v, _ in top[:max_values]]
        return cls(tuple(numeric), tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved with the student)."""
        return {"numeric": list(self.numeric), "onehot": [list(p) for p in self.onehot]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudentInputs:
        """Inverse of `to_dict`."""
        return cls(tuple(d["numeric"]), tuple((str(c), str(v)) for c, v in d.get("onehot", [])))


def student_matrix(rows: pd.DataFrame, inputs: StudentInputs, fill: np.ndarray | None = None) -> np.ndarray:
    """The student's input matrix for frame rows (float32, columns `StudentInputs.names`).

    A missing numeric value is replaced by `fill` (the student's stored means, so that it
    standardises to 0); NaN stays NaN when `fill` is None.
    """
    x = rows.loc[:, list(inputs.numeric)].to_numpy(dtype=np.float32).reshape(len(rows), -1)
    if fill is not None:
        nan = np.isnan(x)
        if nan.any():
            x = np.where(nan, np.asarray(fill, dtype=np.float32)[: x.shape[1]][None, :], x)
    if inputs.onehot:
        hot = np.empty((len(rows), len(inputs.onehot)), dtype=np.float32)
        as_str = {c: rows[c].astype(str).to_numpy() for c in dict.fromkeys(c for c, _ in inputs.onehot)}
        for j, (col, value) in enumerate(inputs.onehot):
            hot[:, j] = as_str[col] == value
        x = np.concatenate([x, hot], axis=1)
    return np.ascontiguousarray(x)


def _fill_values(x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        mean = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0) if len(x) else np.zeros(x.shape[1])
    return np.nan_to_num(mean).astype(np.float32)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_thresholds(x: np.ndarray, target: np.ndarray, *, leaves: int, min_rows: int) -> list[list[float]]:
    """Per input column, the split points of a regression tree of `target` on that column alone.

    Columns with two values or fewer (flags, one-hot inputs) get none: they are steps already.
    """
    out: list[list[float]] = []
    for j in range(x.shape[1]):
        col = x[:, j]
        if len(np.unique(col)) <= 2:
            out.append([])
            continue
        tree = DecisionTreeRegressor(max_leaf_nodes=leaves, min_samples_leaf=min_rows, random_state=0)
        tree.fit(col[:, None], target)
        inner = tree.tree_.feature >= 0
        out.append(sorted(float(t) for t in np.unique(tree.tree_.threshold[inner])))
    return out


class ThresholdStudentConfig(BaseModel):
    """`ThresholdStudent` architecture: inputs, their thresholds, the MLP."""

    model_config = ConfigDict(extra="forbid")

    n_features: int = Field(..., ge=1)
    thresholds: list[list[float]] = Field(default_factory=list, description="ascending, per input")
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.0, ge=0, lt=1)


class ThresholdStudent(nn.Module):
    """Raw inputs plus a 0/1 step per threshold, then a `StudentMLP`:
    ``forward(x_raw (batch, n_features)) -> (batch,)`` logits."""

    config_cls: ClassVar[type[ThresholdStudentConfig]] = ThresholdStudentConfig
    # Buffers registered in __init__ (declared so that type checkers see tensors, not modules).
    step_index: torch.Tensor
    step_value: torch.Tensor

    def __init__(self, config: ThresholdStudentConfig) -> None:
        super().__init__()
        if config.thresholds and len(config.thresholds) != config.n_features:
            raise ValueError(f"{len(config.thresholds)} threshold lists for {config.n_features} inputs")
        self.config = config
        index = [j for j, ts in enumerate(config.thresholds) for _ in ts]
        values = [t for ts in config.thresholds for t in ts]
        self.n_steps = len(index)
        self.register_buffer("step_index", torch.tensor(index, dtype=torch.long))
        self.register_buffer("step_value", torch.tensor(values, dtype=torch.float32))
        self.mlp = StudentMLP(
            StudentConfig(
                n_features=config.n_features + self.n_steps, hidden=config.hidden, dropout=config.dropout
            )
        )

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """``[x, 1(x_j > t) for each threshold t of each input j]``."""
        if self.n_steps == 0:
            return x
        return torch.cat([x, (x[:, self.step_index] > self.step_value).to(x.dtype)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.expand(x))


def top_fidelity(teacher_probs: np.ndarray, student_scores: np.ndarray, top_share: float) -> float:
    """AP with which `student_scores` recover the rows of the teacher's top `top_share` (NaN
    when the teacher's scores are all tied)."""
    p = np.asarray(teacher_probs, dtype=np.float64)
    if len(p) == 0:
        return math.nan
    top = p >= np.quantile(p, 1 - top_share)
    if top.all() or not top.any():
        return math.nan
    return float(average_precision_score(top, student_scores))


def train_student(
    x: np.ndarray,
    y: np.ndarray,
    teacher_probs: np.ndarray,
    cfg: FastPathConfig,
    *,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    device: str = "auto",
) -> tuple[ThresholdStudent, FitResult]:
    """Distil the teacher into a `ThresholdStudent` (see the module docstring).

    Args:
        x: Student inputs of the training transfer rows (`student_matrix`, NaN filled).
        y: Their labels where known at the time, NaN elsewhere.
        teacher_probs: The teacher's scores of those rows.
        cfg: Student, loss and training settings.
        holdout: ``(x, teacher_probs)`` of held-out rows: their fidelity at the top is recorded
            after every epoch (it chooses nothing).
        device: Where the student trains (``auto``: CUDA when present).

    Returns:
        The student after the last epoch (CPU, eval mode) and its history (``train_loss`` and
        ``holdout_fidelity`` per epoch; ``best_val_ap`` holds the final fidelity).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    teacher_probs = np.asarray(teacher_probs, dtype=np.float32)
    if not (len(x) == len(y) == len(teacher_probs)) or len(x) == 0:
        raise ValueError(f"x ({len(x)}), y ({len(y)}) and teacher_probs ({len(teacher_probs)}) must align")
    thresholds = fit_thresholds(
        x, _logit(teacher_probs), leaves=cfg.threshold_leaves, min_rows=cfg.threshold_min_rows
    )
    torch.manual_seed(cfg.seed)
    model = ThresholdStudent(
        ThresholdStudentConfig(
            n_features=x.shape[1], thresholds=thresholds, hidden=cfg.hidden, dropout=cfg.dropout
        )
    )
    with torch.no_grad():
        model.mlp.set_standardisation(model.expand(torch.from_numpy(x)).numpy())
    alpha = cfg.alpha if (~np.isnan(y)).any() else 1.0
    dev = resolve_device(device)
    xs = torch.from_numpy(x)
    targets = torch.from_numpy(np.stack([y, teacher_probs], axis=1))
    n = len(xs)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    result = FitResult(device=str(dev))
    start = time.perf_counter()
    with torch_threads(cfg.threads):
        model.to(dev)
        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.learning_rate, total_steps=steps, pct_start=cfg.warmup_share
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen)
            total, batches = 0.0, 0
            for lo in range(0, n, cfg.batch_size):
                idx = order[lo : lo + cfg.batch_size]
                logits = model(xs[idx].to(dev, non_blocking=True))
                loss = distillation_loss(
                    logits, targets[idx].to(dev, non_blocking=True), temperature=cfg.temperature, alpha=alpha
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                total += float(loss.detach())
                batches += 1
            record = {"epoch": float(epoch), "train_loss": total / max(batches, 1)}
            if holdout is not None and len(holdout[0]):
                z = predict_logits(model, [np.ascontiguousarray(holdout[0], dtype=np.float32)], device=dev)
                record["holdout_fidelity"] = top_fidelity(holdout[1], z, cfg.top_share)
            result.history.append(record)
    result.best_epoch = cfg.epochs
    result.best_val_ap = result.history[-1].get("holdout_fidelity", math.nan)
    result.seconds = time.perf_counter() - start
    return model.cpu().eval(), result


@dataclass
class TransferSet:
    """The rows the student imitates the teacher on.

    Attributes:
        labels: Index labels of `fold.frame` rows (time order).
        teacher: The teacher's scores of those rows.
        y: Labels known at the test start (NaN where not yet known).
        source: ``final_teacher`` (rows outside the final teacher's training week) or
            ``validation_teacher`` (the ``valid`` rows).
    """

    labels: pd.Index
    teacher: np.ndarray
    y: np.ndarray
    source: str


def transfer_set(fold: FoldData, teacher: Teacher, cfg: FastPathConfig) -> TransferSet:
    """Pick the transfer rows and their teacher scores (see the module docstring)."""
    frame = fold.frame
    times = frame[schema.TX_DATETIME]
    if teacher.predict_rows is not None:
        end = fold.periods["test"][0] if len(fold.test) else times.max() + pd.Timedelta(1, "ns")
        outside = (times < end).to_numpy() & ~frame.index.isin(fold.index["train"])
        labels = frame.index[outside][-cfg.max_transfer_rows :]
        if len(labels) >= cfg.min_transfer_rows:
            p = _check_probs(teacher.predict_rows(labels), len(labels), "teacher predict_rows scores")
            rows = frame.loc[labels]
            train_end = fold.periods["train"][1]
            known = (
                rows[schema.LABELLED].to_numpy(dtype=bool) & (rows[schema.TX_DATETIME] < train_end).to_numpy()
            )
            y = np.where(known, rows[schema.TX_FRAUD].to_numpy(dtype=np.float64), np.nan)
            return TransferSet(labels, p, y, "final_teacher")
    labels = fold.index["valid"]
    return TransferSet(labels, teacher.valid, fold.y("valid").astype(np.float64), "validation_teacher")


def _frame_latency(
    predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, cfg: LatencyConfig, n_single: int
) -> dict[str, float]:
    """`quantize.latency_table`'s timing for a scorer of frame rows (batch-1 calls, then batches)."""
    n = len(rows)
    for i in range(min(cfg.warmup, 5)):
        predict(rows.iloc[i % n : i % n + 1])
    times = np.empty(n_single)
    for i in range(n_single):
        one = rows.iloc[i % n : i % n + 1]
        t0_ns = time.perf_counter_ns()
        predict(one)
        times[i] = (time.perf_counter_ns() - t0_ns) / 1e6
    t0 = time.perf_counter()
    for lo in range(0, n, cfg.batch_size):
        predict(rows.iloc[lo : lo + cfg.batch_size])
    elapsed = time.perf_counter() - t0
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "throughput_per_s": n / elapsed if elapsed > 0 else math.inf,
    }


@dataclass
class FastPathOutcome:
    """Section 4's student, its exports and the comparison table.

    Attributes:
        table: One row per model (teacher, student, student_int8, student_onnx): ``ap``,
            ``ap_vs_teacher`` (AP over the teacher's), ``p50_ms``, ``p99_ms`` (batch 1, one
            thread), ``throughput_per_s``, ``size_kb``.
        student: The float student (CPU, eval mode).
        fit: Its training record.
        paths: ``student`` (folder, `models.training.load_model`), ``student_int8`` (folder,
            `quantize.load_quantized`), ``student_onnx`` (file, `quantize.OnnxScorer`).
        inputs: The student's input columns (`student_matrix` builds them from frame rows).
        teacher: The teacher's name.
        transfer: Where the transfer rows came from and how many (``source``, ``rows``,
            ``labelled``, ``holdout``), and the student's ``holdout_fidelity`` (`top_fidelity`).
        student_test: The float student's scores of every ``fold.test`` row.
        onnx_max_abs_diff: Largest |ONNX - torch| probability over the evaluated rows.
        int8_max_abs_diff: Largest |int8 - float| probability over the evaluated rows.
        eval_rows: ``test`` (the evaluated test rows) or ``holdout`` (no test days in the fold).
    """

    table: pd.DataFrame
    student: ThresholdStudent
    fit: FitResult
    paths: dict[str, Path]
    inputs: StudentInputs
    teacher: str
    transfer: dict[str, Any]
    student_test: np.ndarray
    onnx_max_abs_diff: float
    int8_max_abs_diff: float
    eval_rows: str


def _ap(y: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(y)
    return float(average_precision_score(y, scores)) if 0 < y.sum() < len(y) else math.nan


def run_fast_path(
    fold: FoldData, teacher: Teacher, cfg: FastPathConfig, folder: str | Path, *, device: str = "auto"
) -> FastPathOutcome:
    """Distil `teacher` into a student, quantize and export it, and build the section-4 table.

    Args:
        fold: The fold.
        teacher: Scores (and optionally scorers) of the model to imitate.
        cfg: Student, loss, training and measurement settings.
        folder: Where the student artefacts go (``student/``, ``student_int8/``, ``student.onnx``).
        device: Where the student trains (``auto``: CUDA when present); it is scored, quantized
            and exported on the CPU, where the real-time path runs it.

    Returns:
        The table, the student and the paths of its artefacts.
    """
    teacher = check_teacher(teacher, fold)
    folder = Path(folder)
    ts = transfer_set(fold, teacher, cfg)
    n = len(ts.labels)
    n_hold = max(1, round(cfg.holdout_share * n))
    if n - n_hold < 2:
        raise ValueError(f"{n} transfer rows: too few to distil a student")
    hold = np.zeros(n, dtype=bool)
    hold[np.random.default_rng(cfg.seed).choice(n, n_hold, replace=False)] = True
    rows = fold.frame.loc[ts.labels]
    inputs = StudentInputs.fit(
        rows.loc[~hold],
        fold.spec.numeric,
        fold.spec.categorical,
        min_count=cfg.onehot_min_count,
        max_values=cfg.onehot_max_values,
    )
    x = student_matrix(rows, inputs)
    # Missing values become the training rows' means: the student's stored means (filling with
    # the mean leaves it unchanged), the fill every later caller uses.
    x = student_matrix(rows, inputs, _fill_values(x[~hold]))
    student, record = train_student(
        x[~hold], ts.y[~hold], ts.teacher[~hold], cfg, holdout=(x[hold], ts.teacher[hold]), device=device
    )
    fill = student.mlp.mean.numpy()

    paths = {
        "student": folder / STUDENT_DIR,
        "student_int8": folder / STUDENT_INT8_DIR,
        "student_onnx": folder / STUDENT_ONNX,
    }
    save_model(student, paths["student"], extra={"inputs": inputs.to_dict()})
    qstudent = quantize_dynamic_int8(student)
    save_quantized(qstudent, paths["student_int8"])
    export_onnx(student, paths["student_onnx"], len(inputs.names), exporter=cfg.onnx_exporter)

    test_eval = fold.test_eval if len(fold.test) else fold.test
    if len(test_eval) and 0 < test_eval[schema.TX_FRAUD].sum() < len(test_eval):
        eval_rows, kind = test_eval, "test"
        teacher_eval = teacher.test[fold.test_eval_mask]
        y_eval = eval_rows[schema.TX_FRAUD].to_numpy(dtype=np.float64)
        x_eval = student_matrix(eval_rows, inputs, fill)
    else:
        # No labelled test days (a fold for `train`): the held-out transfer rows, labelled
        # ones only, stand in.
        lab = hold & ~np.isnan(ts.y)
        eval_rows, kind = rows.loc[lab], "holdout"
        teacher_eval, y_eval, x_eval = ts.teacher[lab], ts.y[lab], x[lab]

    candidates: dict[str, Candidate] = {
        "student": torch_candidate(student, path=paths["student"]),
        "student_int8": torch_candidate(qstudent, path=paths["student_int8"]),
        "student_onnx": onnx_candidate(paths["student_onnx"], threads=cfg.latency.threads),
    }
    table = latency_table(candidates, x_eval, y_eval, cfg.latency)
    teacher_row: dict[str, Any] = {
        "model": f"teacher ({teacher.name})",
        "ap": _ap(y_eval, teacher_eval),
        "p50_ms": math.nan,
        "p99_ms": math.nan,
        "throughput_per_s": math.nan,
        "size_kb": math.nan if teacher.size_bytes is None else teacher.size_bytes / 1024,
    }
    if teacher.predict_frame is not None:
        with torch_threads(cfg.latency.threads):
            timing = _frame_latency(teacher.predict_frame, eval_rows, cfg.latency, cfg.teacher_n_single)
        teacher_row.update(timing)
    table = pd.concat([pd.DataFrame([teacher_row]), table], ignore_index=True)
    table["ap_vs_teacher"] = table["ap"] / teacher_row["ap"] if teacher_row["ap"] > 0 else math.nan
    table = table[TABLE_COLUMNS]

    p_float = candidates["student"].predict(x_eval)
    onnx_diff = float(np.abs(OnnxScorer(paths["student_onnx"]).predict_proba(x_eval) - p_float).max())
    int8_diff = float(np.abs(candidates["student_int8"].predict(x_eval) - p_float).max())
    student_test = (
        candidates["student"].predict(student_matrix(fold.test, inputs, fill))
        if len(fold.test)
        else np.zeros(0)
    )
    return FastPathOutcome(
        table=table,
        student=student,
        fit=record,
        paths=paths,
        inputs=inputs,
        teacher=teacher.name,
        transfer={
            "source": ts.source,
            "rows": n,
            "labelled": int((~np.isnan(ts.y)).sum()),
            "holdout": int(n_hold),
            "holdout_fidelity": record.best_val_ap,
        },
        student_test=student_test,
        onnx_max_abs_diff=onnx_diff,
        int8_max_abs_diff=int8_diff,
        eval_rows=kind,
    )
