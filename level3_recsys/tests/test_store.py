"""The recommendation store: round trip, freshness metadata, atomic batches (SQLite and Redis)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from level3_recsys.store import ColdStart, RecStore, SQLiteStore, open_store
from level3_recsys.tests.conftest import long_recs
from shared.errors import ConfigError, DataError


class MidBatchError(RuntimeError):
    pass


def chunks_then_fail(frame: pd.DataFrame, n_good: int) -> Iterator[pd.DataFrame]:
    """Yield `n_good` chunks of the frame's users, then fail as a crashing scorer would."""
    users = frame["user_id"].unique()
    for part in range(n_good):
        yield frame[frame["user_id"].isin(users[part::10])]
    raise MidBatchError("scorer crashed mid-batch")


def sorted_rows(df: pd.DataFrame) -> pd.DataFrame:
    out = df.assign(user_id=df["user_id"].astype(str)).sort_values(["user_id", "rank"])
    return out.reset_index(drop=True)[["user_id", "item_id", "rank", "score"]]


def _redis_url() -> str:
    return f"redis://127.0.0.1:6379/0?prefix=l3test:{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[RecStore]:
    if request.param == "sqlite":
        st = open_store(f"sqlite:///{tmp_path / 'recs.db'}")
        yield st
        st.close()
        return
    redis = pytest.importorskip("redis")
    st = open_store(_redis_url())
    try:
        st.client.ping()  # type: ignore[attr-defined]
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield st
    keys = list(st.client.scan_iter(match=f"{st.prefix}:*"))  # type: ignore[attr-defined]
    if keys:
        st.client.delete(*keys)  # type: ignore[attr-defined]
    st.close()


def test_round_trip_keeps_every_list_in_rank_order(store: RecStore) -> None:
    recs = long_recs(50, 10)
    info = store.write_batch([recs[:200], recs[200:]], model_name="m", model_version="3", k=10)
    assert info.n_users == 50
    pd.testing.assert_frame_equal(sorted_rows(store.read_all()), sorted_rows(recs), check_dtype=False)
    one = store.get(7)
    expected = recs[recs["user_id"] == 7].sort_values("rank")
    assert one is not None
    assert one.item_ids == expected["item_id"].tolist()
    assert one.scores == pytest.approx(expected["score"].tolist())
    assert store.get("no-such-user") is None


def test_batch_carries_model_version_and_timestamp(store: RecStore) -> None:
    when = datetime.now(UTC) - timedelta(hours=3)
    store.write_batch([long_recs(5, 3)], model_name="level3/als", model_version="12", k=3, generated_at=when)
    user = store.get(0)
    assert user is not None
    assert user.batch.model_name == "level3/als"
    assert user.batch.model_version == "12"
    assert datetime.fromisoformat(user.batch.generated_at) == when
    assert user.batch.age_seconds() == pytest.approx(3 * 3600, abs=60)
    assert store.current() == user.batch


def test_failed_batch_leaves_yesterdays_recommendations_intact(store: RecStore) -> None:
    yesterday = long_recs(40, 5, seed=1)
    live = store.write_batch([yesterday], model_name="m", model_version="1", k=5)
    today = long_recs(40, 5, offset=5000, seed=2)
    with pytest.raises(MidBatchError):
        store.write_batch(chunks_then_fail(today, n_good=3), model_name="m", model_version="2", k=5)
    assert store.current() == live
    assert store.history() == [live]
    pd.testing.assert_frame_equal(sorted_rows(store.read_all()), sorted_rows(yesterday), check_dtype=False)
    # A later good batch goes live in full.
    new = store.write_batch([today], model_name="m", model_version="2", k=5)
    assert store.current() == new
    assert set(store.read_all()["item_id"]) == set(today["item_id"])


def test_old_batches_are_pruned_but_the_previous_one_is_kept(store: RecStore) -> None:
    infos = [
        store.write_batch([long_recs(3, 2, seed=s)], model_name="m", model_version=str(s), k=2)
        for s in range(4)
    ]
    assert [b.batch_id for b in store.history()] == [infos[3].batch_id, infos[2].batch_id]


def test_failed_sqlite_batch_leaves_no_table_behind(tmp_path) -> None:
    path = tmp_path / "recs.db"
    st = SQLiteStore(path)
    st.write_batch([long_recs(10, 3)], model_name="m", model_version="1", k=3)
    with pytest.raises(MidBatchError):
        st.write_batch(chunks_then_fail(long_recs(10, 3), n_good=2), model_name="m", model_version="2", k=3)
    st.close()
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'recs_%'")]
        statuses = [r[0] for r in conn.execute("SELECT status FROM batches")]
    assert len(tables) == 1
    assert statuses == ["live"]


def test_rows_without_required_columns_are_refused_atomically(tmp_path) -> None:
    st = open_store(f"sqlite:///{tmp_path / 'recs.db'}")
    with pytest.raises(DataError, match="lack columns"):
        st.write_batch(
            [pd.DataFrame({"user_id": [1], "item_id": [2]})], model_name="m", model_version="1", k=1
        )
    assert st.current() is None


@pytest.mark.parametrize("url", ["postgres://x/y", "sqlite://", "redis://127.0.0.1:6379/0?prefix=bad prefix"])
def test_bad_store_urls_are_user_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_cold_start_list_answers_only_users_the_model_never_saw(store: RecStore) -> None:
    recs = long_recs(20, 4)
    # the model knows users 0..29; only 0..19 were active, so only they have a list
    cold = ColdStart(item_ids=[7, 3, 9, 1], scores=[0.9, 0.5, 0.25, 0.1], known_users=range(30))
    info = store.write_batch([recs], model_name="m", model_version="4", k=4, cold_start=cold)
    new_user = store.get_cold_start("somebody-new")
    assert new_user is not None
    assert new_user.item_ids == [7, 3, 9, 1] and new_user.scores == pytest.approx([0.9, 0.5, 0.25, 0.1])
    assert new_user.batch == info and new_user.user_id == "somebody-new"
    assert store.get_cold_start(25) is None  # known to the model, not active: the model service's
    assert store.get_cold_start("3") is None  # has a list of its own
    assert store.get("somebody-new") is None  # the cold list is no user's entry...
    assert len(store.read_all()) == len(recs)  # ...and not part of the batch's rows


def test_batch_without_cold_start_list_leaves_new_users_to_the_model(store: RecStore) -> None:
    cold = ColdStart(item_ids=[1, 2], scores=[1.0, 0.5], known_users=[0])
    store.write_batch([long_recs(3, 2)], model_name="m", model_version="1", k=2, cold_start=cold)
    assert store.get_cold_start("new") is not None
    store.write_batch([long_recs(3, 2)], model_name="m", model_version="2", k=2)  # no list tonight
    assert store.get_cold_start("new") is None


def test_failed_and_pruned_batches_leave_no_cold_start_data(tmp_path) -> None:
    path = tmp_path / "recs.db"
    st = SQLiteStore(path, keep=1)
    cold = ColdStart(item_ids=[1, 2, 3], scores=[3.0, 2.0, 1.0], known_users=range(10))
    first = st.write_batch([long_recs(10, 3)], model_name="m", model_version="1", k=3, cold_start=cold)
    with pytest.raises(MidBatchError):
        st.write_batch(
            chunks_then_fail(long_recs(10, 3), n_good=2),
            model_name="m",
            model_version="2",
            k=3,
            cold_start=cold,
        )
    assert st.current() == first and st.get_cold_start("x") is not None
    second = st.write_batch([long_recs(10, 3)], model_name="m", model_version="3", k=3, cold_start=cold)
    st.close()
    with sqlite3.connect(path) as conn:
        known = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'known_%'")]
        rows = [r[0] for r in conn.execute("SELECT batch_id FROM cold_start")]
    assert known == [f"known_{second.batch_id}"] and rows == [second.batch_id]


def test_mismatched_cold_start_list_is_refused(tmp_path) -> None:
    st = SQLiteStore(tmp_path / "recs.db")
    with pytest.raises(DataError, match="cold-start list"):
        st.write_batch(
            [long_recs(3, 2)],
            model_name="m",
            model_version="1",
            k=2,
            cold_start=ColdStart(item_ids=[1, 2], scores=[1.0], known_users=[0]),
        )
    assert st.current() is None
