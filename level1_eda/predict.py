"""Apply a saved model to new rows: `python -m level1_eda predict --run RUN_FOLDER --csv ... --out ...`.

The saved file holds the whole pipeline (type coercion, imputers, encoder,
model), so new data goes through exactly the steps the training data went
through. The new file may lack the target, contain categories never seen in
training or have gaps: the pipeline handles all three.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from level1_eda.data import load_csv
from level1_eda.evaluate import task_metrics
from level1_eda.train import class_labels
from shared.atomic import atomic_write_with
from shared.errors import ConfigError, DataError, InputFileError

MODEL_FILE = "model.joblib"


def resolve_model(model: Path | None, run_dir: Path | None, artifacts: Path) -> Path:
    """The model file `predict` uses: ``--model FILE``, else ``--run FOLDER``'s, else the newest run's.

    Args:
        model: A ``model.joblib`` path given with ``--model``.
        run_dir: A run folder given with ``--run``; its ``model.joblib`` is used.
        artifacts: Where runs are written by default (searched when neither is given).

    Raises:
        ConfigError: Both ``--model`` and ``--run`` given.
        InputFileError: The run folder has no model, or no run has one yet.
    """
    if model is not None and run_dir is not None:
        raise ConfigError("give either --model FILE or --run RUN_FOLDER, not both")
    if model is not None:
        return Path(model)
    if run_dir is not None:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise InputFileError(f"run folder not found: {run_dir}")
        if not (run_dir / MODEL_FILE).is_file():
            raise InputFileError(f"no {MODEL_FILE} in run folder {run_dir} (was it written by `profile`?)")
        return run_dir / MODEL_FILE
    found = sorted(Path(artifacts).glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise InputFileError(
            f"no run with a {MODEL_FILE} under {artifacts}; give --model FILE or --run RUN_FOLDER"
        )
    return found[-1]


def load_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a ``model.joblib`` written by `level1_eda.pipeline.run`.

    Raises:
        InputFileError: Missing file, or not a level-1 model.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"model file not found: {path}")
    try:
        bundle = joblib.load(path)
    except Exception as exc:  # unpickling errors come in many types; all mean "not our model"
        raise InputFileError(f"cannot load model {path}: {type(exc).__name__}") from None
    if not isinstance(bundle, dict) or "pipeline" not in bundle or "task" not in bundle:
        raise InputFileError(f"{path} is not a level-1 model (expected the file written by `run`)")
    return bundle


def predict_frame(bundle: dict[str, Any], frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Predictions for each row of `frame`, in order.

    Returns:
        A frame with ``prediction`` (and ``proba_<class>`` per class for classification),
        and warnings (feature columns absent from `frame`).

    Raises:
        DataError: None of the model's feature columns is in `frame`.
    """
    features = list(bundle["features"])
    absent = [c for c in features if c not in frame.columns]
    if len(absent) == len(features):
        expected = ", ".join(features[:10])
        raise DataError(f"none of the model's feature columns is in the file; expected some of: {expected}")
    warnings = []
    if absent:
        warnings.append(f"columns absent from the new file, treated as missing: {', '.join(absent)}")
    pipeline = bundle["pipeline"]
    out = pd.DataFrame(index=range(len(frame)))
    X = frame.reset_index(drop=True)
    out["prediction"] = pipeline.predict(X)
    if bundle["task"] == "classification":
        proba = pipeline.predict_proba(X)
        for i, cls in enumerate(pipeline.named_steps["model"].classes_):
            out[f"proba_{cls}"] = np.round(proba[:, i], 6)
    return out, warnings


def predict_csv(
    model_path: str | os.PathLike[str], csv_path: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """Read a CSV, predict every row and write the predictions CSV atomically.

    Returns:
        A summary: rows, output path, warnings, and the score when the file has the target.
    """
    bundle = load_model(model_path)
    loaded = load_csv(csv_path)
    preds, warnings = predict_frame(bundle, loaded.frame)
    out_path = Path(out_path)
    atomic_write_with(out_path, lambda p: preds.to_csv(p, index=False))
    summary: dict[str, Any] = {
        "model": Path(model_path),
        "rows": len(preds),
        "out": out_path,
        "warnings": [*loaded.warnings, *warnings],
    }
    target = bundle["target"]
    if target in loaded.frame.columns:
        y = loaded.frame[target].reset_index(drop=True)
        known = y.notna().to_numpy()
        if known.any():
            y_true = class_labels(y[known]) if bundle["task"] == "classification" else y[known].astype(float)
            metric = "accuracy" if bundle["task"] == "classification" else "r2"
            summary[metric] = task_metrics(bundle["task"], y_true, preds["prediction"][known].to_numpy())[
                metric
            ]
    return summary
