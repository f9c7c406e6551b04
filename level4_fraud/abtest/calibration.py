"""A/A calibration: the test's false-positive rate measured on the experiment's own traffic.

The champion serves both arms and the cards are re-split under many experiment keys: every
difference found is noise, so the share of splits where the mSPRT stops is its false-positive
rate on this traffic — with its clustering by card, its heavy-tailed amounts and its rare
frauds, which the simulations of the tests only approximate. The naive z-test repeated at the
same looks is measured alongside. (The splits share one traffic, so this is the randomisation
distribution of the test, the one the experiment's own guarantee is about.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from level4_fraud.abtest.assignment import assign
from level4_fraud.abtest.config import ABTestConfig
from level4_fraud.abtest.experiment import look_index, metric_looks
from level4_fraud.abtest.traffic import Traffic


@dataclass(frozen=True)
class AACalibration:
    """False-positive rates of the A/A splits (any look significant counts as one)."""

    runs: int
    msprt_rate: float
    naive_rate: float
    tolerance: float  # three binomial standard errors of a rate of alpha over `runs`


def aa_traffic(traffic: Traffic) -> Traffic:
    """The traffic with the champion's scores and threshold in both arms."""
    frame = traffic.frame.assign(score_challenger=traffic.frame["score_champion"])
    champion = traffic.thresholds["champion"]
    return replace(
        traffic,
        frame=frame,
        thresholds={"champion": champion, "challenger": champion},
        models={"champion": traffic.models["champion"], "challenger": traffic.models["champion"]},
    )


def aa_calibration(traffic: Traffic, cfg: ABTestConfig, review_cost: float, runs: int) -> AACalibration:
    """Run `runs` A/A splits of the traffic on the primary metric.

    Args:
        traffic: The experiment's traffic (its challenger is ignored).
        cfg: The experiment's settings; split ``i`` uses the key ``<experiment>/aa-<i>``.
        review_cost: Cost of one review.
        runs: Number of A/A splits.

    Raises:
        ValueError: `runs` is below 1.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    same = aa_traffic(traffic).frame
    alert = same["score_champion"].to_numpy() >= traffic.thresholds["champion"]
    look = look_index(same["time"], cfg.look_every)
    cards = same["card"].to_numpy()
    msprt = naive = 0
    for i in range(runs):
        in_b = assign(cards, cfg.split, f"{cfg.experiment}/aa-{i}")
        looks = metric_looks(cfg.metric, same, in_b, alert, look, cfg, review_cost, group_sequential=False)
        msprt += bool((looks["p_always"] <= cfg.alpha).any())
        naive += bool((looks["ready"] & (looks["p_naive"] <= cfg.alpha)).any())
    return AACalibration(
        runs=runs,
        msprt_rate=msprt / runs,
        naive_rate=naive / runs,
        tolerance=3 * math.sqrt(cfg.alpha * (1 - cfg.alpha) / runs),
    )


def as_dict(calibration: AACalibration) -> dict[str, float | int]:
    """The calibration as JSON-ready numbers."""
    return {
        "runs": calibration.runs,
        "msprt_false_positive_rate": calibration.msprt_rate,
        "naive_false_positive_rate": calibration.naive_rate,
        "tolerance": float(np.round(calibration.tolerance, 6)),
    }
