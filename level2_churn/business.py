"""The business metric: profit of a retention campaign that contacts the customers ranked riskiest.

Contacting a customer costs ``c``. A contacted customer who would have churned is kept with
probability ``s`` (the save rate), which recovers ``v`` (the customer's lifetime value). So

* realised profit of contacting a set S, given who churned (y):  ``s * v * sum(y[S]) - c * |S|``
* expected profit of contacting customer i with churn probability p_i:  ``s * v * p_i - c``

Contacting is worth it exactly when ``p > c / (s * v)``: with calibrated probabilities that is the
profit-maximising threshold; the campaign size k follows from it. We still *choose* the threshold on
validation data (it corrects for residual mis-calibration) and judge it once on the test window
against three naive policies: contact nobody, contact everybody, contact k customers at random.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Economics:
    """Contact cost, save rate and customer lifetime value."""

    contact_cost: float
    save_rate: float
    clv: float

    @property
    def breakeven_probability(self) -> float:
        """Churn probability above which one contact has positive expected profit."""
        return self.contact_cost / (self.save_rate * self.clv)


def profit_curve(scores: np.ndarray, y: np.ndarray, econ: Economics) -> np.ndarray:
    """Realised profit of contacting the top-k by score, for every k = 0..n.

    Ties in `scores` are broken by position (stable sort), so the curve is deterministic.

    Returns:
        Array of length n + 1; element k is the profit of contacting the k highest scores.
    """
    scores = np.asarray(scores, dtype=float)
    y = np.asarray(y, dtype=float)
    order = np.argsort(-scores, kind="stable")
    gains = econ.save_rate * econ.clv * y[order] - econ.contact_cost
    return np.concatenate([[0.0], np.cumsum(gains)])


def expected_profit_curve(probs: np.ndarray, econ: Economics) -> np.ndarray:
    """Expected profit of contacting the top-k by probability (no labels needed), k = 0..n."""
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs, kind="stable")
    gains = econ.save_rate * econ.clv * probs[order] - econ.contact_cost
    return np.concatenate([[0.0], np.cumsum(gains)])


def random_k_profit(y: np.ndarray, k: int, econ: Economics) -> float:
    """Expected profit of contacting k customers drawn at random (the churn rate times k saves)."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        return 0.0
    return float(k * (econ.save_rate * econ.clv * y.mean() - econ.contact_cost))


def best_threshold(scores: np.ndarray, y: np.ndarray, econ: Economics) -> tuple[float, int, float]:
    """The score threshold that maximises realised profit on labelled (validation) data.

    Returns:
        ``(threshold, k, profit)``: contact customers with ``score >= threshold``. The threshold is
        the midpoint between the k-th and (k+1)-th scores, so new data with unseen values splits
        sensibly; ``inf`` when contacting nobody is best.
    """
    scores = np.asarray(scores, dtype=float)
    curve = profit_curve(scores, y, econ)
    k = int(np.argmax(curve))
    if k == 0:
        return float("inf"), 0, 0.0
    ranked = np.sort(scores)[::-1]
    threshold = ranked[k - 1] if k == len(ranked) else 0.5 * (ranked[k - 1] + ranked[k])
    return float(threshold), k, float(curve[k])


@dataclass(frozen=True)
class CampaignResult:
    """A chosen policy judged on one window, next to the naive policies."""

    threshold: float
    k: int
    n: int
    profit: float
    profit_nobody: float
    profit_everybody: float
    profit_random_k: float
    profit_hindsight_best: float
    k_hindsight_best: int
    expected_profit: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict for metrics.json."""
        return asdict(self)


def evaluate_campaign(probs: np.ndarray, y: np.ndarray, threshold: float, econ: Economics) -> CampaignResult:
    """Apply a threshold chosen elsewhere to a window with known outcomes.

    Args:
        probs: Calibrated churn probabilities for the window.
        y: Who churned.
        threshold: Contact customers with ``probs >= threshold`` (chosen on validation data).
        econ: Campaign economics.
    """
    probs = np.asarray(probs, dtype=float)
    y = np.asarray(y, dtype=float)
    contact = probs >= threshold
    k = int(contact.sum())
    profit = float(econ.save_rate * econ.clv * y[contact].sum() - econ.contact_cost * k)
    curve = profit_curve(probs, y, econ)
    expected = float((econ.save_rate * econ.clv * probs[contact] - econ.contact_cost).sum())
    return CampaignResult(
        threshold=float(threshold),
        k=k,
        n=len(y),
        profit=profit,
        profit_nobody=0.0,
        profit_everybody=float(curve[-1]),
        profit_random_k=random_k_profit(y, k, econ),
        profit_hindsight_best=float(curve.max()),
        k_hindsight_best=int(np.argmax(curve)),
        expected_profit=expected,
    )
