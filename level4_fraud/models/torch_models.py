"""Tabular PyTorch model: numeric features standardised, categorical fields embedded.

`TabularPreprocessor` is the fitted, saveable preprocessing (means and standard deviations of the
numeric columns, a vocabulary per categorical column); `TabularMLP` consumes its two outputs.
`TabularEncoder` (embeddings + numeric concatenation) is shared with the mixture of experts.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from shared.atomic import atomic_write_json

UNKNOWN = 0
"""Category index for values not seen in training (and missing values)."""


class TabularPreprocessor:
    """Standardise numeric columns and index categorical ones, fitted on training rows only.

    Numeric: ``(x - mean) / std``, a missing value becomes 0 (the training mean), and the result
    is clipped to ``±clip`` so one extreme amount cannot saturate the network. Categorical: the
    ``max_categories`` most frequent training values get indices ``1..K`` (by frequency, ties by
    value); anything else, missing included, is `UNKNOWN` (0).

    Args:
        numeric_cols: Numeric feature columns, in model order.
        categorical_cols: Categorical columns (any dtype; compared as strings).
        clip: Bound on standardised values.
        max_categories: Vocabulary size cap per categorical column.
    """

    def __init__(
        self,
        numeric_cols: Sequence[str],
        categorical_cols: Sequence[str] = (),
        *,
        clip: float = 8.0,
        max_categories: int = 1000,
    ) -> None:
        overlap = set(numeric_cols) & set(categorical_cols)
        if overlap:
            raise ValueError(f"columns both numeric and categorical: {sorted(overlap)}")
        self.numeric_cols = list(numeric_cols)
        self.categorical_cols = list(categorical_cols)
        self.clip = float(clip)
        self.max_categories = int(max_categories)
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.vocab_: dict[str, list[str]] = {}

    @property
    def fitted(self) -> bool:
        """Whether `fit` has run."""
        return self.mean_ is not None

    def _require(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.numeric_cols + self.categorical_cols if c not in frame.columns]
        if missing:
            raise KeyError(f"missing feature columns: {missing}")

    def fit(self, frame: pd.DataFrame) -> TabularPreprocessor:
        """Learn means, standard deviations and vocabularies from `frame`."""
        self._require(frame)
        if len(frame) == 0:
            raise ValueError("cannot fit the preprocessing on zero rows")
        num = frame[self.numeric_cols].to_numpy(dtype=np.float64).reshape(len(frame), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing column: mean of nothing
            mean = np.nanmean(num, axis=0)
            std = np.nanstd(num, axis=0)
        # An all-missing column has mean NaN; a constant one std 0: both become harmless.
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.mean_, self.std_ = mean, std
        self.vocab_ = {}
        for col in self.categorical_cols:
            values = frame[col].dropna().astype(str)
            counts = values.value_counts()
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_categories]
            self.vocab_[col] = [k for k, _ in order]
        return self

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(x_num float32 (n, n_numeric), x_cat int64 (n, n_categorical))`` for `frame`."""
        if not self.fitted:
            raise RuntimeError("TabularPreprocessor.transform called before fit")
        self._require(frame)
        n = len(frame)
        if self.numeric_cols:
            num = frame[self.numeric_cols].to_numpy(dtype=np.float64)
            z = (num - self.mean_) / self.std_
            z = np.clip(np.nan_to_num(z, nan=0.0, posinf=self.clip, neginf=-self.clip), -self.clip, self.clip)
            x_num = z.astype(np.float32)
        else:
            x_num = np.zeros((n, 0), dtype=np.float32)
        x_cat = np.zeros((n, len(self.categorical_cols)), dtype=np.int64)
        for j, col in enumerate(self.categorical_cols):
            series = frame[col]
            idx = pd.Index(self.vocab_[col]).get_indexer(series.astype(str)) + 1  # -1 (unseen) -> 0
            idx[series.isna().to_numpy()] = UNKNOWN
            x_cat[:, j] = idx
        return x_num, x_cat

    def fit_transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """`fit` then `transform` on the same rows."""
        return self.fit(frame).transform(frame)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes: vocabulary plus the unknown index, per categorical column."""
        return [len(self.vocab_[c]) + 1 for c in self.categorical_cols]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description from which `from_dict` rebuilds the fitted object."""
        if not self.fitted:
            raise RuntimeError("an unfitted preprocessing has nothing to save")
        return {
            "numeric_cols": self.numeric_cols,
            "categorical_cols": self.categorical_cols,
            "clip": self.clip,
            "max_categories": self.max_categories,
            "mean": [float(v) for v in self.mean_],  # type: ignore[union-attr]
            "std": [float(v) for v in self.std_],  # type: ignore[union-attr]
            "vocab": self.vocab_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularPreprocessor:
        """Inverse of `to_dict`."""
        obj = cls(
            data["numeric_cols"],
            data["categorical_cols"],
            clip=data["clip"],
            max_categories=data["max_categories"],
        )
        obj.mean_ = np.asarray(data["mean"], dtype=np.float64)
        obj.std_ = np.asarray(data["std"], dtype=np.float64)
        obj.vocab_ = {k: list(v) for k, v in data["vocab"].items()}
        return obj

    def save(self, path: str | Path) -> Path:
        """Write the fitted preprocessing as JSON (atomically)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TabularPreprocessor:
        """Read a preprocessing written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def embedding_size(cardinality: int, cap: int) -> int:
    """fast.ai's rule of thumb ``1.6 * n^0.56``, at least 2 and at most `cap`."""
    return int(max(2, min(cap, round(1.6 * cardinality**0.56))))


class TabularEncoder(nn.Module):
    """Numeric features concatenated with one embedding per categorical field."""

    def __init__(self, n_numeric: int, cardinalities: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        self.n_numeric = n_numeric
        embeddings = [nn.Embedding(c, embedding_size(c, embedding_dim)) for c in cardinalities]
        self.embeddings = nn.ModuleList(embeddings)
        self.out_dim = n_numeric + sum(e.embedding_dim for e in embeddings)
        if self.out_dim == 0:
            raise ValueError("a tabular model needs at least one numeric or categorical input")

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        parts = [x_num] if self.n_numeric else []
        if self.embeddings:
            if x_cat is None or x_cat.shape[1] != len(self.embeddings):
                got = None if x_cat is None else x_cat.shape[1]
                raise ValueError(f"expected {len(self.embeddings)} categorical columns, got {got}")
            parts += [emb(x_cat[:, j]) for j, emb in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)


def mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear-ReLU-Dropout blocks through `sizes`, then a final Linear to one logit."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(sizes[-1], 1))
    return nn.Sequential(*layers)


class TabularMLPConfig(BaseModel):
    """Tabular MLP architecture (quick profile; full: ``hidden=[128, 64]``, ``embedding_dim=16``)."""

    model_config = ConfigDict(extra="forbid")

    n_numeric: int = Field(..., ge=0)
    cardinalities: list[int] = Field(default_factory=list)
    embedding_dim: int = Field(8, ge=1, description="upper bound of each field's embedding size")
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0, lt=1)


class TabularMLP(nn.Module):
    """Embeddings + MLP -> one fraud logit per row: ``forward(x_num, x_cat=None) -> (batch,)``."""

    config_cls: ClassVar[type[TabularMLPConfig]] = TabularMLPConfig

    def __init__(self, config: TabularMLPConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TabularEncoder(config.n_numeric, config.cardinalities, config.embedding_dim)
        self.net = mlp([self.encoder.out_dim, *config.hidden], config.dropout)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.encoder(x_num, x_cat)).squeeze(-1)
