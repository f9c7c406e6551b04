"""Cached, generated test data for the simulator/model/evaluation tests.

`functools.cache` makes each builder run once per test process (the level's shared
``conftest.py`` belongs to the serving and tracking tests).
"""

from __future__ import annotations

import functools
import time

from level3_recsys.data import InteractionData
from level3_recsys.models import Recommender, build_model
from level3_recsys.simulate import SimulatedWorld, SimulatorConfig, simulate
from level3_recsys.split import time_split

ALL = ("popularity", "itemknn", "als", "ease", "two_tower", "two_stage")


def silent_configs(**extra: dict) -> dict[str, dict]:
    """Per-model configs with progress bars off (plus overrides)."""
    cfgs: dict[str, dict] = {
        "popularity": {},
        "itemknn": {},
        "ease": {},
        "als": {"show_progress": False},
        "two_tower": {"show_progress": False},
        "two_stage": {
            "show_progress": False,
            "als": {"show_progress": False},
            "two_tower": {"show_progress": False},
        },
    }
    for name, upd in extra.items():
        cfgs[name] = {**cfgs[name], **upd}
    return cfgs


@functools.cache
def tiny() -> tuple[SimulatedWorld, InteractionData, InteractionData]:
    """A small world (about a second) and its 3-day time split, for interface tests."""
    world = simulate(
        SimulatorConfig(
            seed=3, n_users=150, n_items=120, new_items_per_day=4, days=12, n_creators=30, show_progress=False
        )
    )
    train, test = time_split(world.interaction_data(), test_days=3)
    return world, train, test


@functools.cache
def tiny_models() -> dict[str, Recommender]:
    """Every model fitted on the tiny world with small settings."""
    _, train, _ = tiny()
    cfgs = silent_configs(
        two_tower={"epochs": 2},
        two_stage={
            "holdout_days": 3.0,
            "n_estimators": 20,
            "min_child_samples": 5,
            "two_tower": {"epochs": 1, "show_progress": False},
        },
    )
    return {name: build_model(name, cfgs[name]).fit(train) for name in ALL}


@functools.cache
def quick() -> tuple[SimulatedWorld, InteractionData, InteractionData]:
    """The quick profile's world (default `SimulatorConfig`) and its 7-day test period."""
    world = simulate(SimulatorConfig(show_progress=False))
    train, test = time_split(world.interaction_data(), test_days=7)
    return world, train, test


@functools.cache
def quick_models() -> tuple[dict[str, Recommender], dict[str, float]]:
    """Every model fitted on the quick world with default settings, plus fit seconds."""
    _, train, _ = quick()
    cfgs = silent_configs()
    models, seconds = {}, {}
    for name in ALL:
        start = time.perf_counter()
        models[name] = build_model(name, cfgs[name]).fit(train)
        seconds[name] = time.perf_counter() - start
    return models, seconds
