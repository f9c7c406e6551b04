"""The serving reference: the popularity fallback and the training distributions for drift.

The API must answer when the model service is down, so it keeps its own copy of the
popularity ranking, and it needs the training-time distributions of what it monitors. Both
come from the champion recommender (every 3a model keeps its training popularity in
``fallback_``) and, when available, the training interactions and user table:

* ``popular_items`` / ``popular_scores``: the fallback list (most interacted items first);
* ``item_bucket``: each training item's popularity bucket. Items are ranked by training
  popularity and cut into ``n_buckets`` groups holding equal shares of the interactions, so
  the training reference of ``item_popularity`` is uniform by construction and a list
  leaning on the head shows up as a high PSI; items unknown at training fall in ``new``;
* ``features``: reference proportions per bin of ``device`` (users' devices), ``hour`` (hour
  of day of interactions, UTC) and ``item_popularity``.

Written as one JSON file, atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.atomic import atomic_write_json
from shared.errors import InputFileError

NEW_BUCKET = "new"
UNKNOWN_DEVICE = "unknown"
N_FALLBACK = 100


@dataclass
class ServingReference:
    """What the API loads at startup (see the module docstring).

    Attributes:
        model_name: Name of the model the reference was built from.
        model_version: Its registry version.
        created_at: ISO-8601 UTC time.
        popular_items: Fallback list, best first.
        popular_scores: Training interaction counts of those items.
        item_bucket: Item id (as text) -> popularity bucket label.
        features: Feature -> {bin: proportion}.
    """

    model_name: str
    model_version: str
    created_at: str
    popular_items: list[Any]
    popular_scores: list[float]
    item_bucket: dict[str, str] = field(default_factory=dict)
    features: dict[str, dict[str, float]] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the reference as JSON (atomic)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ServingReference:
        """Read a reference written by `save`.

        Raises:
            InputFileError: Missing or malformed file.
        """
        p = Path(path)
        if not p.is_file():
            raise InputFileError(
                f"serving reference not found: {p} (build it with `serve` or build_reference)"
            )
        try:
            return cls(**json.loads(p.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputFileError(f"serving reference {p} is malformed: {exc}") from None

    def bucket_of(self, item_id: Any) -> str:
        """Popularity bucket of an item (``new`` when unseen in training)."""
        return self.item_bucket.get(str(item_id), NEW_BUCKET)


def popularity_buckets(item_ids: np.ndarray, counts: np.ndarray, n_buckets: int = 10) -> dict[str, str]:
    """Label items by equal-interaction-share popularity buckets (``"0"`` = the head).

    Args:
        item_ids: Catalogue item ids.
        counts: Training interaction count of each item.
        n_buckets: Buckets; bucket b holds the items whose cumulative interaction share
            (most popular first) falls in [b/n, (b+1)/n).

    Returns:
        Item id (text) -> bucket label. Items with no interaction go to the last bucket.
    """
    counts = np.asarray(counts, dtype=float)
    order = np.lexsort((np.arange(len(counts)), -counts))
    total = counts.sum()
    if total <= 0:
        return {str(i): str(n_buckets - 1) for i in item_ids}
    # share of interactions strictly before each item: its position in the cumulative curve
    before = (np.cumsum(counts[order]) - counts[order]) / total
    buckets = np.minimum((before * n_buckets).astype(int), n_buckets - 1)
    ids = np.asarray(item_ids)[order]
    return {str(i): str(b) for i, b in zip(ids.tolist(), buckets.tolist(), strict=True)}


def _proportions(values: pd.Series) -> dict[str, float]:
    shares = values.astype(str).value_counts(normalize=True)
    return {str(k): float(v) for k, v in shares.items()}


def build_reference(
    recommender: Any,
    *,
    model_name: str,
    model_version: str,
    interactions: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    n_fallback: int = N_FALLBACK,
    n_buckets: int = 10,
) -> ServingReference:
    """Build the reference from a fitted recommender and (optionally) its training data.

    Args:
        recommender: A fitted 3a recommender (``item_ids_`` and ``fallback_`` popularity).
        model_name: Name recorded in the reference.
        model_version: Version recorded in the reference.
        interactions: Training interactions with ``timestamp`` (seconds) for the hour reference.
        users: User table with ``device`` for the device reference.
        n_fallback: Length of the stored fallback list.
        n_buckets: Popularity buckets.
    """
    item_ids = np.asarray(recommender.item_ids_)
    counts = np.asarray(recommender.fallback_, dtype=float)
    order = np.lexsort((np.arange(len(counts)), -counts))[:n_fallback]
    buckets = popularity_buckets(item_ids, counts, n_buckets)
    # Reference of recommended-item popularity: training interactions per bucket (equal shares).
    bucket_mass: dict[str, float] = {}
    for item, c in zip(item_ids.tolist(), counts.tolist(), strict=True):
        bucket_mass[buckets[str(item)]] = bucket_mass.get(buckets[str(item)], 0.0) + c
    total = sum(bucket_mass.values()) or 1.0
    features: dict[str, dict[str, float]] = {
        "item_popularity": {b: m / total for b, m in bucket_mass.items()}
    }
    if interactions is not None and "timestamp" in interactions and len(interactions):
        hours = (interactions["timestamp"].to_numpy(dtype=np.int64) // 3600) % 24
        features["hour"] = _proportions(pd.Series(hours))
    if users is not None and "device" in users and len(users):
        features["device"] = _proportions(users["device"])
    return ServingReference(
        model_name=model_name,
        model_version=str(model_version),
        created_at=datetime.now(UTC).isoformat(),
        popular_items=item_ids[order].tolist(),
        popular_scores=counts[order].tolist(),
        item_bucket=buckets,
        features=features,
    )
