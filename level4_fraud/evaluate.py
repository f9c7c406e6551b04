"""The Handbook's prequential protocol and the fraud metrics, as pure functions.

Protocol (Le Borgne et al., chapter 5, ``get_train_test_set`` and ``prequentialSplit``): a fold
trains on `delta_train` days, waits `delta_delay` days (labels are not known yet) and tests on the
next `delta_test` days. Cards already known to be compromised are removed from each test day, as
the Handbook does: on test day D a card is known when it had a fraud in the training period or in
a delay day up to ``D - delta_delay - 1`` (the labels known by then). Folds step back in time by
`delta_test` days from the given training start.

Metrics: ROC-AUC, average precision, the Handbook's daily card precision at k (CP@100), recall at
a false-positive rate, and a cost view (fraud amount caught minus a review cost per alert) with
the cost-optimal threshold chosen on validation scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from level4_fraud import schema

# The Handbook's model-selection setup (chapter 5): training starts 2018-07-25, weekly folds.
HANDBOOK_START_TRAINING = date(2018, 7, 25)


class EvaluationConfig(BaseModel):
    """Prequential protocol and metric settings. Defaults are the quick profile's.

    Full profile: ``n_folds=4`` (the Handbook's), everything else the same.
    """

    model_config = ConfigDict(extra="forbid")

    delta_train: int = Field(7, ge=1, description="Training days per fold")
    delta_delay: int = Field(7, ge=0, description="Days between training and test (labels unknown)")
    delta_test: int = Field(7, ge=1, description="Test days per fold")
    n_folds: int = Field(2, ge=1)
    top_k: int = Field(100, ge=1, description="Cards per day for card precision at k")
    fpr: float = Field(0.01, gt=0, lt=1, description="False-positive rate for the recall figure")
    review_cost: float = Field(10.0, ge=0, description="Cost of reviewing one alert (currency units)")
    remove_detected_cards: bool = Field(True, description="CP@k: drop cards caught on earlier days")
    known_cards: Literal["handbook", "test_start"] = Field(
        "handbook",
        description="Known-compromised cards on test day D: 'handbook' = frauds up to D - delay - 1 "
        "(its get_train_test_set); 'test_start' = every fraud of the training and delay days",
    )


# ----------------------------------------------------------------------------------------------
# Prequential folds
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """One prequential fold: row labels of `tx` for training and for test."""

    number: int
    train_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # exclusive
    train_index: pd.Index
    test_index: pd.Index
    removed_known_cards: int  # test transactions dropped because their card was known


def _days(tx: pd.DataFrame) -> pd.Series:
    return tx[schema.TX_DATETIME].dt.normalize()


def _labelled(tx: pd.DataFrame) -> np.ndarray:
    if schema.LABELLED in tx.columns:
        return tx[schema.LABELLED].to_numpy(dtype=bool) & tx[schema.TX_FRAUD].notna().to_numpy()
    return tx[schema.TX_FRAUD].notna().to_numpy()


def train_test_split(
    tx: pd.DataFrame,
    start_date_training: date | str | pd.Timestamp,
    *,
    delta_train: int = 7,
    delta_delay: int = 7,
    delta_test: int = 7,
    number: int = 0,
    known_cards: Literal["handbook", "test_start"] = "handbook",
) -> Fold:
    """The Handbook's ``get_train_test_set``: train, delay, test with known cards removed.

    Args:
        tx: Transactions (``TX_DATETIME``, ``CUSTOMER_ID``, ``TX_FRAUD``; unlabelled rows allowed:
            they are neither trained on nor make a card known).
        start_date_training: First training day.
        delta_train: Training days.
        delta_delay: Delay days.
        delta_test: Test days.
        number: The fold's number (kept in the result).
        known_cards: ``handbook`` (its code: on test day D, frauds up to ``D - delay - 1``) or
            ``test_start`` (every fraud of the training and delay days, for every test day).

    Returns:
        The fold (row labels of `tx`).
    """
    start = pd.Timestamp(start_date_training).normalize()
    day = _days(tx)
    labelled = _labelled(tx)
    fraud = tx[schema.TX_FRAUD].to_numpy(dtype=np.float64, na_value=np.nan) == 1
    train_end = start + pd.Timedelta(days=delta_train)
    in_train = ((day >= start) & (day < train_end)).to_numpy()
    test_start = train_end + pd.Timedelta(days=delta_delay)
    keep = np.zeros(len(tx), dtype=bool)
    removed = 0
    cards = tx[schema.CUSTOMER_ID].to_numpy()
    for k in range(delta_test):
        test_day = test_start + pd.Timedelta(days=k)
        # Known by test day D: frauds from the training start up to D - delay - 1 (the Handbook
        # adds delay day k-1 before test day k).
        if known_cards == "handbook":
            known_until = train_end + pd.Timedelta(days=k - 1)
        else:
            known_until = test_start - pd.Timedelta(days=1)
        known = np.unique(cards[((day >= start) & (day <= known_until)).to_numpy() & labelled & fraud])
        today = (day == test_day).to_numpy()
        drop = today & np.isin(cards, known)
        removed += int(drop.sum())
        keep |= today & ~drop
    return Fold(
        number=number,
        train_start=start,
        test_start=test_start,
        test_end=test_start + pd.Timedelta(days=delta_test),
        train_index=tx.index[in_train & labelled],
        test_index=tx.index[keep],
        removed_known_cards=removed,
    )


def prequential_folds(
    tx: pd.DataFrame,
    start_date_training: date | str | pd.Timestamp,
    cfg: EvaluationConfig | None = None,
) -> list[Fold]:
    """The Handbook's ``prequentialSplit``: fold k trains from ``start - k * delta_test`` days.

    Fold 0 is the latest; a fold whose training or test days fall outside the data is skipped
    (so fewer folds than asked may come back; none raises `ValueError`).
    """
    cfg = cfg or EvaluationConfig()
    day = _days(tx)
    first, last = day.min(), day.max()
    folds: list[Fold] = []
    for k in range(cfg.n_folds):
        start = pd.Timestamp(start_date_training).normalize() - pd.Timedelta(days=k * cfg.delta_test)
        end = start + pd.Timedelta(days=cfg.delta_train + cfg.delta_delay + cfg.delta_test - 1)
        if start < first or end > last:
            continue
        folds.append(
            train_test_split(
                tx,
                start,
                delta_train=cfg.delta_train,
                delta_delay=cfg.delta_delay,
                delta_test=cfg.delta_test,
                number=k,
                known_cards=cfg.known_cards,
            )
        )
    if not folds:
        raise ValueError(f"no prequential fold fits between {first.date()} and {last.date()}")
    return folds


def handbook_starts(
    start_date_training: date | str | pd.Timestamp = HANDBOOK_START_TRAINING,
    cfg: EvaluationConfig | None = None,
) -> dict[str, pd.Timestamp]:
    """The Handbook's validation and test fold starts around a training start (chapter 5).

    Validation folds start ``delta_delay + delta_test`` days earlier (their test weeks end where
    the estimation's training starts); test folds start ``(n_folds - 1) * delta_test`` days later
    (so the oldest test fold trains from `start_date_training`).
    """
    cfg = cfg or EvaluationConfig()
    start = pd.Timestamp(start_date_training).normalize()
    return {
        "valid": start - pd.Timedelta(days=cfg.delta_delay + cfg.delta_test),
        "test": start + pd.Timedelta(days=(cfg.n_folds - 1) * cfg.delta_test),
    }


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def _arrays(
    y: Sequence[float] | np.ndarray | pd.Series, score: Sequence[float] | np.ndarray | pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64)
    s_arr = np.asarray(score, dtype=np.float64)
    if y_arr.shape != s_arr.shape:
        raise ValueError(f"labels and scores differ in length ({len(y_arr)} vs {len(s_arr)})")
    return y_arr, s_arr


def roc_auc(
    y: Sequence[float] | np.ndarray | pd.Series, score: Sequence[float] | np.ndarray | pd.Series
) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y_arr, s_arr = _arrays(y, score)
    if len(np.unique(y_arr)) < 2:
        return math.nan
    return float(roc_auc_score(y_arr, s_arr))


def average_precision(
    y: Sequence[float] | np.ndarray | pd.Series, score: Sequence[float] | np.ndarray | pd.Series
) -> float:
    """Average precision (area under the precision-recall curve, step-wise); NaN without frauds."""
    y_arr, s_arr = _arrays(y, score)
    if y_arr.sum() == 0:
        return math.nan
    return float(average_precision_score(y_arr, s_arr))


def recall_at_fpr(
    y: Sequence[float] | np.ndarray | pd.Series,
    score: Sequence[float] | np.ndarray | pd.Series,
    fpr: float = 0.01,
) -> float:
    """The highest true-positive rate reachable with a false-positive rate at most `fpr`."""
    y_arr, s_arr = _arrays(y, score)
    if len(np.unique(y_arr)) < 2:
        return math.nan
    f, t, _ = roc_curve(y_arr, s_arr, drop_intermediate=False)
    return float(t[f <= fpr + 1e-12].max())


def card_precision_at_k(
    frame: pd.DataFrame,
    score: Sequence[float] | np.ndarray | pd.Series,
    k: int = 100,
    *,
    remove_detected: bool = True,
) -> tuple[float, list[float]]:
    """The Handbook's card precision top-k, averaged over days.

    Per day: each card's score is its highest transaction score and its label its highest
    ``TX_FRAUD``; the `k` cards with the highest scores are alerted; precision = frauds among them
    / k (k even when the day has fewer cards). With `remove_detected`, cards caught on earlier
    days (alerted and fraudulent) are left out of later days, as the Handbook does. Ties keep the
    lower ``CUSTOMER_ID`` first.

    Args:
        frame: Test transactions with ``TX_DATETIME``, ``CUSTOMER_ID`` and ``TX_FRAUD``.
        score: One score per row of `frame`.
        k: Cards alerted per day.
        remove_detected: Drop cards already detected on earlier days.

    Returns:
        ``(mean over days, per-day precisions)``.
    """
    if len(frame) != len(score):
        raise ValueError(f"frame and scores differ in length ({len(frame)} vs {len(score)})")
    df = pd.DataFrame(
        {
            "day": _days(frame).to_numpy(),
            "card": frame[schema.CUSTOMER_ID].to_numpy(),
            "y": frame[schema.TX_FRAUD].to_numpy(dtype=np.float64),
            "s": np.asarray(score, dtype=np.float64),
        }
    )
    detected: set[int] = set()
    per_day: list[float] = []
    for _, today in df.groupby("day", sort=True):
        if remove_detected and detected:
            today = today[~today["card"].isin(detected)]
        cards = today.groupby("card", sort=True).agg(s=("s", "max"), y=("y", "max"))
        top = cards.sort_values("s", ascending=False, kind="mergesort").head(k)
        caught = top.index[top["y"] == 1]
        per_day.append(len(caught) / k)
        if remove_detected:
            detected.update(int(c) for c in caught)
    mean = float(np.mean(per_day)) if per_day else math.nan
    return mean, per_day


def _compromise_runs(events: pd.DataFrame, days: int) -> list[tuple[int, int, int]]:
    """``(terminal, first day, end day)`` of each unbroken compromise: a terminal compromised again
    before its window ends stays compromised from the first start, and its frauds are known from
    the first start's label delay on, not the second's."""
    runs: list[tuple[int, int, int]] = []
    for t, starts in events.groupby(schema.TERMINAL_ID)["start_day"]:
        merged: list[list[int]] = []  # [first, end] per run of this terminal
        for start in sorted(int(x) for x in starts):
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], start + days)
            else:
                merged.append([start, start + days])
        runs += [(int(t), first, end) for first, end in merged]
    return runs


def card_precision_ceilings(
    frame: pd.DataFrame,
    terminal_events: pd.DataFrame,
    origin: pd.Timestamp | date,
    delay_days: int,
    k: int = 100,
    *,
    terminal_days: int = 28,
) -> tuple[float, float]:
    """Card precision@k of a perfect model, and of one perfect on every fraud it could know of.

    A terminal compromise (scenario 2) changes nothing in its transactions but their label; until
    the first label arrives, `delay_days` after the compromise began, no feature can see it. The
    second ceiling ranks every other fraud first and fills the rest of each day's k cards at random
    (seeded), those hidden frauds among them: what a model that knew everything knowable would
    reach, the fair yardstick for a CP@k goal.

    Args:
        frame: Test transactions with ``TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_FRAUD,
            TX_FRAUD_SCENARIO``.
        terminal_events: The simulator's scenario-2 compromises (``TERMINAL_ID, start_day``).
        origin: The simulation's first day (``start_day`` 0).
        delay_days: The label delay.
        k: Cards alerted per day.
        terminal_days: How long a compromise lasts.

    Returns:
        ``(perfect, reachable)`` mean card precision@k over the days.
    """
    missing = {schema.TERMINAL_ID, "start_day"} - set(terminal_events.columns)
    if missing:
        raise ValueError(f"terminal_events lacks {', '.join(sorted(missing))}")
    y = frame[schema.TX_FRAUD].to_numpy(dtype=np.float64)
    reachable = y.copy()
    s2 = np.flatnonzero(frame[schema.TX_FRAUD_SCENARIO].to_numpy() == 2)
    if len(s2):
        when = pd.to_datetime(frame[schema.TX_DATETIME].iloc[s2])
        day = ((when.dt.tz_localize(None) if when.dt.tz else when) - pd.Timestamp(origin).normalize()).dt.days
        day = day.to_numpy()
        term = frame[schema.TERMINAL_ID].to_numpy()[s2]
        age = np.full(len(s2), np.inf)
        for t, first, end in _compromise_runs(terminal_events, terminal_days):
            hit = (term == t) & (day >= first) & (day < end)
            age[hit] = day[hit] - first
        reachable[s2[age < delay_days]] = 0.0
    # The rest of the top k is filled at random, as a model blind to them would: ties broken by
    # card id could hand the ceiling a hidden fraud that sorts first.
    reachable += 0.5 * np.random.default_rng(0).random(len(reachable))
    perfect, _ = card_precision_at_k(frame, y, k)
    best, _ = card_precision_at_k(frame, reachable, k)
    return perfect, best


@dataclass(frozen=True)
class CostResult:
    """Money view of a threshold: alerts reviewed and fraud amount caught."""

    threshold: float
    n_alerts: int
    frauds_caught: int
    amount_caught: float
    review_cost: float
    savings: float  # amount_caught - review_cost


def cost_at_threshold(
    y: Sequence[float] | np.ndarray | pd.Series,
    score: Sequence[float] | np.ndarray | pd.Series,
    amount: Sequence[float] | np.ndarray | pd.Series,
    threshold: float,
    review_cost: float,
) -> CostResult:
    """Alerts are transactions scoring at least `threshold`; each costs `review_cost` to review
    and a fraud alerted saves its amount."""
    y_arr, s_arr = _arrays(y, score)
    a = np.asarray(amount, dtype=np.float64)
    alert = s_arr >= threshold
    caught = alert & (y_arr == 1)
    amount_caught = float(a[caught].sum())
    cost = float(alert.sum()) * review_cost
    return CostResult(
        threshold=float(threshold),
        n_alerts=int(alert.sum()),
        frauds_caught=int(caught.sum()),
        amount_caught=amount_caught,
        review_cost=cost,
        savings=amount_caught - cost,
    )


def cost_optimal_threshold(
    y: Sequence[float] | np.ndarray | pd.Series,
    score: Sequence[float] | np.ndarray | pd.Series,
    amount: Sequence[float] | np.ndarray | pd.Series,
    review_cost: float,
) -> CostResult:
    """The threshold with the highest savings on these (validation) scores.

    Every distinct score is a candidate (alert everything scoring at least it); alerting nothing
    (threshold +inf, savings 0) is a candidate too. Ties in savings keep the higher threshold.
    """
    y_arr, s_arr = _arrays(y, score)
    a = np.asarray(amount, dtype=np.float64)
    order = np.argsort(-s_arr, kind="mergesort")
    s_sorted = s_arr[order]
    gain = np.cumsum(np.where(y_arr[order] == 1, a[order], 0.0))
    alerts = np.arange(1, len(s_arr) + 1)
    savings = gain - review_cost * alerts
    # A threshold alerts a whole group of equal scores: only group ends are reachable.
    end = np.ones(len(s_sorted), dtype=bool)
    end[:-1] = s_sorted[1:] != s_sorted[:-1]
    cand = np.flatnonzero(end)
    if len(cand) == 0 or savings[cand].max() <= 0:
        return cost_at_threshold(y_arr, s_arr, a, math.inf, review_cost)
    best = cand[np.argmax(savings[cand])]  # argmax: the first (highest threshold) among ties
    return cost_at_threshold(y_arr, s_arr, a, float(s_sorted[best]), review_cost)


def recall_by_scenario(
    scenario: Sequence[int] | np.ndarray | pd.Series,
    alert: Sequence[bool] | np.ndarray | pd.Series,
) -> dict[str, float]:
    """Share of each fraud scenario's transactions that were alerted (scenario names as keys)."""
    sc = np.asarray(scenario, dtype=np.int64)
    al = np.asarray(alert, dtype=bool)
    out: dict[str, float] = {}
    for code in sorted(set(sc.tolist()) - {0, schema.SCENARIO_UNKNOWN}):
        mask = sc == code
        out[schema.SCENARIO_NAMES.get(code, str(code))] = float(al[mask].mean())
    return out


def fraud_metrics(
    frame: pd.DataFrame,
    score: Sequence[float] | np.ndarray | pd.Series,
    cfg: EvaluationConfig | None = None,
    *,
    threshold: float | None = None,
) -> dict[str, float]:
    """Every metric of one test set: ``roc_auc, average_precision, card_precision_at_k,
    recall_at_fpr`` and, with a threshold (chosen on validation), ``savings, n_alerts,
    amount_caught``."""
    cfg = cfg or EvaluationConfig()
    y = frame[schema.TX_FRAUD].to_numpy(dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    cp, _ = card_precision_at_k(frame, s, cfg.top_k, remove_detected=cfg.remove_detected_cards)
    out = {
        "roc_auc": roc_auc(y, s),
        "average_precision": average_precision(y, s),
        "card_precision_at_k": cp,
        "recall_at_fpr": recall_at_fpr(y, s, cfg.fpr),
    }
    if threshold is not None:
        cost = cost_at_threshold(y, s, frame[schema.TX_AMOUNT].to_numpy(), threshold, cfg.review_cost)
        out.update(savings=cost.savings, n_alerts=float(cost.n_alerts), amount_caught=cost.amount_caught)
    return out


def mean_over_folds(per_fold: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean and standard deviation of each metric over folds (``name`` and ``name_std``)."""
    if not per_fold:
        return {}
    out: dict[str, float] = {}
    for name in per_fold[0]:
        values = np.array([m[name] for m in per_fold], dtype=np.float64)
        out[name] = float(np.nanmean(values)) if not np.isnan(values).all() else math.nan
        out[f"{name}_std"] = float(np.nanstd(values)) if not np.isnan(values).all() else math.nan
    return out
