"""Fast scoring of the student: int8 dynamic quantization, ONNX export, latency measurement.

* `quantize_dynamic_int8`: every ``nn.Linear`` gets int8 weights and dynamically quantized
  activations (``torch.ao.quantization.quantize_dynamic``). Torch 2.13 marks ``torch.ao``
  quantization deprecated in favour of torchao, but it is still the supported eager-mode path
  for a CPU model (no torchao in this environment); the warnings are silenced here only.
  Quantized kernels are CPU kernels: the copy is always on the CPU.
* `export_onnx` / `OnnxScorer`: the student (probability head included) as an ONNX graph with
  a dynamic batch axis, scored by onnxruntime. The TorchScript ("legacy") exporter is the
  default: it runs offline in well under a second, while the torch.export ("dynamo") exporter
  also works offline with torch 2.13 and onnxscript but takes about 15 s per export.
* `latency_table`: batch-1 latency percentiles, throughput, size on disk and AP of several
  scorers on the same rows, the section-4 table of the issue.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score
from torch import nn

from level4_fraud.models.training import (
    META_FILE,
    MODEL_FILE,
    build_model,
    read_model_meta,
    save_model,
    torch_threads,
)
from shared.atomic import atomic_path

QUANTIZED_KIND = "dynamic_int8"


@contextmanager
def _quiet_ao() -> Iterator[None]:
    # torch.ao.quantization warns about its deprecation on every call; nothing to act on here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao.*")
        # Loading int8 tensors goes through torch's TypedStorage path, which warns on every load.
        warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
        yield


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """An int8 dynamically quantized copy of `model` (its ``nn.Linear`` layers), on the CPU.

    The copy keeps the model's class and ``config`` (only the layers change), so
    `save_quantized` can record how to rebuild it. `model` itself is left untouched.
    """
    import torch.ao.quantization as tq

    float_copy = copy.deepcopy(model).cpu().eval()
    with _quiet_ao():
        return tq.quantize_dynamic(float_copy, {nn.Linear}, dtype=torch.qint8)


def save_quantized(qmodel: nn.Module, folder: str | Path) -> Path:
    """Write a quantized level-4 model (state_dict + ``model.json`` marked as quantized)."""
    save_model(qmodel, folder, extra={"quantized": QUANTIZED_KIND})
    return Path(folder)


def load_quantized(folder: str | Path) -> nn.Module:
    """Rebuild a model written by `save_quantized`: float model from config, quantize, load."""
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file() or not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no {MODEL_FILE} and {META_FILE}")
    meta = read_model_meta(folder)
    if meta.get("extra", {}).get("quantized") != QUANTIZED_KIND:
        raise ValueError(f"{folder} holds a float model, not a {QUANTIZED_KIND} one")
    qmodel = quantize_dynamic_int8(build_model(meta["class"], meta["config"]))
    with _quiet_ao():
        state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
        qmodel.load_state_dict(state)
    return qmodel.eval()


class _ProbabilityHead(nn.Module):
    """Wrap a logit model so that the exported graph outputs probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    n_features: int,
    *,
    exporter: Literal["legacy", "dynamo"] = "legacy",
    opset: int = 17,
) -> Path:
    """Export a one-input model (``(batch, n_features)`` floats -> logits) as ONNX probabilities.

    Args:
        model: The float student (any device; exported from a CPU copy).
        path: Destination ``.onnx`` file (written atomically).
        n_features: Width of the input.
        exporter: ``"legacy"`` (TorchScript, fast) or ``"dynamo"`` (torch.export).
        opset: ONNX opset for the legacy exporter (dynamo picks its own, >= 18).

    Returns:
        The path. The graph has input ``"x"`` and output ``"score"``, both with a dynamic batch axis.
    """
    import onnx

    wrapped = _ProbabilityHead(copy.deepcopy(model).cpu().eval()).eval()
    example = torch.zeros(2, n_features, dtype=torch.float32)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r".*will be removed.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*deprecated.*", category=FutureWarning)
        onnx_tmp = tmp.with_suffix(".onnx")
        try:
            if exporter == "legacy":
                torch.onnx.export(
                    wrapped,
                    (example,),
                    str(onnx_tmp),
                    dynamo=False,
                    input_names=["x"],
                    output_names=["score"],
                    dynamic_axes={"x": {0: "batch"}, "score": {0: "batch"}},
                    opset_version=opset,
                )
            else:
                program = torch.onnx.export(
                    wrapped,
                    (example,),
                    dynamo=True,
                    input_names=["x"],
                    output_names=["score"],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    verbose=False,
                )
                if program is None:  # only the TorchScript path returns nothing
                    raise RuntimeError("torch.onnx.export(dynamo=True) returned no program")
                program.save(str(onnx_tmp), external_data=False)
            onnx.checker.check_model(str(onnx_tmp))
            onnx_tmp.replace(tmp)
        finally:
            onnx_tmp.unlink(missing_ok=True)
    return Path(path)


class OnnxScorer:
    """onnxruntime session over an exported student: ``predict_proba(x) -> (n,)`` probabilities.

    Args:
        path: The ``.onnx`` file from `export_onnx`.
        threads: Intra-op threads (1 = the one-core latency the issue asks about).
        providers: onnxruntime providers; default CUDA when onnxruntime has it, else CPU.
    """

    def __init__(self, path: str | Path, *, threads: int = 1, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for the rows of `x` (``(n, F)``; cast to float32)."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


@dataclass
class Candidate:
    """One scorer in the latency table.

    Attributes:
        predict: ``predict(x (n, F) float32) -> (n,)`` fraud scores.
        size_bytes: Size of what must be deployed (model file(s) on disk).
    """

    predict: Callable[[np.ndarray], np.ndarray]
    size_bytes: int


def torch_candidate(model: nn.Module, *, path: str | Path | None = None) -> Candidate:
    """A candidate for a one-input torch model (float or quantized) scored on the CPU.

    Args:
        model: Module mapping ``(n, F)`` floats to logits.
        path: Its saved file, for the size; without one the state_dict is saved to a
            temporary file and measured.
    """
    model = model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            z = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
            return torch.sigmoid(z).cpu().numpy().astype(np.float64)

    return Candidate(predict=predict, size_bytes=state_dict_size(model) if path is None else _size(path))


def onnx_candidate(path: str | Path, *, threads: int = 1) -> Candidate:
    """A candidate for an exported ONNX student (one onnxruntime session, `threads` threads)."""
    scorer = OnnxScorer(path, threads=threads)
    return Candidate(predict=scorer.predict_proba, size_bytes=_size(path))


def state_dict_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the model's size on disk."""
    fd, name = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        with _quiet_ao():
            torch.save(model.state_dict(), name)
        return Path(name).stat().st_size
    finally:
        Path(name).unlink(missing_ok=True)


def _size(path: str | Path) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


class LatencyConfig(BaseModel):
    """How latency is measured (quick profile; full: ``n_single=5000``)."""

    model_config = ConfigDict(extra="forbid")

    n_single: int = Field(1000, ge=1, description="batch-1 calls timed per model")
    warmup: int = Field(50, ge=0, description="untimed batch-1 calls first")
    batch_size: int = Field(1024, ge=1, description="batch size of the throughput run")
    threads: int = Field(1, ge=1, description="torch CPU threads while measuring (one core)")


def latency_table(
    models: Mapping[str, Candidate],
    x: np.ndarray,
    y: np.ndarray,
    cfg: LatencyConfig | None = None,
) -> pd.DataFrame:
    """Score the same rows with every candidate: AP, batch-1 latency, throughput, size.

    Args:
        models: Name -> `Candidate` (teacher, student, quantized student, ONNX student...).
        x: Feature rows ``(n, F)`` every candidate accepts.
        y: 0/1 labels of the rows (for AP).
        cfg: Measurement settings.

    Returns:
        One row per model (in the given order): ``model, ap, p50_ms, p99_ms,
        throughput_per_s`` (rows per second in batches of ``cfg.batch_size``) and ``size_kb``.
    """
    cfg = cfg or LatencyConfig()
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x ({len(x)} rows) and y ({len(y)}) must be non-empty and aligned")
    rows: list[dict[str, Any]] = []
    with torch_threads(cfg.threads):
        for name, cand in models.items():
            scores = np.asarray(cand.predict(x), dtype=np.float64).reshape(-1)
            if len(scores) != len(x):
                raise ValueError(f"{name} returned {len(scores)} scores for {len(x)} rows")
            ap = float(average_precision_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")
            for i in range(cfg.warmup):
                cand.predict(x[i % len(x) : i % len(x) + 1])
            times = np.empty(cfg.n_single)
            for i in range(cfg.n_single):
                row = x[i % len(x) : i % len(x) + 1]
                t0_ns = time.perf_counter_ns()
                cand.predict(row)
                times[i] = (time.perf_counter_ns() - t0_ns) / 1e6
            t0 = time.perf_counter()
            for lo in range(0, len(x), cfg.batch_size):
                cand.predict(x[lo : lo + cfg.batch_size])
            elapsed = time.perf_counter() - t0
            rows.append(
                {
                    "model": name,
                    "ap": ap,
                    "p50_ms": float(np.percentile(times, 50)),
                    "p99_ms": float(np.percentile(times, 99)),
                    "throughput_per_s": len(x) / elapsed if elapsed > 0 else float("inf"),
                    "size_kb": cand.size_bytes / 1024,
                }
            )
    return pd.DataFrame(rows, columns=["model", "ap", "p50_ms", "p99_ms", "throughput_per_s", "size_kb"])
