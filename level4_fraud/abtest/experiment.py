"""Champion versus challenger: assign cards to arms, accumulate every metric look by look, test.

At each look (every ``look_every`` of traffic) each metric's difference (challenger minus
champion) gets the mSPRT's always-valid p-value and confidence sequence, the naive z-test's
p-value and interval (for comparison: what peeking at a fixed-horizon test would claim) and the
O'Brien-Fleming boundary of a group-sequential design planned over the whole traffic. The
experiment stops at the first look where the primary metric's always-valid p-value is at most
alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from level4_fraud.abtest.assignment import assign, sample_ratio_pvalue
from level4_fraud.abtest.config import ABTestConfig
from level4_fraud.abtest.group_sequential import obf_boundaries
from level4_fraud.abtest.metrics import HIGHER_IS_BETTER, METRICS, cumulative_moments, metric_values
from level4_fraud.abtest.sequential import (
    always_valid_ci,
    always_valid_pvalue,
    first_true,
    horizon_mixture_variance,
    mixture_variance,
    msprt_log_lr,
    naive_ci,
    naive_pvalue,
    naive_z,
)
from level4_fraud.abtest.traffic import Traffic
from level4_fraud.evaluate import cost_at_threshold


@dataclass(frozen=True)
class ExperimentResult:
    """Everything the test saw and decided.

    Attributes:
        looks: One row per look and metric: times, arm sizes and means, the difference, the
            mSPRT's log likelihood ratio, always-valid p-value and interval, the naive p-value and
            interval, z and the O'Brien-Fleming boundary.
        arms: Per-arm totals at the stopping look and at the end of the traffic.
        summary: The decision and the figures of the JSON summary.
    """

    looks: pd.DataFrame
    arms: pd.DataFrame
    summary: dict[str, Any]


def look_index(time: pd.Series | np.ndarray, every: str) -> np.ndarray:
    """Look at which each transaction is first seen: look k closes ``(k + 1) * every`` after the start."""
    t = pd.to_datetime(pd.Series(time))
    return ((t - traffic_start(t, every)) // pd.Timedelta(every)).to_numpy(dtype=np.int64)


def traffic_start(time: pd.Series | np.ndarray, every: str) -> pd.Timestamp:
    """The first transaction's time floored to the look period (looks close on round times)."""
    return pd.Timestamp(pd.to_datetime(pd.Series(time)).min()).floor(pd.Timedelta(every))


def metric_looks(
    metric: str,
    traffic: pd.DataFrame,
    in_b: np.ndarray,
    alert: np.ndarray,
    look: np.ndarray,
    cfg: ABTestConfig,
    review_cost: float,
    *,
    group_sequential: bool = True,
) -> pd.DataFrame:
    """One metric's looks: both arms' moments, the difference, and every test's statistics.

    Args:
        metric: One of `METRICS`.
        traffic: The traffic frame (``card``, ``fraud``, ``amount``).
        in_b: Each transaction's card is in the challenger's arm.
        alert: The arm's model alerted the transaction.
        look: Each transaction's look.
        cfg: The experiment's settings.
        review_cost: Cost of one review.
        group_sequential: Compute the O'Brien-Fleming boundaries (NaN otherwise).

    Returns:
        One row per look.
    """
    n_looks = int(look.max()) + 1
    values, population = metric_values(
        metric, alert, traffic["fraud"].to_numpy(), traffic["amount"].to_numpy(), review_cost
    )
    card = traffic["card"].to_numpy()
    a = cumulative_moments(
        values[population & ~in_b], card[population & ~in_b], look[population & ~in_b], n_looks
    )
    b = cumulative_moments(
        values[population & in_b], card[population & in_b], look[population & in_b], n_looks
    )
    ready = (a.clusters >= cfg.min_cards) & (b.clusters >= cfg.min_cards)
    delta = b.mean - a.mean
    var = np.where(ready, a.var_mean + b.var_mean, np.nan)
    tau2 = _tau2(cfg, var, a.n, b.n, ready)
    log_lr = msprt_log_lr(delta, var, tau2) if math.isfinite(tau2) else np.zeros(n_looks)
    lo, hi = (
        always_valid_ci(delta, var, tau2, cfg.alpha)
        if math.isfinite(tau2)
        else (np.full(n_looks, -np.inf), np.full(n_looks, np.inf))
    )
    naive_lo, naive_hi = naive_ci(delta, var, cfg.alpha)
    return pd.DataFrame(
        {
            "metric": metric,
            "look": np.arange(n_looks),
            "ready": ready,
            "n_champion": a.n,
            "n_challenger": b.n,
            "cards_champion": a.clusters,
            "cards_challenger": b.clusters,
            "mean_champion": a.mean,
            "mean_challenger": b.mean,
            "delta": delta,
            "var": var,
            "tau2": tau2,
            "log_lr": log_lr,
            "p_always": always_valid_pvalue(log_lr),
            "ci_low": lo,
            "ci_high": hi,
            "p_naive": naive_pvalue(delta, var),
            "naive_low": naive_lo,
            "naive_high": naive_hi,
            "z": naive_z(delta, var),
            "obf_bound": _obf_bounds(a.n + b.n, ready, cfg.alpha) if group_sequential else np.nan,
        }
    )


def _tau2(cfg: ABTestConfig, var: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, ready: np.ndarray) -> float:
    """Mixture variance, frozen at the first ready look so it does not move with later data.

    Fixed (`mixture_sd`); or `effect_size` per-transaction sds, the sd backed out of the clustered
    variance (``V n_a n_b / (n_a + n_b)``, so it carries the clustering's design effect); or by
    default the 80 %-power detectable difference of the planned traffic, ``2.8 sqrt(V_N)`` with
    ``V_N = V_k n_k / n_N`` (only transaction counts of the horizon are used, no outcome).
    """
    if cfg.mixture_sd is not None:
        return cfg.mixture_sd**2
    # The first ready look with any spread (a rare event can leave both arms at zero for a while).
    usable = ready & np.isfinite(var) & (var > 0)
    if not usable.any():
        return math.nan
    k = int(np.argmax(usable))
    if cfg.effect_size is None:
        return float(horizon_mixture_variance(var[k], n_a[k] + n_b[k], n_a[-1] + n_b[-1]))
    sigma = math.sqrt(var[k] * n_a[k] * n_b[k] / (n_a[k] + n_b[k]))
    return float(mixture_variance(cfg.effect_size, sigma))


def _obf_bounds(n: np.ndarray, ready: np.ndarray, alpha: float) -> np.ndarray:
    """O'Brien-Fleming boundaries at the ready looks, information = transactions, horizon = the traffic."""
    out = np.full(len(n), np.nan)
    idx = np.flatnonzero(ready)
    if len(idx) == 0:
        return out
    # Only looks that added information count as looks of the design.
    keep = idx[np.diff(n[idx], prepend=0.0) > 0]
    out[keep] = obf_boundaries(n[keep] / n[keep[-1]], alpha)
    return out


def run_experiment(
    traffic: Traffic, cfg: ABTestConfig, review_cost: float, *, look_times: bool = True
) -> ExperimentResult:
    """Assign the traffic's cards, accumulate every metric look by look and run the tests.

    Args:
        traffic: Transactions with both models' scores and thresholds.
        cfg: The experiment's settings.
        review_cost: Cost of one review.
        look_times: Add each look's closing time to the looks table.

    Returns:
        The looks, the per-arm totals and the summary.
    """
    frame = traffic.frame
    in_b = assign(frame["card"].to_numpy(), cfg.split, cfg.experiment)
    alert = np.where(
        in_b,
        frame["score_challenger"].to_numpy() >= traffic.thresholds["challenger"],
        frame["score_champion"].to_numpy() >= traffic.thresholds["champion"],
    )
    look = look_index(frame["time"], cfg.look_every)
    looks = pd.concat(
        # The group-sequential design is planned for the primary metric only (as one would).
        [
            metric_looks(m, frame, in_b, alert, look, cfg, review_cost, group_sequential=m == cfg.metric)
            for m in METRICS
        ],
        ignore_index=True,
    )
    if look_times:
        start = traffic_start(frame["time"], cfg.look_every)
        looks["time"] = start + (looks["look"] + 1) * pd.Timedelta(cfg.look_every)
    primary = looks[looks["metric"] == cfg.metric].reset_index(drop=True)
    stop = int(first_true(primary["p_always"].to_numpy() <= cfg.alpha))
    arms = _arm_totals(traffic, in_b, look, stop, review_cost)
    summary = _summary(traffic, cfg, review_cost, looks, primary, stop, in_b)
    return ExperimentResult(looks=looks, arms=arms, summary=summary)


def _arm_totals(
    traffic: Traffic, in_b: np.ndarray, look: np.ndarray, stop: int, review_cost: float
) -> pd.DataFrame:
    frame = traffic.frame
    rows = []
    cut = {"end": look.max()} | ({"stop": stop} if stop >= 0 else {})
    for when, last in cut.items():
        for arm, mask in (("champion", ~in_b), ("challenger", in_b)):
            sel = mask & (look <= last)
            fraud = frame["fraud"].to_numpy()[sel]
            score = frame[f"score_{arm}"].to_numpy()[sel]
            cost = cost_at_threshold(
                fraud, score, frame["amount"].to_numpy()[sel], traffic.thresholds[arm], review_cost
            )
            n = int(sel.sum())
            rows.append(
                {
                    "at": when,
                    "arm": arm,
                    "model": traffic.models[arm],
                    "cards": int(np.unique(frame["card"].to_numpy()[sel]).size),
                    "transactions": n,
                    "frauds": int(fraud.sum()),
                    "frauds_caught": cost.frauds_caught,
                    "alerts": cost.n_alerts,
                    "false_positives": cost.n_alerts - cost.frauds_caught,
                    "amount_caught": cost.amount_caught,
                    "review_cost": cost.review_cost,
                    "savings": cost.savings,
                    "savings_per_1000_tx": 1000 * cost.savings / n if n else math.nan,
                    "fraud_caught_rate": cost.frauds_caught / fraud.sum() if fraud.sum() else math.nan,
                    "false_positive_rate": (cost.n_alerts - cost.frauds_caught) / (n - fraud.sum())
                    if n > fraud.sum()
                    else math.nan,
                    "alerts_per_1000_tx": 1000 * cost.n_alerts / n if n else math.nan,
                }
            )
    return pd.DataFrame(rows)


def verdict(metric: str, delta: float, significant: bool) -> str:
    """``challenger better``, ``champion better`` or ``no difference detected`` for a metric."""
    if not significant or not math.isfinite(delta) or delta == 0:
        return "no difference detected"
    better = (delta > 0) == HIGHER_IS_BETTER[metric]
    return "challenger better" if better else "champion better"


def _at(row: pd.Series) -> dict[str, Any]:
    return {
        "look": int(row["look"]),
        "time": str(row["time"]) if "time" in row else None,
        "delta": float(row["delta"]),
        "ci": [float(row["ci_low"]), float(row["ci_high"])],
        "p_always_valid": float(row["p_always"]),
        "naive_ci": [float(row["naive_low"]), float(row["naive_high"])],
        "p_naive": float(row["p_naive"]),
        "mean_champion": float(row["mean_champion"]),
        "mean_challenger": float(row["mean_challenger"]),
    }


def _summary(
    traffic: Traffic,
    cfg: ABTestConfig,
    review_cost: float,
    looks: pd.DataFrame,
    primary: pd.DataFrame,
    stop: int,
    in_b: np.ndarray,
) -> dict[str, Any]:
    cards = traffic.frame["card"].to_numpy()
    n_cards = int(np.unique(cards).size)
    n_b = int(np.unique(cards[in_b]).size)
    decided = primary.iloc[stop] if stop >= 0 else primary.iloc[-1]
    obf = primary["obf_bound"].to_numpy()
    obf_cross = np.flatnonzero(
        np.isfinite(obf) & (np.abs(primary["z"].to_numpy()) >= np.nan_to_num(obf, nan=np.inf))
    )
    naive = np.flatnonzero(primary["ready"].to_numpy() & (primary["p_naive"].to_numpy() <= cfg.alpha))
    per_metric = {}
    for metric, part in looks.groupby("metric", sort=False):
        row = part.iloc[stop] if stop >= 0 else part.iloc[-1]
        per_metric[str(metric)] = _at(row) | {
            "verdict": verdict(str(metric), float(row["delta"]), bool(row["p_always"] <= cfg.alpha))
        }
    return {
        "experiment": cfg.experiment,
        "champion": traffic.models["champion"],
        "challenger": traffic.models["challenger"],
        "thresholds": traffic.thresholds,
        "split": cfg.split,
        "metric": cfg.metric,
        "alpha": cfg.alpha,
        "review_cost": review_cost,
        "mixture_sd": math.sqrt(float(primary["tau2"].iloc[0]))
        if math.isfinite(primary["tau2"].iloc[0])
        else None,
        "look_every": cfg.look_every,
        "n_looks": len(primary),
        "transactions": len(traffic.frame),
        "cards": n_cards,
        "cards_challenger_share": n_b / n_cards if n_cards else math.nan,
        "sample_ratio_p": sample_ratio_pvalue(n_b, n_cards, cfg.split),
        "stopped": stop >= 0,
        "stop_look": stop if stop >= 0 else None,
        "verdict": verdict(cfg.metric, float(decided["delta"]), stop >= 0),
        "decision": _at(decided),
        "final": _at(primary.iloc[-1]),
        "obf_stop_look": int(obf_cross[0]) if len(obf_cross) else None,
        "naive_first_significant_look": int(naive[0]) if len(naive) else None,
        "naive_significant_looks": len(naive),
        "metrics_at_decision": per_metric,
    }
