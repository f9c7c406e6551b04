"""The rules-based score used when the model fails: amount and velocity rules.

A bank keeps deciding when its model is down; these rules are what a fraud team writes first
(and what the simulator's scenarios look like): a very high amount, a burst of small amounts
(card testing), many transactions in an hour, an amount far above the card's usual spending.
Each rule that fires gives its score; the transaction gets the highest (``base`` when none fires).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from level4_fraud.serving.config import RulesConfig
from level4_fraud.serving.schemas import Reason


def _value(features: Mapping[str, Any], name: str) -> float:
    v = features.get(name)
    try:
        out = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def rules_score(features: Mapping[str, Any], cfg: RulesConfig) -> tuple[float, list[Reason]]:
    """The rules' score of one transaction's inputs and the rules that fired (highest first).

    Args:
        features: The transaction's inputs (`online.OnlineFeatures.values`); a missing or NaN
            input never fires its rule.
        cfg: Thresholds and scores.

    Returns:
        ``(score, reasons)``; each reason's contribution is the rule's log-odds above ``base``.
    """
    amount = _value(features, "TX_AMOUNT")
    burst = _value(features, "SMALL_AMOUNT_BURST_1H")
    velocity = _value(features, "CUSTOMER_ID_NB_TX_1H_WINDOW")
    ratio = _value(features, "AMOUNT_TO_CUSTOMER_MEAN")
    fired: list[tuple[float, Reason]] = []

    def fire(score: float, feature: str, value: float, text: str) -> None:
        contribution = _logit(score) - _logit(cfg.base)
        fired.append((score, Reason(feature=feature, value=value, contribution=contribution, text=text)))

    if amount > cfg.high_amount:
        fire(
            cfg.high_amount_score,
            "TX_AMOUNT",
            amount,
            f"Amount {amount:,.2f} is above {cfg.high_amount:,.0f}",
        )
    if burst >= cfg.burst_small:
        fire(
            cfg.burst_small_score,
            "SMALL_AMOUNT_BURST_1H",
            burst,
            f"{burst:.0f} small payments on this card within an hour (card testing)",
        )
    if velocity >= cfg.velocity_1h:
        fire(
            cfg.velocity_1h_score,
            "CUSTOMER_ID_NB_TX_1H_WINDOW",
            velocity,
            f"{velocity:.0f} payments on this card within an hour",
        )
    if ratio >= cfg.amount_ratio:
        fire(
            cfg.amount_ratio_score,
            "AMOUNT_TO_CUSTOMER_MEAN",
            ratio,
            f"Amount is {ratio:.1f} times the card's 30-day average",
        )
    fired.sort(key=lambda item: -item[0])
    score = max([cfg.base, *(s for s, _ in fired)])
    return score, [r for _, r in fired]
