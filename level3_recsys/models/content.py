"""Item content features (genres, tags, title words, creator, length) as a sparse matrix."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

_TOKEN = re.compile(r"[a-z0-9]+")


def _split_pipe(values: pd.Series) -> list[list[str]]:
    return [[t.strip() for t in str(v).split("|") if t.strip()] if isinstance(v, str) else [] for v in values]


def _stable_hash(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode("utf-8")) % buckets


@dataclass
class ContentEncoder:
    """Vocabulary of the catalogue's content columns; `transform` gives one row per item.

    Blocks (each present only when the column exists): multi-hot ``genres``, multi-hot
    ``tags``, hashed ``title`` word counts (L2-normalised), one-hot ``creator_id`` (creators
    with at least two items; others share a bucket), and log ``length`` standardised.
    """

    title_buckets: int = 256

    def fit(self, items: pd.DataFrame) -> ContentEncoder:
        """Learn vocabularies from the catalogue."""
        self.genres_: list[str] = (
            sorted({t for ts in _split_pipe(items["genres"]) for t in ts}) if "genres" in items else []
        )
        self.tags_: list[str] = (
            sorted({t for ts in _split_pipe(items["tags"]) for t in ts}) if "tags" in items else []
        )
        self.has_title_ = "title" in items
        if "creator_id" in items:
            counts = items["creator_id"].value_counts()
            self.creators_: list[Any] = sorted(counts[counts >= 2].index.tolist())
        else:
            self.creators_ = []
        self.has_length_ = "length" in items
        if self.has_length_:
            ll = np.log1p(items["length"].astype(float).fillna(0).to_numpy())
            self.length_mean_, self.length_std_ = float(ll.mean()), float(ll.std() + 1e-9)
        blocks = {
            "genres": len(self.genres_),
            "tags": len(self.tags_),
            "title": self.title_buckets if self.has_title_ else 0,
            "creator": len(self.creators_) + 1 if self.creators_ else 0,
            "length": 1 if self.has_length_ else 0,
        }
        self.blocks_: dict[str, slice] = {}
        start = 0
        for key, size in blocks.items():
            self.blocks_[key] = slice(start, start + size)
            start += size
        self.n_features_ = start
        return self

    def transform(self, items: pd.DataFrame) -> sp.csr_matrix:
        """Sparse float32 feature matrix, one row per item in `items` order."""
        n = len(items)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []

        def add_multi_hot(lists: list[list[str]], vocab: list[str], offset: int) -> None:
            index = {t: i for i, t in enumerate(vocab)}
            r, c = [], []
            for i, ts in enumerate(lists):
                for t in ts:
                    j = index.get(t)
                    if j is not None:
                        r.append(i)
                        c.append(offset + j)
            rows.append(np.asarray(r, dtype=np.int64))
            cols.append(np.asarray(c, dtype=np.int64))
            vals.append(np.ones(len(r), dtype=np.float32))

        if self.genres_ and "genres" in items:
            add_multi_hot(_split_pipe(items["genres"]), self.genres_, self.blocks_["genres"].start)
        if self.tags_ and "tags" in items:
            add_multi_hot(_split_pipe(items["tags"]), self.tags_, self.blocks_["tags"].start)
        if self.has_title_ and "title" in items:
            r, c = [], []
            off = self.blocks_["title"].start
            for i, title in enumerate(items["title"].fillna("").astype(str)):
                for tok in _TOKEN.findall(title.lower()):
                    if len(tok) > 1 and not tok.isdigit():
                        r.append(i)
                        c.append(off + _stable_hash(tok, self.title_buckets))
            t = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, self.n_features_))
            t.sum_duplicates()
            norms = np.sqrt(np.asarray(t.multiply(t).sum(axis=1)).ravel()).clip(1e-9)
            t = sp.diags(1.0 / norms) @ t
            coo = t.tocoo()
            rows.append(coo.row.astype(np.int64))
            cols.append(coo.col.astype(np.int64))
            vals.append(coo.data.astype(np.float32))
        if self.creators_ and "creator_id" in items:
            index = {c: i for i, c in enumerate(self.creators_)}
            off = self.blocks_["creator"].start
            creator_cols = np.array(
                [off + index.get(v, len(self.creators_)) for v in items["creator_id"]], dtype=np.int64
            )
            rows.append(np.arange(n, dtype=np.int64))
            cols.append(creator_cols)
            vals.append(np.ones(n, dtype=np.float32))
        if self.has_length_ and "length" in items:
            ll = np.log1p(items["length"].astype(float).fillna(0).to_numpy())
            rows.append(np.arange(n, dtype=np.int64))
            cols.append(np.full(n, self.blocks_["length"].start, dtype=np.int64))
            vals.append(((ll - self.length_mean_) / self.length_std_).astype(np.float32))
        if not rows:
            return sp.csr_matrix((n, max(self.n_features_, 1)), dtype=np.float32)
        m = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, max(self.n_features_, 1)),
            dtype=np.float32,
        )
        m.sum_duplicates()
        return m

    def block(self, m: sp.csr_matrix, name: str) -> sp.csr_matrix:
        """Columns of one block (``genres``, ``tags``, ``title``, ``creator``, ``length``)."""
        return m[:, self.blocks_[name]]
