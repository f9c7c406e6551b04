"""Feast feature services: the feature sets a fraud model is trained on and served with."""

from __future__ import annotations

from feast import FeatureService

from level4_fraud.feature_repo.feature_views import card_windows, terminal_windows
from level4_fraud.feature_repo.on_demand import geo_context, transaction_context

# What every deployment has: the Handbook's windows plus the request-time context.
fraud_features_v1 = FeatureService(
    name="fraud_features_v1",
    features=[card_windows, terminal_windows, transaction_context],
    description="Card and terminal windows with request-time features (any data source).",
    tags={"team": "fraud"},
)

# Adds the distance from home, for data that comes with customer and terminal coordinates.
fraud_features_geo_v1 = FeatureService(
    name="fraud_features_geo_v1",
    features=[card_windows, terminal_windows, transaction_context, geo_context],
    description="fraud_features_v1 plus the distance from the holder's home to the terminal.",
    tags={"team": "fraud"},
)

FEATURE_SERVICES = (fraud_features_v1, fraud_features_geo_v1)
