"""On-demand feature views: features computed at request time from the request and stored rows.

The transformations run in the online path (per authorisation) and in training-set retrieval,
so both see the same code. They are self-contained (imports inside) because Feast serialises
them into the registry.

- ``transaction_context`` (request + card rows): amount against the card's 30-day mean, hour,
  night, weekend, seconds since the card's previous transaction (conventions of
  `level4_fraud.features`: ratio 1.0 without history, gap capped at 30 days).
- ``geo_context`` (card and terminal coordinates): distance from the holder's home to the
  terminal; served only where the coordinates exist (simulated data, not the Handbook files).
"""

from __future__ import annotations

import pandas as pd
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from level4_fraud.feature_repo.data_sources import transaction_request
from level4_fraud.feature_repo.feature_views import (
    card_activity,
    card_profile,
    card_windows,
    terminal_profile,
)

AMOUNT_TO_CUSTOMER_MEAN = "AMOUNT_TO_CUSTOMER_MEAN"
TX_HOUR = "TX_HOUR"
TX_DURING_NIGHT = "TX_DURING_NIGHT"
TX_DURING_WEEKEND = "TX_DURING_WEEKEND"
SECONDS_SINCE_LAST_TX = "SECONDS_SINCE_LAST_TX"
DISTANCE_FROM_HOME = "DISTANCE_FROM_HOME"


@on_demand_feature_view(
    sources=[card_windows, card_activity, transaction_request],
    schema=[
        Field(name=AMOUNT_TO_CUSTOMER_MEAN, dtype=Float64),
        Field(name=TX_HOUR, dtype=Int64),
        Field(name=TX_DURING_NIGHT, dtype=Int64),
        Field(name=TX_DURING_WEEKEND, dtype=Int64),
        Field(name=SECONDS_SINCE_LAST_TX, dtype=Float64),
    ],
    mode="pandas",
    description="Request-time features of the transaction against the card's history.",
    tags={"team": "fraud"},
)
def transaction_context(inputs: pd.DataFrame) -> pd.DataFrame:
    """Amount ratio, time of day and week, and the gap since the card's previous transaction.

    The conventions of `level4_fraud.features.transaction_features`, so a model trained on
    either reads the same scale: the ratio is 1.0 without a known 30-day mean, the gap is
    capped at 30 days and is 30 days for a card with no transaction in that time (Feast's
    ``card_activity`` ttl). The mean is the card's 30-day mean as of the last midnight (the
    pandas feature uses every earlier transaction of the last 30 days). Times are UTC; night is
    00:00-06:59 as in the Handbook (hour <= 6).
    """
    import numpy as np
    import pandas as pd

    cap = 30 * 86_400.0
    when = inputs["TX_DATETIME"]
    if pd.api.types.is_numeric_dtype(when):
        when = pd.to_datetime(when, unit="s", utc=True)
    else:
        when = pd.to_datetime(when, utc=True)
    amount = pd.to_numeric(inputs["TX_AMOUNT"], errors="coerce").to_numpy(dtype="float64")
    mean = pd.to_numeric(inputs["CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW"], errors="coerce")
    mean = mean.to_numpy(dtype="float64", na_value=np.nan)
    last = pd.to_numeric(inputs["LAST_TX_EPOCH_S"], errors="coerce")
    last = last.to_numpy(dtype="float64", na_value=np.nan)
    epoch = (when - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    hour = when.dt.hour.astype("int64")
    known = np.isfinite(mean) & (mean > 0)
    gap = epoch - last
    out = pd.DataFrame(index=inputs.index)
    out["AMOUNT_TO_CUSTOMER_MEAN"] = np.where(known, amount / np.where(known, mean, 1.0), 1.0)
    out["TX_HOUR"] = hour
    out["TX_DURING_NIGHT"] = (hour <= 6).astype("int64")
    out["TX_DURING_WEEKEND"] = (when.dt.weekday >= 5).astype("int64")
    out["SECONDS_SINCE_LAST_TX"] = np.where(np.isfinite(gap), np.minimum(gap, cap), cap)
    return out


@on_demand_feature_view(
    sources=[card_profile, terminal_profile],
    schema=[Field(name=DISTANCE_FROM_HOME, dtype=Float64)],
    mode="pandas",
    description="Euclidean distance between the card holder's home and the terminal.",
    tags={"team": "fraud"},
)
def geo_context(inputs: pd.DataFrame) -> pd.DataFrame:
    """Distance on the simulator's grid; NaN where either location is unknown."""
    import numpy as np
    import pandas as pd

    def col(name: str) -> np.ndarray:
        return pd.to_numeric(inputs[name], errors="coerce").to_numpy(dtype="float64")

    dx = col("x_customer_id") - col("x_terminal_id")
    dy = col("y_customer_id") - col("y_terminal_id")
    return pd.DataFrame({"DISTANCE_FROM_HOME": np.hypot(dx, dy)}, index=inputs.index)


ON_DEMAND_VIEWS = (transaction_context, geo_context)
