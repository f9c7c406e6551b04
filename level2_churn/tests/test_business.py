"""Campaign profit: hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from level2_churn.business import (
    Economics,
    best_threshold,
    evaluate_campaign,
    expected_profit_curve,
    profit_curve,
    random_k_profit,
)

ECON = Economics(contact_cost=1.0, save_rate=0.5, clv=10.0)  # a saved churner is worth 0.5 * 10 = 5


def test_profit_curve_by_hand() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    y = np.array([0, 1, 0, 1])
    # ranked: 0.9 (churner) +4, 0.7 (churner) +4, 0.5 (stays) -1, 0.1 (stays) -1
    assert profit_curve(scores, y, ECON).tolist() == [0.0, 4.0, 8.0, 7.0, 6.0]


def test_expected_profit_curve_by_hand() -> None:
    probs = np.array([0.5, 0.1])
    # 5 * 0.5 - 1 = 1.5 ; 5 * 0.1 - 1 = -0.5
    assert expected_profit_curve(probs, ECON) == pytest.approx([0.0, 1.5, 1.0])


def test_breakeven_and_random_k() -> None:
    assert ECON.breakeven_probability == pytest.approx(0.2)
    y = np.array([1, 0, 0, 0])  # churn rate 0.25: a random contact earns 5 * 0.25 - 1 = 0.25
    assert random_k_profit(y, 2, ECON) == pytest.approx(0.5)


def test_best_threshold_picks_the_profit_maximising_k() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    y = np.array([0, 1, 0, 1])
    threshold, k, profit = best_threshold(scores, y, ECON)
    assert (k, profit) == (2, 8.0)
    assert threshold == pytest.approx(0.6)  # midway between the 2nd (0.7) and 3rd (0.5) score
    assert best_threshold(scores, np.zeros(4), ECON)[:2] == (float("inf"), 0)


def test_evaluate_campaign_against_naive_policies() -> None:
    probs = np.array([0.8, 0.6, 0.3, 0.1, 0.05])
    y = np.array([1, 0, 1, 0, 0])
    res = evaluate_campaign(probs, y, threshold=0.25, econ=ECON)
    # contact the first three: two churners (5 each) minus three contacts
    assert (res.k, res.profit) == (3, 7.0)
    assert res.profit_everybody == pytest.approx(2 * 5 - 5)
    assert res.profit_random_k == pytest.approx(3 * (5 * 0.4 - 1))
    assert res.profit_hindsight_best == pytest.approx(7.0)
    assert res.expected_profit == pytest.approx(5 * (0.8 + 0.6 + 0.3) - 3)
