"""Per-arm metrics of a fraud model in production, accumulated look by look.

Every metric is a mean of one value per transaction over a population of transactions:

| metric | value | population | better |
|---|---|---|---|
| ``savings`` | fraud amount if alerted and fraudulent, minus the review cost if alerted | all | higher |
| ``fraud_caught`` | 1 if alerted | frauds | higher |
| ``false_positive_rate`` | 1 if alerted | genuine | lower |
| ``review_load`` | 1 if alerted | all | lower |

``savings`` is `level4_fraud.evaluate.cost_at_threshold`'s savings divided by the transactions,
so arms of different sizes compare. Cards are the unit of randomisation and a compromised card
makes several frauds, so transactions of one card are not independent: the variance of a mean is
the cluster-robust (card-clustered) one, ``G/(G-1) * sum_c (S_c - m n_c)^2 / N^2``, with ``S_c``
and ``n_c`` a card's sum and count. Treating transactions as independent would understate it and
void the test's error guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np

from level4_fraud.abtest.config import Metric

METRICS: tuple[str, ...] = get_args(Metric)
HIGHER_IS_BETTER = {"savings": True, "fraud_caught": True, "false_positive_rate": False, "review_load": False}


@dataclass(frozen=True)
class LookMoments:
    """Cumulative statistics of one arm's metric at each look (arrays of length n_looks)."""

    n: np.ndarray  # transactions
    clusters: np.ndarray  # cards
    mean: np.ndarray
    var_mean: np.ndarray  # card-clustered variance of the mean (NaN under two cards)


def metric_values(
    metric: str, alert: np.ndarray, fraud: np.ndarray, amount: np.ndarray, review_cost: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-transaction values of `metric` and the mask of its population.

    Args:
        metric: One of `METRICS`.
        alert: The arm's model alerted the transaction.
        fraud: The transaction is a fraud (as labelled once investigated).
        amount: Its amount.
        review_cost: Cost of one review.

    Returns:
        ``(values, in_population)``.
    """
    alert = np.asarray(alert, dtype=bool)
    fraud = np.asarray(fraud, dtype=bool)
    if metric == "savings":
        values = np.where(alert & fraud, np.asarray(amount, dtype=np.float64), 0.0) - review_cost * alert
        return values, np.ones(len(alert), dtype=bool)
    population = {"fraud_caught": fraud, "false_positive_rate": ~fraud, "review_load": np.ones_like(fraud)}
    if metric not in population:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    return alert.astype(np.float64), population[metric]


def cumulative_moments(
    values: np.ndarray, cluster: np.ndarray, look: np.ndarray, n_looks: int
) -> LookMoments:
    """Mean and card-clustered variance of the mean over every transaction seen by each look.

    Args:
        values: One value per transaction.
        cluster: Its card (any integer or string ids).
        look: The look at which it is first seen (0 ... n_looks - 1); look k sees looks <= k.
        n_looks: Number of looks.

    Returns:
        The moments at each look.
    """
    v = np.asarray(values, dtype=np.float64)
    lk = np.asarray(look, dtype=np.int64)
    _, code = np.unique(np.asarray(cluster), return_inverse=True)
    n_clusters = int(code.max()) + 1 if len(code) else 0
    sums = np.zeros((n_clusters, n_looks))
    counts = np.zeros((n_clusters, n_looks))
    np.add.at(sums, (code, lk), v)
    np.add.at(counts, (code, lk), 1.0)
    sums = np.cumsum(sums, axis=1)
    counts = np.cumsum(counts, axis=1)
    n = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(axis=0) / n
        g = (counts > 0).sum(axis=0).astype(np.float64)
        resid = sums - counts * np.where(np.isfinite(mean), mean, 0.0)
        var = g / (g - 1) * (resid**2).sum(axis=0) / n**2
    var = np.where(g >= 2, var, np.nan)
    return LookMoments(n=n, clusters=g, mean=mean, var_mean=var)


def iid_cumulative_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running mean and plug-in variance of the mean along the last axis (independent draws).

    For simulations: ``x[..., i]`` is the i-th observation; position ``i`` holds the mean of the
    first ``i + 1`` and its variance ``s^2 / n`` (NaN at n = 1).
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.arange(1, x.shape[-1] + 1, dtype=np.float64)
    s1 = np.cumsum(x, axis=-1)
    s2 = np.cumsum(x * x, axis=-1)
    mean = s1 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(s2 - n * mean**2, 0.0) / (n - 1) / n
    var[..., 0] = np.nan
    return mean, var
