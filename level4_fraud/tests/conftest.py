"""Fixtures for the level 4 data tests: small simulations, made once per session."""

from __future__ import annotations

import pandas as pd
import pytest

from level4_fraud.simulate import SimulatorConfig, simulate

# A small population with every fraud intensity raised (the richer mode scales them to the
# population size, so 300 customers would otherwise see only a handful of each scenario).
SMALL = {
    "n_customers": 300,
    "n_terminals": 600,
    "nb_days": 40,
    "drift_day": 25,
    "seed": 7,
    "compromised_terminals_per_day": 10.0,
    "compromised_cards_per_day": 20.0,
    "card_testing_per_day": 15.0,
    "takeover_per_day": 15.0,
    "collusion_tx_per_day": 40.0,
    "drift_cards_per_day": 30.0,
}


@pytest.fixture(scope="session")
def rich_sim() -> tuple[SimulatorConfig, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A small simulation with the richer fields, every scenario and a drift at day 25."""
    cfg = SimulatorConfig(**SMALL)
    tx, customers, terminals = simulate(cfg)
    return cfg, tx, customers, terminals


@pytest.fixture(scope="session")
def handbook_sim() -> tuple[SimulatorConfig, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The Handbook's pure setup on a smaller population (its three scenarios only)."""
    cfg = SimulatorConfig(handbook=True, n_customers=400, n_terminals=800, nb_days=50, seed=3)
    tx, customers, terminals = simulate(cfg)
    return cfg, tx, customers, terminals
