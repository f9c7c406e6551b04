"""Reason-code wording: counts read as a reviewer would write them; the terminal texts name the
run's own windows and label delay."""

from __future__ import annotations

import numpy as np
import pytest

from level4_fraud.features import recency_fill
from level4_fraud.serving.explain import DEFAULT_PHRASING, Phrasing, RowExplainer, StudentExplainer, describe


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


# ------------------------------------------------------------------------------------ run-aware texts
RUN_14_3 = Phrasing(windows=(1, 7, 14), delay_days=3)  # recency_fill: 14 + 3 = 17 days


def test_the_default_phrasing_keeps_the_default_runs_text():
    assert Phrasing((1, 7, 30), 7) == DEFAULT_PHRASING
    assert DEFAULT_PHRASING.no_known_fraud == recency_fill() == 37.0
    for feature in ("TERMINAL_ID_DAYS_SINCE_LAST_FRAUD", "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD"):
        assert describe(feature, 37.0, 0.5) == (
            "No confirmed fraud at this terminal in the 30 days ending a week ago: raised the fraud risk."
        )
    # 17 days is a known fraud for the default windows.
    assert describe("TERMINAL_ID_DAYS_SINCE_LAST_FRAUD", 17.0, 0.5).startswith(
        "This terminal's latest confirmed fraud was 17.0 days ago"
    )
    assert "(ending a week ago)" in describe("TERMINAL_ID_RISK_7DAY_WINDOW", 0.25, 0.5)


def test_a_run_with_other_windows_and_delay_reads_its_own_fill_and_window():
    assert RUN_14_3.no_known_fraud == recency_fill((1, 7, 14), 3) == 17.0
    none = "No confirmed fraud at this terminal in the 14 days ending 3 days ago: lowered the fraud risk."
    for feature in ("TERMINAL_ID_DAYS_SINCE_LAST_FRAUD", "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD"):
        assert describe(feature, 17.0, -0.2, phrasing=RUN_14_3) == none
    assert describe("TERMINAL_ID_DAYS_SINCE_LAST_FRAUD", 16.5, 0.2, phrasing=RUN_14_3).startswith(
        "This terminal's latest confirmed fraud was 16.5 days ago"
    )
    assert describe("TERMINAL_ID_RISK_14DAY_WINDOW", 0.25, 0.5, phrasing=RUN_14_3).startswith(
        "25% of this terminal's investigated payments over 14 days (ending 3 days ago) were fraud"
    )
    assert describe("TERMINAL_ID_NB_TX_1DAY_WINDOW", 2.0, 0.5, phrasing=RUN_14_3).startswith(
        "2 payments at this terminal in 24 hours (ending 3 days ago)"
    )
    # The card's average that AMOUNT_TO_CUSTOMER_MEAN divides by is over the longest window.
    assert describe("AMOUNT_TO_CUSTOMER_MEAN", 4.0, 0.5, phrasing=RUN_14_3).startswith(
        "Amount is 4.0 times the card's 14-day average"
    )
    default = describe("AMOUNT_TO_CUSTOMER_MEAN", 4.0, 0.5)
    assert default.startswith("Amount is 4.0 times the card's 30-day average")


@pytest.mark.parametrize(
    ("delay", "ago"), [(0, "now"), (1, "a day ago"), (7, "a week ago"), (10, "10 days ago")]
)
def test_the_label_delay_reads_as_a_reviewer_would_say_it(delay, ago):
    assert Phrasing((1, 7, 30), delay).no_fraud_text.endswith(f"in the 30 days ending {ago}")


def test_window_lengths_of_the_run_are_recognised_in_feature_names():
    """A 3-day window is not among the usual ones: the run's own windows name it."""
    run = Phrasing((3, 21), 7)
    assert describe("CUSTOMER_ID_NB_TX_3DAY_WINDOW", 2.0, 0.5, phrasing=run).startswith(
        "2 payments on this card in the last 3 days"
    )
    assert describe("CUSTOMER_ID_NB_TX_3DAY_WINDOW", 2.0, 0.5).startswith("CUSTOMER_ID_NB_TX_3DAY_WINDOW = 2")


def test_both_explainers_word_their_reasons_in_the_runs_phrasing():
    names = ["TX_AMOUNT", "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD"]
    values = {"TX_AMOUNT": 20.0, "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD": 17.0}
    typical = np.array([50.0, 5.0], dtype=np.float32)

    def predict(x: np.ndarray) -> np.ndarray:  # risk falls with the days since the last fraud
        return 1.0 / (1.0 + np.exp(0.2 * np.asarray(x, dtype=np.float64)[:, 1] - 1.0))

    x = np.array([20.0, 17.0], dtype=np.float32)
    for phrasing, expected in ((RUN_14_3, "in the 14 days ending 3 days ago"), (None, "was 17.0 days ago")):
        student = StudentExplainer(names, [], typical, predict, phrasing)
        (reason,) = student.reasons(x, float(predict(x[None, :])[0]), values, 2, alert=False)
        assert reason.feature == "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD" and expected in reason.text

        def predict_rows(numeric: np.ndarray, categorical: list) -> np.ndarray:
            return predict(numeric)

        rows = RowExplainer(
            names, [], dict(zip(names, typical.tolist(), strict=True)), predict_rows, phrasing
        )
        _, reasons = rows.score_and_explain(values, 2, alert_at=1.0)
        assert [r.feature for r in reasons] == ["TERMINAL_ID_DAYS_SINCE_LAST_FRAUD"]
        assert expected in reasons[0].text
