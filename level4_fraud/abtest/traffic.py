"""The demonstration's traffic: a run's scored test week, replayed and extended by the bootstrap.

The traffic is a run's scored test week (``RUN/scores/fold<k>.parquet``, every model's score for
every transaction), followed by bootstrap weeks of its cards: each resamples the week's cards
with replacement, with all their transactions, under new card ids, a week later. Each card will
see the model of its arm, alerting at that model's cost-optimal validation threshold
(`level4_fraud.evaluate.cost_optimal_threshold`); the labels are the ones the investigations
eventually give (in production the looks would run a label delay behind the traffic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from level4_fraud import schema
from level4_fraud.evaluate import cost_optimal_threshold
from shared.errors import SchemaError

TRAFFIC_COLUMNS = ("card", "time", "amount", "fraud", "score_champion", "score_challenger")


@dataclass(frozen=True)
class Traffic:
    """Transactions in time order with both models' scores, and each model's alert threshold."""

    frame: pd.DataFrame  # TRAFFIC_COLUMNS
    thresholds: dict[str, float]  # arm -> threshold
    models: dict[str, str]  # arm -> model name


def model_thresholds(scores: pd.DataFrame, models: list[str], review_cost: float) -> dict[str, float]:
    """Each model's cost-optimal alert threshold on the validation rows of a scores file."""
    valid = scores[scores["split"] == "valid"]
    if valid.empty:
        raise SchemaError("the scores file has no validation rows to choose the alert thresholds on")
    y = valid[schema.TX_FRAUD].to_numpy(dtype=np.float64)
    amount = valid[schema.TX_AMOUNT].to_numpy(dtype=np.float64)
    return {
        m: cost_optimal_threshold(y, valid[f"score_{m}"].to_numpy(), amount, review_cost).threshold
        for m in models
    }


def traffic_from_scores(
    scores: pd.DataFrame,
    champion: str,
    challenger: str,
    *,
    review_cost: float,
    replicas: int = 1,
    seed: int = 0,
) -> Traffic:
    """The demonstration's traffic: the scored test week, then `replicas - 1` bootstrap weeks.

    Args:
        scores: A fold's scores (`level4_fraud.train.read_scores`).
        champion: Model name of arm A (``score_<name>`` column).
        challenger: Model name of arm B.
        review_cost: Review cost per alert (for the thresholds).
        replicas: Weeks of traffic.
        seed: Seed of the bootstrap.

    Raises:
        SchemaError: A model has no score column, or there are no test rows.
    """
    available = sorted(c.removeprefix("score_") for c in scores.columns if c.startswith("score_"))
    for name in (champion, challenger):
        if f"score_{name}" not in scores.columns:
            raise SchemaError(f"model {name!r} has no scores in this run; choose from {', '.join(available)}")
    if champion == challenger:
        raise SchemaError(f"champion and challenger are the same model ({champion})")
    test = scores[(scores["split"] == "test") & scores["evaluated"].astype(bool)]
    if test.empty:
        raise SchemaError("the scores file has no evaluated test rows to replay")
    week = pd.DataFrame(
        {
            "card": test[schema.CUSTOMER_ID].to_numpy(dtype=np.int64),
            "time": pd.to_datetime(test[schema.TX_DATETIME]).to_numpy(),
            "amount": test[schema.TX_AMOUNT].to_numpy(dtype=np.float64),
            "fraud": test[schema.TX_FRAUD].to_numpy(dtype=np.float64) == 1,
            "score_champion": test[f"score_{champion}"].to_numpy(dtype=np.float64),
            "score_challenger": test[f"score_{challenger}"].to_numpy(dtype=np.float64),
        }
    )
    frame = pd.concat([week, *_bootstrap_weeks(week, replicas - 1, seed)], ignore_index=True)
    frame = frame.sort_values("time", kind="mergesort", ignore_index=True)
    thresholds = model_thresholds(scores, [champion, challenger], review_cost)
    return Traffic(
        frame=frame,
        thresholds={"champion": thresholds[champion], "challenger": thresholds[challenger]},
        models={"champion": champion, "challenger": challenger},
    )


def _bootstrap_weeks(week: pd.DataFrame, n: int, seed: int) -> list[pd.DataFrame]:
    """`n` weeks of the week's cards resampled with replacement, each under new ids, shifted."""
    rng = np.random.default_rng(seed)
    cards, code = np.unique(week["card"].to_numpy(), return_inverse=True)
    order = np.argsort(code, kind="mergesort")
    starts = np.searchsorted(code[order], np.arange(len(cards) + 1))
    span = pd.Timedelta(days=math.ceil((week["time"].max() - week["time"].min()) / pd.Timedelta(days=1)))
    base = int(cards.max()) + 1
    out = []
    for r in range(1, n + 1):
        picked = rng.integers(0, len(cards), len(cards))
        rows = np.concatenate([order[starts[c] : starts[c + 1]] for c in picked])
        copy_id = np.repeat(np.arange(len(picked)), starts[picked + 1] - starts[picked])
        part = week.iloc[rows].reset_index(drop=True)
        part["card"] = base + (r - 1) * len(cards) + copy_id
        part["time"] = part["time"] + r * span
        out.append(part)
    return out
