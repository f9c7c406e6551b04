"""Feast feature store of level 4: configuration, point-in-time training sets, online path.

Small hand-made sources (two cards, two terminals, a few days of 2018) make every expected
value computable by hand. SQLite online store, Parquet (dask) offline store, in process.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from level4_fraud.feature_repo.feature_views import (
    ACTIVITY_TTL,
    CARD_WINDOW_FEATURES,
    SNAPSHOT_TTL,
    TERMINAL_FRAUD_TIME_FEATURES,
    TERMINAL_VIEW_FEATURES,
    TERMINAL_WINDOW_FEATURES,
    card_count,
    card_mean_amount,
    terminal_risk,
)
from level4_fraud.feature_store import (
    EVENT_TIMESTAMP,
    RAY_ENGINE_TYPE,
    FeatureStoreConfig,
    FeatureStoreLayout,
    FraudFeatureStore,
    card_activity_rows,
    entity_frame,
    profile_rows,
    redis_connection_string,
    render_repo_config,
    sources_from_transactions,
)
from level4_fraud.features import TERMINAL_RECENCY_FEATURES, recency_fill
from shared.errors import InputFileError, SchemaError

DAY = pd.Timestamp("2018-04-02", tz="UTC")


def card_snapshots(rows: list[tuple[int, pd.Timestamp, float]]) -> pd.DataFrame:
    """Card window rows: (card, time, base); feature i of a row is base + i."""
    out = pd.DataFrame({"CUSTOMER_ID": [r[0] for r in rows], EVENT_TIMESTAMP: [r[1] for r in rows]})
    for i, col in enumerate(CARD_WINDOW_FEATURES):
        out[col] = [r[2] + i for r in rows]
    return out


def terminal_snapshots(rows: list[tuple[int, pd.Timestamp, float]]) -> pd.DataFrame:
    """Terminal rows: (terminal, time, base); windows as for cards (risks base + i / 100), the
    latest and earliest fraud times ``7 + base`` and ``20 + base`` days before the row."""
    out = pd.DataFrame({"TERMINAL_ID": [r[0] for r in rows], EVENT_TIMESTAMP: [r[1] for r in rows]})
    for i, col in enumerate(TERMINAL_WINDOW_FEATURES):
        out[col] = [r[2] + i / 100 if "RISK" in col else r[2] + i for r in rows]
    for col, back in zip(TERMINAL_FRAUD_TIME_FEATURES, (7, 20), strict=True):
        out[col] = [(r[1] - pd.Timedelta(days=back + r[2])).timestamp() for r in rows]
    return out


def transactions(rows: list[tuple[int, int, int, float, str]]) -> pd.DataFrame:
    """(TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_DATETIME) rows, naive UTC times."""
    return pd.DataFrame(
        rows, columns=["TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_DATETIME"]
    ).assign(TX_DATETIME=lambda d: pd.to_datetime(d["TX_DATETIME"]))


# Card 1 has snapshots at midnight of 04-02 and 04-03, card 2 only at 04-02 (valid until its next
# one), card 4 only one from 2017: past the one-year ttl in 2018. Card 3 has none.
CARD_ROWS = [
    (1, DAY, 10.0),
    (1, DAY + timedelta(days=1), 20.0),
    (2, DAY, 30.0),
    (4, pd.Timestamp("2017-03-01", tz="UTC"), 40.0),
]
TERMINAL_ROWS = [(7, DAY, 1.0), (8, DAY, 2.0), (7, DAY + timedelta(days=1), 3.0)]
TX = transactions(
    [
        (0, 1, 7, 12.0, "2018-04-02 08:00:00"),
        (1, 1, 8, 40.0, "2018-04-02 09:30:00"),
        (2, 2, 7, 50.0, "2018-04-02 23:59:59"),
        (3, 1, 7, 60.0, "2018-04-03 00:00:00"),  # exactly at card 1's second snapshot
        (4, 1, 7, 30.0, "2018-04-03 10:00:00"),
        (5, 2, 8, 5.0, "2018-04-03 12:00:00"),  # card 2's snapshot is 36 h old, still valid
        (6, 2, 8, 7.0, "2018-04-03 12:00:00"),  # same card, same second (feast #6787)
        (7, 3, 7, 20.0, "2018-03-01 12:00:00"),
        (8, 3, 7, 20.0, "2018-04-03 13:00:00"),  # 33 days after card 3's previous one: past 30
        (9, 4, 8, 15.0, "2018-04-03 14:00:00"),
    ]
)


def build_store(run: Path, *, card_rows=CARD_ROWS, geo: bool = False, config=None) -> FraudFeatureStore:
    fs = FraudFeatureStore(run, config)
    frames = {
        "card_windows": card_snapshots(card_rows),
        "terminal_windows": terminal_snapshots(TERMINAL_ROWS),
        "card_activity": card_activity_rows(TX),
    }
    if geo:
        start = DAY - timedelta(days=1)
        customers = pd.DataFrame(
            {"CUSTOMER_ID": [1, 2], "x_customer_id": [0.0, 10.0], "y_customer_id": [0.0, 10.0]}
        )
        terminals = pd.DataFrame(
            {"TERMINAL_ID": [7, 8], "x_terminal_id": [3.0, 10.0], "y_terminal_id": [4.0, 10.0]}
        )
        frames["card_profile"] = profile_rows(
            customers, "CUSTOMER_ID", "x_customer_id", "y_customer_id", start
        )
        frames["terminal_profile"] = profile_rows(
            terminals, "TERMINAL_ID", "x_terminal_id", "y_terminal_id", start
        )
    fs.write_sources(**frames)
    fs.apply()
    return fs


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FraudFeatureStore:
    return build_store(tmp_path_factory.mktemp("feast_run"), geo=True)


@pytest.fixture(scope="module")
def train(store: FraudFeatureStore) -> pd.DataFrame:
    return store.training_set(entity_frame(TX)).set_index("TRANSACTION_ID")


# --- configuration ------------------------------------------------------------------------------


def test_defaults_are_sqlite_file_and_local_engine(tmp_path: Path) -> None:
    conf = render_repo_config(FeatureStoreLayout(tmp_path), FeatureStoreConfig())
    assert conf["online_store"] == {"type": "sqlite", "path": "online.db"}
    assert conf["offline_store"] == {"type": "file"}
    assert conf["batch_engine"] == "local"
    assert conf["registry"] == {"registry_type": "file", "path": "registry.db"}


def test_redis_url_selects_redis_and_becomes_a_feast_connection_string(tmp_path: Path) -> None:
    cfg = FeatureStoreConfig(redis_url="redis://:s3cret@10.0.0.5:6380/2", redis_key_ttl_seconds=60)
    assert cfg.online_store == "redis"
    conf = render_repo_config(FeatureStoreLayout(tmp_path), cfg)
    assert conf["online_store"] == {
        "type": "redis",
        "connection_string": "10.0.0.5:6380,db=2,password=s3cret",
        "key_ttl_seconds": 60,
    }
    assert redis_connection_string("rediss://cache:6379") == "cache:6379,ssl=true"
    assert redis_connection_string("cache:6379,db=1") == "cache:6379,db=1"
    # An explicit sqlite choice wins over a URL left in the environment.
    assert FeatureStoreConfig(online_store="sqlite", redis_url="redis://x:1").online_store == "sqlite"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"online_store": "redis"},
        {"redis_url": "redis://host:notaport"},
        {"redis_url": "http://host:6379"},
        {"project": "fraud-store"},
        {"batch_engine": "spark"},
        {"unknown": 1},
    ],
)
def test_bad_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        FeatureStoreConfig(**kwargs)


def test_ray_config_uses_the_point_in_time_engine_and_the_cluster_address(tmp_path: Path) -> None:
    cfg = FeatureStoreConfig(offline_store="ray", batch_engine="ray", ray_address="ray://head:10001")
    conf = render_repo_config(FeatureStoreLayout(tmp_path), cfg)
    assert conf["batch_engine"] == {
        "type": RAY_ENGINE_TYPE,
        "ray_address": "ray://head:10001",
        "write_concurrency": 1,
    }
    assert conf["offline_store"]["type"] == "ray"
    assert conf["offline_store"]["ray_address"] == "ray://head:10001"
    assert Path(conf["offline_store"]["storage_path"]).is_absolute()


def test_rendered_yaml_is_a_valid_feast_repo_for_the_cli(store: FraudFeatureStore) -> None:
    """feast -c RUN/feature_store ... reads the same configuration and registry."""
    from feast import FeatureStore
    from feast.repo_config import load_repo_config

    root = store.layout.root
    conf = load_repo_config(root, root / "feature_store.yaml")
    assert conf.project == "level4_fraud"
    assert conf.online_store.type == "sqlite"
    cli_store = FeatureStore(repo_path=str(root))
    assert {v.name for v in cli_store.list_feature_views()} >= {
        "card_windows",
        "terminal_windows",
        "card_activity",
    }
    assert yaml.safe_load((root / "feature_store.yaml").read_text())["batch_engine"] == "local"


def test_apply_needs_the_batch_sources(tmp_path: Path) -> None:
    fs = FraudFeatureStore(tmp_path)
    fs.write_sources(card_windows=card_snapshots(CARD_ROWS))
    with pytest.raises(InputFileError, match="terminal_windows, card_activity"):
        fs.apply()


def test_a_source_without_its_columns_is_refused(tmp_path: Path) -> None:
    fs = FraudFeatureStore(tmp_path)
    with pytest.raises(SchemaError, match="card_windows: missing column"):
        fs.write_sources(card_windows=card_snapshots(CARD_ROWS).drop(columns=[card_count(7)]))
    with pytest.raises(SchemaError, match="unknown feature source"):
        fs.write_sources(cards=card_snapshots(CARD_ROWS))


# --- point in time ------------------------------------------------------------------------------


def test_training_set_has_one_row_per_transaction_in_order(train: pd.DataFrame) -> None:
    assert list(train.index) == list(TX["TRANSACTION_ID"])
    assert list(train["TX_AMOUNT"]) == list(TX["TX_AMOUNT"])


def test_snapshot_written_after_a_transaction_never_reaches_it(train: pd.DataFrame) -> None:
    # Card 1: snapshot base 10 at 04-02 00:00, base 20 at 04-03 00:00.
    assert train.loc[0, card_count(1)] == 10  # 8:00 on 04-02
    assert train.loc[1, card_count(1)] == 10
    # Transaction 3 happens at the very instant the 04-03 snapshot is stamped: it is scored
    # before it is recorded, so it still sees the 04-02 snapshot.
    assert train.loc[3, card_count(1)] == 10
    assert train.loc[4, card_count(1)] == 20  # 10:00 on 04-03
    assert train.loc[4, card_mean_amount(30)] == 25.0  # base 20 + index 5
    assert train.loc[2, terminal_risk(7)] == pytest.approx(1.03)
    assert train.loc[4, terminal_risk(7)] == pytest.approx(3.03)


def test_rows_past_the_ttl_give_nulls_not_stale_values_or_missing_rows(
    store: FraudFeatureStore, train: pd.DataFrame
) -> None:
    assert timedelta(days=365) == SNAPSHOT_TTL
    assert timedelta(days=30) == ACTIVITY_TTL
    # A snapshot holds until the card's next one: card 2's 04-02 row at 04-03 12:00.
    assert list(train.loc[[2, 5, 6], card_count(1)]) == [30, 30, 30]
    # Card 4's 2017 snapshot is past the one-year ttl: nulls, and the row is still there.
    assert train.loc[[9], list(CARD_WINDOW_FEATURES)].isna().all().all()
    assert train.loc[9, "TX_AMOUNT"] == 15.0
    # Card 3's previous transaction is 33 days old at transaction 8: past card_activity's ttl.
    last = store.training_set(entity_frame(TX), features=["card_activity:LAST_TX_EPOCH_S"])
    last = last.set_index("TRANSACTION_ID")["LAST_TX_EPOCH_S"]
    assert math.isnan(last[8]) and math.isnan(last[7])
    assert last[4] == pd.Timestamp("2018-04-03 00:00:00", tz="UTC").timestamp()  # tx 3


def test_transactions_sharing_card_and_second_keep_their_own_request_features(train: pd.DataFrame) -> None:
    assert train.loc[5, "TX_AMOUNT"] == 5.0 and train.loc[6, "TX_AMOUNT"] == 7.0
    # Both see card 2's previous transaction (50.0 at 23:59:59 the day before), not each other.
    gap = (pd.Timestamp("2018-04-03 12:00:00") - pd.Timestamp("2018-04-02 23:59:59")).total_seconds()
    assert train.loc[5, "SECONDS_SINCE_LAST_TX"] == gap
    assert train.loc[6, "SECONDS_SINCE_LAST_TX"] == gap


def test_request_time_features(train: pd.DataFrame) -> None:
    # The conventions of features.py: no previous transaction within 30 days = 30 days.
    cap = 30 * 86_400.0
    assert train.loc[0, "SECONDS_SINCE_LAST_TX"] == cap  # card 1's first transaction
    assert train.loc[1, "SECONDS_SINCE_LAST_TX"] == 5400.0
    assert train.loc[4, "SECONDS_SINCE_LAST_TX"] == 10 * 3600.0
    assert train.loc[8, "SECONDS_SINCE_LAST_TX"] == cap  # the previous one is 33 days old
    assert list(train["TX_HOUR"]) == [8, 9, 23, 0, 10, 12, 12, 12, 13, 14]
    assert list(train["TX_DURING_NIGHT"]) == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert list(train["TX_DURING_WEEKEND"]) == [0] * 10  # Thursday, Monday and Tuesday
    # Transaction 4: 30.0 against card 1's 30-day mean 25.0 (snapshot base 20 + 5).
    assert train.loc[4, "AMOUNT_TO_CUSTOMER_MEAN"] == pytest.approx(1.2)
    assert train.loc[0, "AMOUNT_TO_CUSTOMER_MEAN"] == pytest.approx(12.0 / 15.0)
    assert train.loc[5, "AMOUNT_TO_CUSTOMER_MEAN"] == pytest.approx(5.0 / 35.0)
    assert list(train.loc[[7, 8, 9], "AMOUNT_TO_CUSTOMER_MEAN"]) == [1.0] * 3  # no mean known


def test_distance_from_home_with_coordinates(train: pd.DataFrame) -> None:
    # Card 1 lives at (0, 0), terminal 7 is at (3, 4); card 2 at (10, 10) = terminal 8.
    assert train.loc[0, "DISTANCE_FROM_HOME"] == pytest.approx(5.0)
    assert train.loc[1, "DISTANCE_FROM_HOME"] == pytest.approx(math.hypot(10, 10))
    assert train.loc[5, "DISTANCE_FROM_HOME"] == pytest.approx(0.0)


def test_changing_the_future_changes_no_past_row(tmp_path: Path, train: pd.DataFrame) -> None:
    """Rewrite every source row stamped after 04-02 09:30 with absurd values: rows 0-1 are unchanged."""
    cutoff = pd.Timestamp("2018-04-02 09:30:00", tz="UTC")
    card_rows = [(c, t, 1e6 if t > cutoff else b) for c, t, b in CARD_ROWS] + [
        (1, cutoff + timedelta(seconds=1), 9e6)
    ]
    fs = build_store(tmp_path, card_rows=card_rows, geo=True)
    activity = card_activity_rows(TX)
    future = activity[EVENT_TIMESTAMP] > cutoff
    activity.loc[future, ["LAST_TX_EPOCH_S", "LAST_TX_AMOUNT"]] = [0.0, 1e9]
    fs.write_sources(card_activity=activity)
    again = fs.training_set(entity_frame(TX)).set_index("TRANSACTION_ID")
    pd.testing.assert_frame_equal(again.loc[[0, 1]], train.loc[[0, 1]])
    assert again.loc[4, card_count(1)] == 1e6  # and the later rows do see the rewrite


def test_training_set_without_coordinates_serves_the_base_service(tmp_path: Path) -> None:
    fs = build_store(tmp_path, geo=False)
    assert fs.default_service == "fraud_features_v1"
    out = fs.training_set(entity_frame(TX))
    assert "DISTANCE_FROM_HOME" not in out.columns
    assert {*CARD_WINDOW_FEATURES, *TERMINAL_VIEW_FEATURES, "SECONDS_SINCE_LAST_TX"} <= set(out.columns)


# --- online path ------------------------------------------------------------------------------


def request(card: int, terminal: int, amount: float, when: str) -> dict:
    return {
        "CUSTOMER_ID": card,
        "TERMINAL_ID": terminal,
        "TX_AMOUNT": amount,
        "TX_DATETIME": pd.Timestamp(when, tz="UTC").to_pydatetime(),
    }


def online_row_count(fs: FraudFeatureStore, view: str) -> int:
    with sqlite3.connect(fs.layout.online_db) as conn:
        (n,) = conn.execute(f"SELECT COUNT(DISTINCT entity_key) FROM {fs.config.project}_{view}").fetchone()
    return int(n)


def test_materialize_then_online_read_returns_the_latest_values(tmp_path: Path) -> None:
    fs = build_store(tmp_path, geo=True)
    # Up to 04-02 12:00 only the 04-02 snapshots exist: card 1 reads base 10.
    fs.materialize(DAY - timedelta(days=2), DAY + timedelta(hours=12))
    first = fs.online_features([request(1, 7, 30.0, "2018-04-02 12:00")])
    assert first.loc[0, card_count(1)] == 10
    fs.materialize(DAY - timedelta(days=2), DAY + timedelta(days=2))
    assert online_row_count(fs, "card_windows") == 2
    assert online_row_count(fs, "card_activity") == 4  # cards 1-4 transact on 04-02 or 04-03
    got = fs.online_features(
        [request(1, 7, 30.0, "2018-04-03 10:00"), request(2, 8, 5.0, "2018-04-03 12:00")]
    )
    assert list(got[card_count(1)]) == [20, 30]  # the newest snapshot of each card
    assert got.loc[0, terminal_risk(7)] == pytest.approx(3.03)
    # terminal 7's 04-03 row: its latest fraud 7 + 3 days before that midnight
    latest = got.loc[0, TERMINAL_FRAUD_TIME_FEATURES[0]]
    assert latest == (DAY + timedelta(days=1) - timedelta(days=10)).timestamp()
    assert got.loc[1, "DISTANCE_FROM_HOME"] == pytest.approx(0.0)
    # The card's last transaction is card 1's 04-03 10:00 one (30.0): the request at the same
    # time sees a gap of 0, and the amount ratio uses the 30-day mean 25.0.
    assert got.loc[0, "SECONDS_SINCE_LAST_TX"] == 0.0
    assert got.loc[0, "AMOUNT_TO_CUSTOMER_MEAN"] == pytest.approx(1.2)


def test_online_features_match_the_training_set_at_the_same_moment(tmp_path: Path) -> None:
    """Served at 04-03 10:00 after materialising what was known then = the training row of tx 4."""
    fs = build_store(tmp_path, geo=True)
    tx4 = TX[TX["TRANSACTION_ID"] == 4]
    fs.materialize(DAY - timedelta(days=2), pd.Timestamp("2018-04-03 09:59:59", tz="UTC"))
    online = fs.online_features([request(1, 7, 30.0, "2018-04-03 10:00")])
    offline = fs.training_set(entity_frame(tx4))
    cols = [*CARD_WINDOW_FEATURES, *TERMINAL_VIEW_FEATURES, "AMOUNT_TO_CUSTOMER_MEAN", "TX_HOUR"]
    cols += ["SECONDS_SINCE_LAST_TX", "DISTANCE_FROM_HOME"]
    np.testing.assert_allclose(
        online.loc[0, cols].to_numpy(dtype=float), offline.iloc[0][cols].to_numpy(dtype=float)
    )


def test_push_updates_the_online_store(tmp_path: Path) -> None:
    fs = build_store(tmp_path)
    fs.materialize(DAY - timedelta(days=2), DAY + timedelta(days=2))
    at = "2018-04-03 11:00"
    before = fs.online_features([request(1, 7, 10.0, at), request(2, 8, 10.0, at)])
    assert before.loc[0, "SECONDS_SINCE_LAST_TX"] == 3600.0  # last: 04-03 10:00
    # A stream delivers two new transactions of card 1, newest first.
    new = transactions([(11, 1, 7, 99.0, "2018-04-03 10:50:00"), (10, 1, 7, 98.0, "2018-04-03 10:40:00")])
    assert fs.push(card_activity_rows(new)) == 1
    after = fs.online_features([request(1, 7, 10.0, at)])
    assert after.loc[0, "SECONDS_SINCE_LAST_TX"] == 600.0  # the newest pushed one, not the last row
    assert after.loc[0, "AMOUNT_TO_CUSTOMER_MEAN"] == before.loc[0, "AMOUNT_TO_CUSTOMER_MEAN"]
    other = fs.online_features([request(2, 8, 10.0, at)])
    assert other.loc[0, "SECONDS_SINCE_LAST_TX"] == before.loc[1, "SECONDS_SINCE_LAST_TX"]


def test_push_rejects_rows_without_the_view_columns(tmp_path: Path) -> None:
    fs = build_store(tmp_path)
    with pytest.raises(SchemaError, match="LAST_TX_AMOUNT"):
        fs.push(card_activity_rows(TX).drop(columns=["LAST_TX_AMOUNT"]))


# --- from a simulation, through features.daily_snapshots ----------------------------------------


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Twenty days of a small simulated world with many compromised terminals."""
    from level4_fraud.simulate import SimulatorConfig, simulate

    return simulate(
        SimulatorConfig(
            n_customers=60, n_terminals=120, nb_days=20, seed=5, compromised_terminals_per_day=300
        )
    )


def test_simulated_sources_give_midnight_windows_and_the_request_features_of_features_py(
    tmp_path: Path, simulated: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    """Each training row holds the windows as of the midnight before it, by brute force."""
    from level4_fraud.features import transaction_features

    sim, customers, terminals = simulated
    fs = FraudFeatureStore(tmp_path)
    fs.write_sources(**sources_from_transactions(sim, customers=customers, terminals=terminals))
    fs.apply()
    train = fs.training_set(entity_frame(sim))
    assert len(train) == len(sim) and train.index.equals(sim.index)

    t = sim["TX_DATETIME"].to_numpy()
    card, term = sim["CUSTOMER_ID"].to_numpy(), sim["TERMINAL_ID"].to_numpy()
    amount, fraud = sim["TX_AMOUNT"].to_numpy(), sim["TX_FRAUD"].to_numpy()
    day, delay = np.timedelta64(1, "D"), np.timedelta64(7, "D")
    cards_checked = terminals_checked = frauds_checked = 0
    for i in range(len(sim)):
        midnight = (t[i] - np.timedelta64(1, "us")).astype("datetime64[D]").astype(t.dtype)
        mine, here = card == card[i], term == term[i]
        if not (mine & (t <= midnight)).any():  # no snapshot yet: the card's first day
            assert train.iloc[i][list(CARD_WINDOW_FEATURES)].isna().all()
            continue
        cards_checked += 1
        for w in (1, 7, 30):
            inside = mine & (t > midnight - w * day) & (t <= midnight)
            assert train.iloc[i][card_count(w)] == inside.sum()
            mean = amount[inside].mean() if inside.any() else 0.0
            assert train.iloc[i][card_mean_amount(w)] == pytest.approx(mean)
        if (here & (t <= midnight - delay)).any():
            terminals_checked += 1
            for w in (7, 30):
                inside = here & (t > midnight - delay - w * day) & (t <= midnight - delay)
                risk = fraud[inside].mean() if inside.any() else 0.0
                assert train.iloc[i][terminal_risk(w)] == pytest.approx(risk)
            # the latest and earliest fraud of the 30-day window (labels known a delay later)
            frauds = t[inside & (fraud == 1)]
            stored = train.iloc[i][list(TERMINAL_FRAUD_TIME_FEATURES)].to_numpy(dtype=float)
            if len(frauds):
                frauds_checked += 1
                epoch = frauds.astype("datetime64[us]").astype(np.int64) / 1e6
                np.testing.assert_allclose(stored, [epoch.max(), epoch.min()], rtol=1e-12)
            else:
                assert np.isnan(stored).all()
    assert cards_checked > 0.8 * len(sim) and terminals_checked > 0.4 * len(sim)
    assert fraud.sum() > 0 and frauds_checked > 50  # 116 rows see a known fraud

    pandas = transaction_features(sim, customers=customers, terminals=terminals)
    for col in (
        "TX_HOUR",
        "TX_DURING_NIGHT",
        "TX_DURING_WEEKEND",
        "SECONDS_SINCE_LAST_TX",
        "DISTANCE_FROM_HOME",
    ):
        np.testing.assert_allclose(
            train[col].to_numpy(dtype=float), pandas[col].to_numpy(dtype=float), err_msg=col
        )

    assert_recency_is_features_pys_where_midnight_knows_the_same_frauds(train, sim, pandas, delay_days=7)


def assert_recency_is_features_pys_where_midnight_knows_the_same_frauds(
    train: pd.DataFrame, sim: pd.DataFrame, pandas: pd.DataFrame, *, delay_days: int
) -> None:
    """The training set's terminal fraud recency equals `features.transaction_features`' on every
    row whose midnight snapshot knows the same frauds as the exact window (no fraud entered or
    left ``(t - delay - 30 d, t - delay]`` since midnight): the only difference left is the
    snapshot's, the same as serving's."""
    t = sim["TX_DATETIME"].to_numpy()
    term, fraud = sim["TERMINAL_ID"].to_numpy(), sim["TX_FRAUD"].to_numpy()
    day, delay = np.timedelta64(1, "D"), np.timedelta64(delay_days, "D")
    same = np.zeros(len(sim), dtype=bool)
    with_fraud = 0
    for i in range(len(sim)):
        midnight = (t[i] - np.timedelta64(1, "us")).astype("datetime64[D]").astype(t.dtype)
        frauds = (term == term[i]) & (fraud == 1)
        at_midnight = frauds & (t > midnight - delay - 30 * day) & (t <= midnight - delay)
        exact = frauds & (t > t[i] - delay - 30 * day) & (t <= t[i] - delay)
        same[i] = np.array_equal(at_midnight, exact)
        with_fraud += bool(same[i] and exact.any())
    assert same.mean() > 0.8 and with_fraud > 50, (same.mean(), with_fraud)
    for col in TERMINAL_RECENCY_FEATURES:
        np.testing.assert_allclose(
            train[col].to_numpy(dtype=float)[same],
            pandas[col].to_numpy(dtype=float)[same],
            rtol=0,
            atol=1e-9,
            err_msg=col,
        )
    # Without a known fraud, both read the run's fill: 30 days plus its own delay.
    none = train[TERMINAL_RECENCY_FEATURES[0]].to_numpy() == 30 + delay_days
    assert (
        none.any() and (pandas[TERMINAL_RECENCY_FEATURES[0]].to_numpy()[none & same] == 30 + delay_days).all()
    )


def test_training_set_recency_follows_the_label_delay_the_sources_were_written_with(
    tmp_path: Path, simulated: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    """Sources written with a 3-day delay, read with it: features.py's values with a 3-day delay."""
    from level4_fraud.features import transaction_features

    sim, _, _ = simulated
    fs = FraudFeatureStore(tmp_path)
    fs.write_sources(**sources_from_transactions(sim, delay_days=3))
    fs.apply()
    train = fs.training_set(entity_frame(sim), delay_days=3)
    assert {*TERMINAL_FRAUD_TIME_FEATURES, *TERMINAL_RECENCY_FEATURES} <= set(train.columns)
    assert train[TERMINAL_RECENCY_FEATURES].max().max() <= recency_fill(delay_days=3) == 33.0
    pandas = transaction_features(sim, delay_days=3)
    assert_recency_is_features_pys_where_midnight_knows_the_same_frauds(train, sim, pandas, delay_days=3)
