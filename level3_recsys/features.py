"""Model inputs: the dataset files every later stage reads, and the item content features.

The ``features`` stage (``python -m level3_recsys features``, DVC stage ``features``)
writes into one folder (``data/processed`` by default):

* ``train.parquet`` / ``test.parquet``: the interactions of the two periods;
* ``items.parquet`` / ``users.parquet``: the catalogue and user table both periods share
  (their row order is every model's integer index, so train and test agree on it);
* ``item_features.npz``: the item content matrix (genres, tags, title words, creator,
  length) from `models.content.ContentEncoder`;
* ``dataset.json``: row counts, the number of content features and the cold items.

`read_dataset` is how `train`, `evaluate` and the nightly batch read the folder back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from level3_recsys.data import InteractionData
from shared.atomic import atomic_path, atomic_write_json
from shared.errors import InputFileError

ITEM_FEATURES_FILE = "item_features.npz"
DATASET_FILE = "dataset.json"


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame to Parquet atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """Read a Parquet file a previous stage wrote.

    Raises:
        InputFileError: The file is missing (the message says to run the previous stage).
    """
    if not path.is_file():
        raise InputFileError(f"{what} not found at {path}; run the previous stage first")
    return pd.read_parquet(path)


def write_dataset(train: InteractionData, test: InteractionData, out: Path) -> Path:
    """Write train/test interactions plus the shared catalogue and user table into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(train.interactions, out / "train.parquet")
    write_parquet(test.interactions, out / "test.parquet")
    write_parquet(train.items, out / "items.parquet")
    write_parquet(train.users, out / "users.parquet")
    return out


def read_dataset(folder: Path, name: str = "") -> tuple[InteractionData, InteractionData]:
    """Read what `write_dataset` wrote (train and test share one catalogue and index).

    Raises:
        InputFileError: A file of the dataset is missing.
    """
    items = read_parquet(folder / "items.parquet", "item catalogue")
    users = read_parquet(folder / "users.parquet", "user table")
    train = InteractionData.from_frames(
        read_parquet(folder / "train.parquet", "training interactions"), items, users, name=name
    )
    test = train.with_interactions(read_parquet(folder / "test.parquet", "test interactions"))
    return train, test


def build_features(train: InteractionData, test: InteractionData, out: Path) -> dict[str, Any]:
    """Write the model inputs into `out`: the dataset, the item content matrix and its statistics.

    The content encoder is fitted on the catalogue only (no interactions), so it cannot
    leak the test period. The two-tower and two-stage models refit the same encoder inside
    ``fit`` so a saved model stays self-contained; this stage's matrix is what DVC versions
    and what the report summarises.

    Returns:
        The statistics written to ``dataset.json``: train/test summaries, the number of
        content features per item and the number of cold items (no training interaction).
    """
    import scipy.sparse as sp

    from level3_recsys.models.content import ContentEncoder

    write_dataset(train, test, out)
    encoder = ContentEncoder().fit(train.items)
    matrix = encoder.transform(train.items)
    with atomic_path(out / ITEM_FEATURES_FILE) as tmp, open(tmp, "wb") as fh:
        sp.save_npz(fh, matrix)
    stats = {
        "train": train.summary(),
        "test": test.summary(),
        "item_features": int(matrix.shape[1]),
        "cold_items": len(np.setdiff1d(train.item_ids, train.interactions["item_id"].unique())),
    }
    atomic_write_json(out / DATASET_FILE, stats)
    return stats
