"""The same feature repository on Feast's Ray offline store and Ray compute engine (local Ray).

Shows the feast 0.67 defect (the stock ``ray.engine`` measures TTL from the wall clock, so a
backfill of 2018 data writes no row) and that the point-in-time engine of
`level4_fraud.feature_repo.ray_engine` fills the online store with what a point-in-time lookup
at the materialisation's end returns.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level4_fraud.feature_repo.feature_views import CARD_WINDOW_FEATURES, TERMINAL_VIEW_FEATURES
from level4_fraud.feature_store import (
    EVENT_TIMESTAMP,
    FeatureStoreConfig,
    FraudFeatureStore,
    entity_frame,
)
from level4_fraud.tests.test_feast import TX, build_store

pytestmark = pytest.mark.slow

RAY = FeatureStoreConfig(offline_store="ray", batch_engine="ray")
BATCH_VIEWS = ["card_windows", "terminal_windows", "card_activity"]
START = pd.Timestamp("2017-01-01", tz="UTC")
END = pd.Timestamp("2018-04-03 10:30:00", tz="UTC")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # another module's cluster: use it, leave it running
        yield
        return
    temp = tempfile.mkdtemp(prefix="l4ray")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def stored_entities(fs: FraudFeatureStore, view: str) -> int:
    """Entities of `view` in the SQLite online store (0 when its table was never written)."""
    with sqlite3.connect(fs.layout.online_db) as conn:
        (n,) = conn.execute(f"SELECT COUNT(DISTINCT entity_key) FROM {fs.config.project}_{view}").fetchone()
    return int(n)


def test_stock_ray_engine_writes_nothing_when_the_data_is_older_than_ttl_from_now(tmp_path: Path) -> None:
    """feast 0.67: materialising 2018 data with ``ray.engine`` 'succeeds' with an empty online store.

    If this starts failing, Feast fixed its TTL filter and the workaround can go.
    """
    from feast import FeatureStore, RepoConfig

    fs = build_store(tmp_path, config=RAY)  # sources written and applied
    conf = fs.repo_config_dict()
    conf["batch_engine"]["type"] = "ray.engine"
    root = fs.layout.root
    stock = FeatureStore(repo_path=str(root), config=RepoConfig(repo_path=root, **conf))
    stock.materialize(START.to_pydatetime(), END.to_pydatetime(), feature_views=["card_windows"])
    assert stored_entities(fs, "card_windows") == 0  # no error raised, nothing written
    fs.materialize(START, END, views=["card_windows"])  # the same data, the point-in-time engine
    assert stored_entities(fs, "card_windows") == 2


def test_ray_engine_materialises_what_a_point_in_time_lookup_at_the_end_returns(tmp_path: Path) -> None:
    fs = build_store(tmp_path, config=RAY)
    assert fs.store.config.batch_engine.type.endswith("PointInTimeRayComputeEngine")
    fs.materialize(START, END, views=BATCH_VIEWS)
    # At 04-03 10:30: cards 1 and 2 have valid snapshots, card 4's 2017 one is past the
    # one-year ttl; cards 1 and 2 have a last transaction, card 3's (03-01) is past 30 days.
    assert stored_entities(fs, "card_windows") == 2
    assert stored_entities(fs, "terminal_windows") == 2
    assert stored_entities(fs, "card_activity") == 2

    cards, terminals = [1, 2, 3, 4, 1, 2], [7, 8, 7, 8, 8, 7]
    rows = [
        {"CUSTOMER_ID": c, "TERMINAL_ID": t, "TX_AMOUNT": 10.0, "TX_DATETIME": END.to_pydatetime()}
        for c, t in zip(cards, terminals, strict=True)
    ]
    online = fs.online_features(rows)
    at_end = pd.DataFrame(rows).assign(**{EVENT_TIMESTAMP: END})
    offline = fs.training_set(at_end)
    cols = [
        *CARD_WINDOW_FEATURES,
        *TERMINAL_VIEW_FEATURES,
        "SECONDS_SINCE_LAST_TX",
        "AMOUNT_TO_CUSTOMER_MEAN",
    ]
    np.testing.assert_allclose(online[cols].astype(float).to_numpy(), offline[cols].to_numpy())
    assert online.loc[0, "CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 20  # the newest snapshot, not 10
    assert online.loc[1, "CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 30
    assert online.loc[[2, 3], list(CARD_WINDOW_FEATURES)].isna().all().all()
    gap = (END - pd.Timestamp("2018-04-02 23:59:59", tz="UTC")).total_seconds()
    assert list(online["SECONDS_SINCE_LAST_TX"]) == [1800.0, gap, 30 * 86_400.0, 30 * 86_400.0, 1800.0, gap]


def test_training_set_on_the_ray_offline_store_equals_the_file_store(tmp_path: Path) -> None:
    on_ray = build_store(tmp_path / "ray", config=RAY).training_set(entity_frame(TX))
    on_file = build_store(tmp_path / "file").training_set(entity_frame(TX))
    pd.testing.assert_frame_equal(on_ray, on_file)
