"""Ranking and beyond-accuracy metrics as pure functions on data frames.

Definitions follow Microsoft Recommenders' ``python_evaluation`` (binary relevance, top-k
by the recommendation rank):

* only users present in both truth and recommendations count (``n_users``);
* precision@k = hits / k; recall@k = hits / |truth_u|;
* NDCG@k: gain 1 per hit discounted by 1/log(1 + rank), divided by the ideal DCG over
  min(|truth_u|, k) hits (the log base cancels);
* ``map`` (Recommenders' "MAP"): sum over hits of (hits so far / rank), divided by
  |truth_u|; `map_at_k` divides by min(|truth_u|, k) instead, so ``map <= map_at_k``.

Each function takes ``truth`` (``user_id, item_id``) and ``recs`` (``user_id, item_id`` plus
``rank``, 1 = best, or ``score``) frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from level3_recsys.data import ITEM_COL, RANK_COL, SCORE_COL, USER_COL
from shared.errors import SchemaError


def _ranked(recs: pd.DataFrame, k: int) -> pd.DataFrame:
    for col in (USER_COL, ITEM_COL):
        if col not in recs.columns:
            raise SchemaError(f"recommendations are missing column {col!r}")
    if RANK_COL in recs.columns:
        out = recs[[USER_COL, ITEM_COL, RANK_COL]]
    elif SCORE_COL in recs.columns:
        out = recs[[USER_COL, ITEM_COL, SCORE_COL]].copy()
        out[RANK_COL] = out.groupby(USER_COL)[SCORE_COL].rank(method="first", ascending=False)
        out = out[[USER_COL, ITEM_COL, RANK_COL]]
    else:
        raise SchemaError("recommendations need a 'rank' or a 'score' column")
    out = out.drop_duplicates([USER_COL, ITEM_COL])
    out = out.sort_values([USER_COL, RANK_COL], kind="stable")
    # re-rank 1..n within user so gaps in given ranks do not matter
    out = out.assign(**{RANK_COL: out.groupby(USER_COL).cumcount() + 1})
    return out[out[RANK_COL] <= k]


def _hits(truth: pd.DataFrame, recs: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.Series, int]:
    """Hits (user, item, rank) among common users, truth counts per user, number of users."""
    for col in (USER_COL, ITEM_COL):
        if col not in truth.columns:
            raise SchemaError(f"truth is missing column {col!r}")
    true = truth[[USER_COL, ITEM_COL]].drop_duplicates()
    top = _ranked(recs, k)
    common = np.intersect1d(true[USER_COL].unique(), recs[USER_COL].unique())
    true = true[true[USER_COL].isin(common)]
    top = top[top[USER_COL].isin(common)]
    hits = top.merge(true, on=[USER_COL, ITEM_COL], how="inner")
    n_true = true.groupby(USER_COL).size()
    return hits, n_true, len(common)


def precision_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    """Mean over common users of hits@k / k."""
    hits, _, n_users = _hits(truth, recs, k)
    return float(len(hits) / (k * n_users)) if n_users else 0.0


def recall_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    """Mean over common users of hits@k / |truth_u|."""
    hits, n_true, n_users = _hits(truth, recs, k)
    if not n_users:
        return 0.0
    per_user = hits.groupby(USER_COL).size() / n_true.reindex(hits[USER_COL].unique()).to_numpy()
    return float(per_user.sum() / n_users)


def ndcg_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    """Binary-relevance NDCG@k (Recommenders' definition)."""
    hits, n_true, n_users = _hits(truth, recs, k)
    if not n_users:
        return 0.0
    dcg = (1.0 / np.log1p(hits[RANK_COL].to_numpy(dtype=float))).astype(float)
    dcg_u = pd.Series(dcg, index=hits[USER_COL].to_numpy()).groupby(level=0).sum()
    ideal_disc = np.cumsum(1.0 / np.log1p(np.arange(1, k + 1)))
    idcg_u = pd.Series(ideal_disc[np.minimum(n_true.to_numpy(), k) - 1], index=n_true.index)
    return float((dcg_u / idcg_u.reindex(dcg_u.index)).sum() / n_users)


def _ap_sums(truth: pd.DataFrame, recs: pd.DataFrame, k: int) -> tuple[pd.Series, pd.Series, int]:
    hits, n_true, n_users = _hits(truth, recs, k)
    hits = hits.sort_values([USER_COL, RANK_COL], kind="stable")
    prec = (hits.groupby(USER_COL).cumcount() + 1) / hits[RANK_COL]
    sums = prec.groupby(hits[USER_COL].to_numpy()).sum()
    return sums, n_true.reindex(sums.index), n_users


def map_score(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    """Recommenders' "MAP": average precision over the top k divided by |truth_u|."""
    sums, n_true, n_users = _ap_sums(truth, recs, k)
    return float((sums / n_true).sum() / n_users) if n_users else 0.0


def map_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    """MAP@k: average precision over the top k divided by min(|truth_u|, k)."""
    sums, n_true, n_users = _ap_sums(truth, recs, k)
    return float((sums / np.minimum(n_true, k)).sum() / n_users) if n_users else 0.0


def catalog_coverage(recs: pd.DataFrame, n_items: int) -> float:
    """Distinct recommended items / catalogue size."""
    return float(recs[ITEM_COL].nunique() / n_items) if n_items else 0.0


def novelty(recs: pd.DataFrame, train: pd.DataFrame) -> float:
    """Mean self-information -log2(users_i / n_users) of recommended items (Recommenders).

    Items nobody interacted with in `train` count as seen by one user (finite, maximal).
    """
    n_users = train[USER_COL].nunique()
    if n_users == 0 or len(recs) == 0:
        return 0.0
    users_per_item = train.drop_duplicates([USER_COL, ITEM_COL]).groupby(ITEM_COL).size()
    counts = users_per_item.reindex(recs[ITEM_COL].to_numpy()).fillna(1.0).to_numpy()
    return float(np.mean(-np.log2(counts / n_users)))


def popularity_bias(recs: pd.DataFrame, train: pd.DataFrame, item_ids: np.ndarray) -> float:
    """Mean popularity percentile of recommended items in [0, 1] (1 = the most popular item).

    Percentiles rank the whole catalogue `item_ids` by training interactions (ties averaged),
    so a popularity recommender scores close to 1 and a uniform random one about 0.5.
    """
    if len(recs) == 0:
        return 0.0
    counts = train.groupby(ITEM_COL).size().reindex(item_ids).fillna(0.0)
    pct = counts.rank(method="average", pct=True)
    return float(pct.reindex(recs[ITEM_COL].to_numpy()).fillna(0.0).mean())


def ranking_metrics(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """precision@k, recall@k, ndcg@k, map@k and Recommenders' map in one dict."""
    return {
        f"precision@{k}": precision_at_k(truth, recs, k),
        f"recall@{k}": recall_at_k(truth, recs, k),
        f"ndcg@{k}": ndcg_at_k(truth, recs, k),
        f"map@{k}": map_at_k(truth, recs, k),
        "map": map_score(truth, recs, k),
    }
