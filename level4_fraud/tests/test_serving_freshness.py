"""Feature freshness is measured at the transaction's own time, so replays of old data read true ages."""

from __future__ import annotations

from datetime import datetime

import pytest

from level4_fraud.serving.online import CardLedger, OnlineFeatureSource, StoreRow, epoch_seconds
from level4_fraud.serving.schemas import TransactionIn


class _Reader:
    """A stand-in for the Feast reader: one stored row whose newest event is `newest`."""

    def __init__(self, newest: float) -> None:
        self.newest = newest

    def read(self, card: int, terminal: int) -> StoreRow:
        return StoreRow(None, None, float("nan"), self.newest)


@pytest.mark.parametrize("age_s", [0.0, 90.0, 7_200.0])
def test_freshness_is_age_at_the_transaction_time_not_the_wall_clock(age_s: float) -> None:
    when = datetime(2018, 5, 31, 10, 15)  # years before the wall clock: the age must not read years
    tx = TransactionIn(TRANSACTION_ID=1, TX_DATETIME=when, CUSTOMER_ID=1, TERMINAL_ID=2, TX_AMOUNT=10.0)
    source = OnlineFeatureSource(_Reader(epoch_seconds(when) - age_s), CardLedger(), windows=(1, 7, 30))  # type: ignore[arg-type]
    assert source.features(tx).freshness_s == pytest.approx(age_s)
