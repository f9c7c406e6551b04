"""`metrics.json`: the one file per run that `make all` and the benchmarks read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_json, json_safe

REQUIRED_KEYS = ("level", "dataset", "headline_metric", "headline_value")


def write_metrics(
    path: str | os.PathLike[str],
    *,
    level: int,
    dataset: str,
    headline_metric: str,
    headline_value: float,
    **metrics: Any,
) -> Path:
    """Write a run's metrics atomically.

    Metric names are plain lower-case (``accuracy``, ``roc_auc``, ``ndcg@10``);
    split-level dicts (``test``, ``cv``) are allowed as values.
    """
    for name in metrics:
        if name != name.lower():
            raise ValueError(f"metric names are lower-case: {name!r}")
    payload: dict[str, Any] = {
        "level": level,
        "dataset": dataset,
        "headline_metric": headline_metric,
        "headline_value": headline_value,
    }
    payload.update(metrics)
    # JSON has no NaN: an undefined metric is written as null, never as a fake number.
    return atomic_write_json(path, json_safe(payload))


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a `metrics.json` and check it has the required keys."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return data
