"""Reason-code wording: counts read as a reviewer would write them."""

from __future__ import annotations

import pytest

from level4_fraud.serving.explain import describe


@pytest.mark.parametrize(
    ("feature", "value", "start"),
    [
        ("CUSTOMER_ID_NB_TX_7DAY_WINDOW", 1.0, "1 payment on this card in the last 7 days"),
        ("CUSTOMER_ID_NB_TX_1DAY_WINDOW", 4.0, "4 payments on this card in the last 24 hours"),
        ("TERMINAL_ID_NB_TX_30DAY_WINDOW", 1.0, "1 payment at this terminal in 30 days"),
        ("CUSTOMER_ID_NB_TX_1H_WINDOW", 0.0, "0 payments on this card within the last hour"),
        ("SMALL_AMOUNT_BURST_1H", 1.0, "1 small payment (under 5)"),
    ],
)
def test_counts_take_the_noun_in_the_right_number(feature, value, start):
    assert describe(feature, value, 0.3).startswith(start)


def test_the_direction_of_the_contribution_is_said():
    assert describe("TX_AMOUNT", 950.0, 1.2).endswith("raised the fraud risk.")
    assert describe("TX_AMOUNT", 3.0, -0.4).endswith("lowered the fraud risk.")


@pytest.mark.parametrize(
    ("feature", "value", "start"),
    [
        ("TERMINAL_ID_DAYS_SINCE_LAST_FRAUD", 8.4, "This terminal's latest confirmed fraud was 8.4 days ago"),
        (
            "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD",
            29.0,
            "This terminal has had confirmed frauds since 29.0 days",
        ),
        ("TERMINAL_ID_DAYS_SINCE_LAST_FRAUD", 37.0, "No confirmed fraud at this terminal in the 30 days"),
        ("TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD", 37.0, "No confirmed fraud at this terminal in the 30 days"),
    ],
)
def test_the_terminal_fraud_recency_reads_as_days_or_as_no_known_fraud(feature, value, start):
    assert describe(feature, value, 0.5).startswith(start)
