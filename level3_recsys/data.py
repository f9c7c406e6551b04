"""Interaction data shared by every model: one container, consistent index mappings.

`InteractionData` holds three frames:

* ``interactions``: one row per (user, item) event with columns ``user_id``, ``item_id``,
  ``timestamp`` (seconds, int64) and ``weight`` (float, > 0);
* ``items``: the catalogue, one row per item, column ``item_id`` plus content features
  (``genres`` and ``tags`` as pipe-joined strings, ``title``, ``length``, ``creator_id``,
  ``publish_time``; all optional);
* ``users``: one row per user, column ``user_id`` plus optional features.

The row order of ``items`` and ``users`` defines the integer index every model uses, so a
train and a test set cut from the same data share one mapping (`with_interactions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shared.errors import DataError, EmptyDataError, SchemaError

USER_COL = "user_id"
ITEM_COL = "item_id"
TIME_COL = "timestamp"
WEIGHT_COL = "weight"
RANK_COL = "rank"
SCORE_COL = "score"
INTERACTION_COLUMNS = (USER_COL, ITEM_COL, TIME_COL, WEIGHT_COL)
SECONDS_PER_DAY = 86_400


def _require(df: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{what} is missing column(s): {', '.join(missing)}")


@dataclass
class InteractionData:
    """Implicit-feedback interactions plus the item catalogue and user table.

    Build it with `InteractionData.from_frames`, which validates and normalises dtypes.

    Attributes:
        interactions: ``user_id, item_id, timestamp, weight`` rows.
        items: Catalogue; its row order is the item index.
        users: User table; its row order is the user index.
        name: Free label (dataset name) for reports.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    name: str = ""
    _item_index: pd.Index = field(init=False, repr=False)
    _user_index: pd.Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._item_index = pd.Index(self.items[ITEM_COL].to_numpy())
        self._user_index = pd.Index(self.users[USER_COL].to_numpy())
        if not self._item_index.is_unique:
            raise DataError("items has duplicate item_id values")
        if not self._user_index.is_unique:
            raise DataError("users has duplicate user_id values")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        *,
        name: str = "",
        extend_catalogue: bool = True,
    ) -> InteractionData:
        """Validate frames and build the container.

        Args:
            interactions: Needs ``user_id`` and ``item_id``; ``timestamp`` defaults to 0 and
                ``weight`` to 1.
            items: Catalogue; built from the interactions when ``None``.
            users: User table; built from the interactions when ``None``.
            name: Dataset label.
            extend_catalogue: Append ids that occur in interactions but not in items/users
                (otherwise raise `DataError`).

        Raises:
            SchemaError: A required column is missing.
            EmptyDataError: No interactions.
        """
        _require(interactions, [USER_COL, ITEM_COL], "interactions")
        inter = interactions.copy()
        if TIME_COL not in inter.columns:
            inter[TIME_COL] = 0
        if WEIGHT_COL not in inter.columns:
            inter[WEIGHT_COL] = 1.0
        inter = inter[list(INTERACTION_COLUMNS)].reset_index(drop=True)
        inter[TIME_COL] = inter[TIME_COL].astype("int64")
        inter[WEIGHT_COL] = inter[WEIGHT_COL].astype("float64")
        if inter[WEIGHT_COL].le(0).any():
            raise DataError("interaction weights must be positive")
        if items is None:
            items = pd.DataFrame({ITEM_COL: np.sort(inter[ITEM_COL].unique())})
        if users is None:
            users = pd.DataFrame({USER_COL: np.sort(inter[USER_COL].unique())})
        _require(items, [ITEM_COL], "items")
        _require(users, [USER_COL], "users")
        items = items.reset_index(drop=True)
        users = users.reset_index(drop=True)
        for frame, col, what in ((items, ITEM_COL, "items"), (users, USER_COL, "users")):
            unknown = pd.Index(inter[col].unique()).difference(pd.Index(frame[col]))
            if len(unknown):
                if not extend_catalogue:
                    raise DataError(f"{len(unknown)} {col} value(s) in interactions are not in {what}")
                extra = pd.DataFrame({col: np.sort(unknown.to_numpy())})
                frame = pd.concat([frame, extra], ignore_index=True)
                if what == "items":
                    items = frame
                else:
                    users = frame
        return cls(interactions=inter, items=items, users=users, name=name)

    def with_interactions(self, interactions: pd.DataFrame) -> InteractionData:
        """Same catalogue, users and index mapping, other interactions (a split's part)."""
        inter = interactions[list(INTERACTION_COLUMNS)].reset_index(drop=True)
        return InteractionData(interactions=inter, items=self.items, users=self.users, name=self.name)

    # ------------------------------------------------------------------ mappings
    @property
    def n_users(self) -> int:
        """Number of users in the user table."""
        return len(self._user_index)

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue."""
        return len(self._item_index)

    @property
    def user_ids(self) -> np.ndarray:
        """User ids in index order."""
        return self._user_index.to_numpy()

    @property
    def item_ids(self) -> np.ndarray:
        """Item ids in index order."""
        return self._item_index.to_numpy()

    def user_index(self, user_ids: np.ndarray | pd.Series | list[Any]) -> np.ndarray:
        """Integer index of each user id, -1 where unknown."""
        return self._user_index.get_indexer(np.asarray(user_ids))

    def item_index(self, item_ids: np.ndarray | pd.Series | list[Any]) -> np.ndarray:
        """Integer index of each item id, -1 where unknown."""
        return self._item_index.get_indexer(np.asarray(item_ids))

    # ------------------------------------------------------------------ views
    def matrix(
        self,
        values: Literal["binary", "weight", "count"] = "binary",
        *,
        decay_half_life_days: float | None = None,
        reference_time: int | None = None,
    ) -> sp.csr_matrix:
        """User × item CSR matrix (duplicates summed, or 1 for ``binary``).

        Args:
            values: ``binary`` (1 per pair), ``weight`` (sum of weights) or ``count``.
            decay_half_life_days: Multiply each event by 0.5 ** (age / half-life) first.
            reference_time: Time the ages are measured from (default: latest event).
        """
        inter = self.interactions
        rows = self.user_index(inter[USER_COL])
        cols = self.item_index(inter[ITEM_COL])
        if values == "count":
            vals = np.ones(len(inter), dtype=np.float64)
        else:
            vals = inter[WEIGHT_COL].to_numpy(dtype=np.float64)
        if decay_half_life_days is not None and len(inter):
            ts = inter[TIME_COL].to_numpy()
            ref = int(ts.max()) if reference_time is None else reference_time
            age_days = (ref - ts) / SECONDS_PER_DAY
            vals = vals * np.power(0.5, np.clip(age_days, 0, None) / decay_half_life_days)
        m = sp.csr_matrix((vals, (rows, cols)), shape=(self.n_users, self.n_items), dtype=np.float64)
        m.sum_duplicates()
        if values == "binary":
            m.data[:] = 1.0
        return m.astype(np.float32)

    def item_counts(self) -> np.ndarray:
        """Distinct users per item (index order)."""
        return np.asarray(self.matrix("binary").sum(axis=0)).ravel()

    def require_nonempty(self) -> None:
        """Raise `EmptyDataError` when there are no interactions."""
        if len(self.interactions) == 0:
            raise EmptyDataError("no interactions to train on")

    @property
    def max_time(self) -> int:
        """Latest timestamp (0 when empty)."""
        return int(self.interactions[TIME_COL].max()) if len(self.interactions) else 0

    def summary(self) -> dict[str, float]:
        """Counts and density for reports."""
        n = len(self.interactions)
        active_users = self.interactions[USER_COL].nunique()
        active_items = self.interactions[ITEM_COL].nunique()
        return {
            "interactions": n,
            "users": self.n_users,
            "items": self.n_items,
            "active_users": active_users,
            "active_items": active_items,
            "density": n / max(1, active_users * active_items),
        }
