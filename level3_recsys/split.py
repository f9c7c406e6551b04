"""Train/test splits: time-based (leak-free), leave-last-out, and the Recommenders stratified split."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from level3_recsys.data import ITEM_COL, SECONDS_PER_DAY, TIME_COL, USER_COL, InteractionData
from shared.errors import DataError, EmptyDataError


def _restrict_test(
    train: pd.DataFrame, test: pd.DataFrame, *, drop_seen: bool, test_users: Literal["warm", "all"]
) -> pd.DataFrame:
    if test_users == "warm":
        test = test[test[USER_COL].isin(train[USER_COL].unique())]
    if drop_seen and len(test):
        seen = pd.MultiIndex.from_frame(train[[USER_COL, ITEM_COL]])
        pairs = pd.MultiIndex.from_frame(test[[USER_COL, ITEM_COL]])
        test = test[~pairs.isin(seen)]
    return test


def time_split(
    data: InteractionData,
    *,
    test_days: float = 7.0,
    cutoff: int | None = None,
    drop_seen: bool = True,
    test_users: Literal["warm", "all"] = "warm",
    next_only: bool = False,
) -> tuple[InteractionData, InteractionData]:
    """Split at one point in time: everything before `cutoff` trains, the rest tests.

    No interaction at or after the cutoff reaches training, for any user.

    Args:
        data: All interactions.
        test_days: Length of the test period, ending at the latest event (ignored with `cutoff`).
        cutoff: Explicit split timestamp (seconds); test gets ``timestamp >= cutoff``.
        drop_seen: Remove test pairs the user already had in train (models never re-recommend
            seen items, so those pairs could only count against them).
        test_users: ``warm`` keeps test users that have training history; ``all`` keeps everyone.
        next_only: Keep only each user's first test interaction (leave-next-out, leak-free).

    Returns:
        ``(train, test)`` sharing `data`'s catalogue and index mapping.

    Raises:
        DataError: The cutoff leaves either side empty.
    """
    data.require_nonempty()
    inter = data.interactions
    if cutoff is None:
        cutoff = int(inter[TIME_COL].max() - test_days * SECONDS_PER_DAY) + 1
    is_test = inter[TIME_COL].to_numpy() >= cutoff
    train, test = inter[~is_test], inter[is_test]
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"time split at {cutoff} leaves {len(train)} train and {len(test)} test rows")
    test = _restrict_test(train, test, drop_seen=drop_seen, test_users=test_users)
    if next_only:
        test = test.sort_values([USER_COL, TIME_COL], kind="stable").groupby(USER_COL).head(1)
    return data.with_interactions(train), data.with_interactions(test)


def leave_last_out(
    data: InteractionData, *, n: int = 1, min_train: int = 1, drop_seen: bool = True
) -> tuple[InteractionData, InteractionData]:
    """Each user's last `n` interactions test, the rest train.

    This is the common per-user protocol; unlike `time_split`, other users' interactions that
    happen after a user's test events can still be in train. Use `time_split(next_only=True)`
    for a globally leak-free variant.

    Args:
        data: All interactions.
        n: Held-out interactions per user.
        min_train: Users with fewer than ``n + min_train`` interactions stay entirely in train.
        drop_seen: Remove test pairs the user already had in train.
    """
    data.require_nonempty()
    inter = data.interactions.reset_index(drop=True)
    order = inter.sort_values([USER_COL, TIME_COL], kind="stable")
    rank_from_end = order.groupby(USER_COL).cumcount(ascending=False)
    count = order.groupby(USER_COL)[USER_COL].transform("size")
    test_mask = (rank_from_end < n) & (count >= n + min_train)
    test = order[test_mask.to_numpy()]
    train = order[~test_mask.to_numpy()]
    if len(test) == 0:
        raise EmptyDataError("leave-last-out: no user has enough interactions to hold any out")
    test = _restrict_test(train, test, drop_seen=drop_seen, test_users="warm")
    return data.with_interactions(train.sort_index()), data.with_interactions(test.sort_index())


def python_stratified_split(
    data: pd.DataFrame,
    ratio: float = 0.75,
    min_rating: int = 1,
    filter_by: Literal["user", "item"] = "user",
    col_user: str = USER_COL,
    col_item: str = ITEM_COL,
    seed: int = 42,
) -> list[pd.DataFrame]:
    """Reimplementation of Microsoft Recommenders' ``python_stratified_split`` (two-way case).

    Faithful to the original step by step, so the same input rows in the same order give the
    same split: ``np.random.seed(seed)``; one uniform number per row in input order; sort by
    (group column, random number); within each group the rows ranked
    ``<= round(ratio * count)`` train and the rest test. ``round`` on a pandas Series rounds
    half to even, so with ratio 0.75 groups of 1 or 2 rows (0.75 → 1, 1.5 → 2) go entirely to
    train, 6 rows give 4 + 2 (4.5 → 4).

    Args:
        data: Rating rows (any extra columns are kept).
        ratio: Train share.
        min_rating: Keep only groups with at least this many rows (1 keeps all).
        filter_by: ``user`` or ``item``: which column to stratify on.
        col_user: User column.
        col_item: Item column.
        seed: Seed of NumPy's legacy global generator, as in the original.

    Returns:
        ``[train, test]`` frames (original index kept).
    """
    if filter_by not in ("user", "item"):
        raise DataError("filter_by should be either 'user' or 'item'.")
    if min_rating < 1:
        raise DataError("min_rating should be integer and larger than or equal to 1.")
    if not 0 < ratio < 1:
        raise DataError("ratio must be between 0 and 1")
    for col in (col_user, col_item):
        if col not in data.columns:
            raise DataError(f"Schema of data not valid. Missing column {col!r}")
    split_by = col_user if filter_by == "user" else col_item
    data = data.copy()
    if min_rating > 1:
        data = data[data.groupby(split_by)[split_by].transform("size") >= min_rating]
    # The original reseeds NumPy's global generator; use a RandomState with the same stream
    # (identical numbers) so callers' global state is left alone.
    random = np.random.RandomState(seed).rand(data.shape[0])
    data["_random"] = random
    data = data.sort_values([split_by, "_random"])
    groups = data.groupby(split_by)
    data["_count"] = groups[split_by].transform("count")
    data["_rank"] = groups.cumcount() + 1
    data = data.drop(columns="_random")
    splits = []
    prev = None
    for threshold in np.cumsum([ratio, 1 - ratio]):
        cond = data["_rank"] <= round(threshold * data["_count"])
        if prev is not None:
            cond &= data["_rank"] > round(prev * data["_count"])
        splits.append(data[cond].drop(columns=["_rank", "_count"]))
        prev = threshold
    return splits


def stratified_split(
    data: InteractionData,
    *,
    ratio: float = 0.75,
    min_rating: int = 1,
    filter_by: Literal["user", "item"] = "item",
    seed: int = 42,
) -> tuple[InteractionData, InteractionData]:
    """The Recommenders MovieLens benchmark split on `InteractionData` (rows in stored order).

    Test keeps every held-out pair (binary relevance), as the benchmark does.
    """
    data.require_nonempty()
    train, test = python_stratified_split(
        data.interactions, ratio=ratio, min_rating=min_rating, filter_by=filter_by, seed=seed
    )
    return data.with_interactions(train.sort_index()), data.with_interactions(test.sort_index())
