"""Small generated inputs for the modelling tests (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

PANEL_FEATURES = [
    "usage_trend",
    "usage_trend_copy",
    "failed_payments_90d",
    "open_tickets",
    "tenure_months",
    "contract",
    "noise_a",
    "noise_b",
    "always_one",
]


def synthetic_panel(
    n_customers: int = 1200, n_months: int = 12, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Monthly snapshots with a known, non-linear churn hazard; returns (frame, true probabilities).

    The hazard has thresholds and an interaction (failed payments hurt only on monthly contracts), which
    a tree model can learn and a linear logit cannot, plus a constant, a near-duplicate and two noise
    columns for feature selection to remove.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=n_months, freq="MS")
    contract_c = rng.choice(["monthly", "annual", "two_year"], n_customers, p=[0.5, 0.3, 0.2])
    level = rng.normal(0, 1, n_customers)
    tenure0 = rng.integers(0, 48, n_customers)
    frames, probs = [], []
    for m, date in enumerate(dates):
        usage = level + rng.normal(0, 0.6, n_customers)
        failed = rng.poisson(0.35, n_customers)
        tickets = rng.poisson(0.25, n_customers)
        tenure = tenure0 + m
        monthly = contract_c == "monthly"
        logit = (
            -4.2
            + 2.2 * (usage < -0.9)
            + 1.3 * np.minimum(failed, 2) * monthly
            + 1.1 * (tickets >= 1)
            + 0.8 * monthly
            - 1.2 * (tenure > 24)
        )
        p = 1 / (1 + np.exp(-logit))
        y = (rng.random(n_customers) < p).astype(int)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"C{i:07d}" for i in range(n_customers)],
                    "snapshot_date": date,
                    "label": y,
                    "usage_trend": usage,
                    "usage_trend_copy": 2 * usage + rng.normal(0, 1e-3, n_customers),
                    "failed_payments_90d": failed.astype(float),
                    "open_tickets": tickets.astype(float),
                    "tenure_months": tenure.astype(float),
                    "contract": contract_c,
                    "noise_a": rng.normal(0, 1, n_customers),
                    "noise_b": rng.uniform(0, 1, n_customers),
                    "always_one": 1.0,
                }
            )
        )
        probs.append(p)
    frame = pd.concat(frames, ignore_index=True)
    frame["contract"] = frame["contract"].astype("category")
    # a few missing values, as real features have
    frame.loc[rng.random(len(frame)) < 0.02, "usage_trend"] = np.nan
    return frame, np.concatenate(probs)
