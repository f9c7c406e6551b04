"""The simulator: seeded, well-formed, and its hidden click model behaves as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level3_recsys.simulate import SimulatorConfig, simulate
from level3_recsys.tests.recsys_helpers import quick, tiny
from shared.errors import DataError, SchemaError

SMALL = {
    "n_users": 80,
    "n_items": 60,
    "new_items_per_day": 3,
    "days": 6,
    "n_creators": 15,
    "show_progress": False,
}


def test_same_seed_same_world_and_other_seed_differs() -> None:
    a = simulate(SimulatorConfig(seed=11, **SMALL))
    b = simulate(SimulatorConfig(seed=11, **SMALL))
    c = simulate(SimulatorConfig(seed=12, **SMALL))
    pd.testing.assert_frame_equal(a.impressions, b.impressions)
    pd.testing.assert_frame_equal(a.items, b.items)
    assert not a.impressions["clicked"].equals(c.impressions["clicked"]) or not a.items.equals(c.items)


def test_tables_and_columns() -> None:
    world, _, _ = tiny()
    cfg = world.config
    assert {
        "item_id",
        "title",
        "genres",
        "tags",
        "creator_id",
        "length",
        "publish_day",
        "publish_time",
    } <= set(world.items.columns)
    assert {"user_id", "country", "device"} <= set(world.users.columns)
    assert list(world.impressions.columns) == [
        "user_id",
        "item_id",
        "day",
        "timestamp",
        "session_id",
        "position",
        "clicked",
        "watch_time",
    ]
    assert len(world.items) == cfg.n_items + cfg.new_items_per_day * cfg.days
    # every session is a full slate with positions 0..slate_size-1 and distinct items
    sizes = world.impressions.groupby("session_id")["item_id"].agg(["size", "nunique"])
    assert (sizes["size"] == cfg.slate_size).all() and (sizes["nunique"] == cfg.slate_size).all()
    # impressions only show items already published; watch time only on clicks
    pub = world.items.set_index("item_id")["publish_day"]
    assert (pub.loc[world.impressions["item_id"]].to_numpy() <= world.impressions["day"].to_numpy()).all()
    assert (world.impressions.loc[~world.impressions["clicked"], "watch_time"] == 0).all()
    assert world.impressions["timestamp"].is_monotonic_increasing


def test_new_items_arrive_every_day_and_get_clicked() -> None:
    world, _, _ = quick()
    cfg = world.config
    new = world.items[world.items["publish_day"] >= 0]
    assert (new.groupby("publish_day").size() == cfg.new_items_per_day).all()
    clicked = world.impressions[world.impressions["clicked"]]
    assert clicked["item_id"].isin(new["item_id"]).mean() > 0.05


def test_position_bias_and_popularity_skew() -> None:
    world, _, _ = quick()
    imp = world.impressions
    ctr = imp.groupby("position")["clicked"].mean().to_numpy()
    assert ctr[0] > 2.5 * ctr[-1]
    assert (np.diff(ctr) < 0).sum() >= len(ctr) - 2
    assert 0.05 < imp["clicked"].mean() < 0.3
    counts = imp[imp["clicked"]].groupby("item_id").size().sort_values(ascending=False)
    top_decile = counts.iloc[: len(world.items) // 10].sum() / counts.sum()
    assert top_decile > 0.3  # power-law-like: 10% of items get far more than 10% of clicks


def test_click_probability_is_examination_times_relevance() -> None:
    world, _, _ = tiny()
    users = world.users["user_id"].to_numpy()[:5]
    items = world.items["item_id"].to_numpy()[:5]
    top = world.click_probability(users, items, 0)
    lower = world.click_probability(users, items, 4)
    np.testing.assert_allclose(lower, top * 5.0**-world.config.position_eta)
    rel = world.relevance_matrix(users)
    np.testing.assert_allclose(top, rel[np.arange(5), items])
    assert ((rel >= 0) & (rel <= 1)).all()
    # an item not yet published has probability 0
    future = world.items["item_id"].to_numpy()[-1:]
    assert world.click_probability(users[:1], future, 0, day=0)[0] == 0.0


def test_taste_drives_clicks() -> None:
    world, _, _ = quick()
    clicks = world.impressions
    p = world.click_probability(clicks["user_id"].to_numpy()[:20000], clicks["item_id"].to_numpy()[:20000], 0)
    clicked = clicks["clicked"].to_numpy()[:20000]
    # final tastes and freshness (drift blurs early days), yet clicked items are clearly more relevant
    assert p[clicked].mean() > 1.25 * p[~clicked].mean()


def test_expected_ctr_validates_input() -> None:
    world, _, _ = tiny()
    with pytest.raises(SchemaError, match="rank"):
        world.expected_ctr(pd.DataFrame({"user_id": [0], "item_id": [0]}))
    with pytest.raises(DataError, match="unknown"):
        world.click_probability(np.array([10**6]), np.array([0]))


def test_interaction_data_weights_and_oracle() -> None:
    world, train, _ = tiny()
    inter = world.interactions()
    assert len(inter) == int(world.impressions["clicked"].sum())
    assert inter["weight"].between(1, 2).all()
    users = train.user_ids[:30]
    assert 0 < world.oracle_ctr(users, 10, exclude=train) <= world.oracle_ctr(users, 10) + 1e-12
