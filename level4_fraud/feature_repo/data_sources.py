"""Feast data sources: Parquet files of the run folder, a push source, the request source.

Every batch source is a Parquet file with an ``event_timestamp`` column (UTC): the moment its
values became known. Paths are relative to the feature store folder of a run
(`level4_fraud.feature_store.FeatureStoreLayout`), which Feast uses as ``repo_path``.
"""

from __future__ import annotations

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import Float64, UnixTimestamp

from level4_fraud.schema import TX_AMOUNT, TX_DATETIME

EVENT_TIMESTAMP = "event_timestamp"

# File names under the feature store folder's ``data/``; feature_store.py writes them.
CARD_WINDOWS_FILE = "data/card_windows.parquet"
TERMINAL_WINDOWS_FILE = "data/terminal_windows.parquet"
CARD_ACTIVITY_FILE = "data/card_activity.parquet"
CARD_PROFILE_FILE = "data/card_profile.parquet"
TERMINAL_PROFILE_FILE = "data/terminal_profile.parquet"

card_windows_source = FileSource(
    name="card_windows_source",
    path=CARD_WINDOWS_FILE,
    timestamp_field=EVENT_TIMESTAMP,
    description="End-of-day snapshots of each card's windowed aggregates.",
)

terminal_windows_source = FileSource(
    name="terminal_windows_source",
    path=TERMINAL_WINDOWS_FILE,
    timestamp_field=EVENT_TIMESTAMP,
    description="End-of-day snapshots of each terminal's counts and delayed fraud risk.",
)

card_activity_source = FileSource(
    name="card_activity_source",
    path=CARD_ACTIVITY_FILE,
    timestamp_field=EVENT_TIMESTAMP,
    description="One row per transaction: the card's last transaction as of that moment.",
)

# The stream (level 4b) pushes each processed transaction here; the same rows, kept offline,
# are the batch source's history.
card_activity_push = PushSource(
    name="card_activity_push",
    batch_source=card_activity_source,
    description="Streaming updates of a card's last transaction.",
)

card_profile_source = FileSource(
    name="card_profile_source",
    path=CARD_PROFILE_FILE,
    timestamp_field=EVENT_TIMESTAMP,
    description="Home coordinates of each card holder (simulator side table).",
)

terminal_profile_source = FileSource(
    name="terminal_profile_source",
    path=TERMINAL_PROFILE_FILE,
    timestamp_field=EVENT_TIMESTAMP,
    description="Coordinates of each terminal (simulator side table).",
)

# What only the authorisation request knows: the amount and the moment.
transaction_request = RequestSource(
    name="transaction_request",
    schema=[
        Field(name=TX_AMOUNT, dtype=Float64),
        Field(name=TX_DATETIME, dtype=UnixTimestamp),
    ],
    description="Fields of the transaction being scored.",
)
