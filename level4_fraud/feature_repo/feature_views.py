"""Feast batch feature views: windowed aggregates per card and terminal, activity, profiles.

Feature names are those of `level4_fraud.features` (the Handbook's), so a model trained on the
pandas features and one trained on a Feast training set read the same columns.

Sources: ``level4_fraud.features.daily_snapshots`` writes a window row per entity at each
midnight where one of its values changed (a transaction entered or left a window, a late label
arrived), so a row holds until the entity's next row, and an entity whose transactions have all
left the windows has a final row of zeros.

TTL, the age after which a row no longer counts at a point in time (null instead):
- window snapshots: a year (``SNAPSHOT_TTL``). Rows are change-based, so a short TTL would
  blank a quiet card's valid (zero) windows; the TTL only stops a feed that stopped from
  serving year-old state;
- the card's last transaction: the longest window, 30 days (``ACTIVITY_TTL``);
- profiles (home and terminal coordinates) never expire (ttl 0 means no limit in Feast).
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64

from level4_fraud.feature_repo.data_sources import (
    card_activity_push,
    card_profile_source,
    card_windows_source,
    terminal_profile_source,
    terminal_windows_source,
)
from level4_fraud.feature_repo.entities import card, terminal
from level4_fraud.features import TERMINAL_FRAUD_TIMES
from level4_fraud.schema import X_CUSTOMER, X_TERMINAL, Y_CUSTOMER, Y_TERMINAL

WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)
SNAPSHOT_TTL = timedelta(days=365)
ACTIVITY_TTL = timedelta(days=max(WINDOWS_DAYS))

LAST_TX_EPOCH_S = "LAST_TX_EPOCH_S"
LAST_TX_AMOUNT = "LAST_TX_AMOUNT"


def card_count(w: int) -> str:
    """Name of the card's transaction count over the last `w` days."""
    return f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"


def card_mean_amount(w: int) -> str:
    """Name of the card's mean amount over the last `w` days."""
    return f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"


def terminal_count(w: int) -> str:
    """Name of the terminal's transaction count over the `w` days before the label delay."""
    return f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"


def terminal_risk(w: int) -> str:
    """Name of the terminal's fraud rate over the `w` days before the label delay."""
    return f"TERMINAL_ID_RISK_{w}DAY_WINDOW"


CARD_WINDOW_FEATURES: tuple[str, ...] = tuple(
    name for w in WINDOWS_DAYS for name in (card_count(w), card_mean_amount(w))
)
TERMINAL_WINDOW_FEATURES: tuple[str, ...] = tuple(
    name for w in WINDOWS_DAYS for name in (terminal_count(w), terminal_risk(w))
)
# Times (UTC epoch seconds) of the latest and the earliest fraud known at the snapshot in the
# longest delayed window; NaN when none. Serving turns them into days since at request time
# (`features.recency_days`): a day count stored at midnight would be a day stale by evening.
TERMINAL_FRAUD_TIME_FEATURES: tuple[str, ...] = tuple(TERMINAL_FRAUD_TIMES)
# Everything the terminal_windows view holds.
TERMINAL_VIEW_FEATURES: tuple[str, ...] = (*TERMINAL_WINDOW_FEATURES, *TERMINAL_FRAUD_TIME_FEATURES)

card_windows = FeatureView(
    name="card_windows",
    entities=[card],
    ttl=SNAPSHOT_TTL,
    schema=[
        field
        for w in WINDOWS_DAYS
        for field in (
            Field(name=card_count(w), dtype=Int64, description=f"transactions in {w} days"),
            Field(name=card_mean_amount(w), dtype=Float64, description=f"mean amount, {w} days"),
        )
    ],
    source=card_windows_source,
    online=True,
    description="The card's spending behaviour over 1, 7 and 30 days, as of each midnight.",
    tags={"team": "fraud", "entity": "card"},
)

terminal_windows = FeatureView(
    name="terminal_windows",
    entities=[terminal],
    ttl=SNAPSHOT_TTL,
    schema=[
        field
        for w in WINDOWS_DAYS
        for field in (
            Field(name=terminal_count(w), dtype=Int64, description=f"transactions, {w} days"),
            Field(name=terminal_risk(w), dtype=Float64, description=f"fraud rate, {w} days"),
        )
    ]
    + [
        Field(name=TERMINAL_FRAUD_TIMES[0], dtype=Float64, description="latest known fraud, epoch s"),
        Field(name=TERMINAL_FRAUD_TIMES[1], dtype=Float64, description="earliest known fraud, epoch s"),
    ],
    source=terminal_windows_source,
    online=True,
    description=(
        "The terminal's volume and fraud rate over 1, 7 and 30 days ending a label delay "
        "before each midnight, and the times of its latest and earliest fraud in the 30 days: "
        "only labels known by then count."
    ),
    tags={"team": "fraud", "entity": "terminal"},
)

card_activity = FeatureView(
    name="card_activity",
    entities=[card],
    ttl=ACTIVITY_TTL,
    schema=[
        Field(name=LAST_TX_EPOCH_S, dtype=Float64, description="UTC epoch seconds"),
        Field(name=LAST_TX_AMOUNT, dtype=Float64),
    ],
    source=card_activity_push,
    online=True,
    description="The card's last transaction; the stream pushes each new one.",
    tags={"team": "fraud", "entity": "card", "freshness": "streaming"},
)

card_profile = FeatureView(
    name="card_profile",
    entities=[card],
    ttl=timedelta(0),
    schema=[Field(name=X_CUSTOMER, dtype=Float64), Field(name=Y_CUSTOMER, dtype=Float64)],
    source=card_profile_source,
    online=True,
    description="Where the card holder lives (grid coordinates).",
    tags={"team": "fraud", "entity": "card"},
)

terminal_profile = FeatureView(
    name="terminal_profile",
    entities=[terminal],
    ttl=timedelta(0),
    schema=[Field(name=X_TERMINAL, dtype=Float64), Field(name=Y_TERMINAL, dtype=Float64)],
    source=terminal_profile_source,
    online=True,
    description="Where the terminal is (grid coordinates).",
    tags={"team": "fraud", "entity": "terminal"},
)

BATCH_VIEWS = (card_windows, terminal_windows, card_activity)
PROFILE_VIEWS = (card_profile, terminal_profile)
