"""Nightly batch: champion from the registry, active users, atomic writes, Prefect flow and schedule."""

from __future__ import annotations

import pandas as pd
import pytest

from level3_recsys.batch import (
    active_users,
    nightly_batch_flow,
    nightly_deployment,
    run_batch,
)
from level3_recsys.serving.scoring import ModelRunner, RecommendRequest
from level3_recsys.store import open_store
from level3_recsys.tracking import CHAMPION
from shared.errors import DataError


class ScorerCrashError(RuntimeError):
    pass


def test_active_users_are_those_seen_in_the_window() -> None:
    day = 86_400
    log = pd.DataFrame({"user_id": [1, 2, 3, 3], "timestamp": [0, 5 * day, 9 * day, 1 * day]})
    assert active_users(log, days=3).tolist() == [3]
    assert active_users(log, days=5).tolist() == [2, 3]
    assert active_users(log, days=None).tolist() == [1, 2, 3]
    with pytest.raises(DataError):
        active_users(log.iloc[:0], days=3)


def test_batch_writes_the_champions_lists_with_version_and_time(registry, tmp_path) -> None:
    trk = registry["tracking"]
    log = registry["train"].interactions
    url = f"sqlite:///{tmp_path / 'recs.db'}"
    result = run_batch(
        tracking=trk, store_url=url, interactions=log, k=5, active_days=4, chunk_size=16, show_progress=False
    )
    expected_users = active_users(log, days=4)
    champion = trk.client().get_model_version_by_alias(trk.registered_model, CHAMPION)
    assert result.batch.model_version == str(champion.version)
    assert result.batch.model_name.endswith(champion.tags["model_name"])
    assert result.batch.n_users == len(expected_users)
    assert 0 <= result.batch.age_seconds() < 600

    model = registry["models"][champion.tags["model_name"]]
    expected = model.recommend(expected_users, k=5, exclude_seen=True)
    store = open_store(url)
    got = store.read_all()
    assert set(got["user_id"]) == {str(u) for u in expected_users}
    merged = got.assign(user_id=got["user_id"].astype(expected["user_id"].dtype)).merge(
        expected, on=["user_id", "rank"], suffixes=("_store", "_model")
    )
    assert len(merged) == len(expected)
    assert (merged["item_id_store"] == merged["item_id_model"]).all()
    one = store.get(expected_users[0])
    assert one is not None and one.batch.model_version == str(champion.version)
    store.close()


def test_a_crash_mid_batch_keeps_yesterdays_recommendations(registry, tmp_path) -> None:
    trk = registry["tracking"]
    log = registry["train"].interactions
    url = f"sqlite:///{tmp_path / 'recs.db'}"
    first = run_batch(
        tracking=trk, store_url=url, interactions=log, k=5, active_days=None, show_progress=False
    )
    store = open_store(url)
    before = store.read_all()

    class CrashOnSecondBlock:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def recommend(self, users, k, exclude_seen):
            self.calls += 1
            if self.calls == 2:
                raise ScorerCrashError("out of memory in block 2")
            return self.inner.recommend(users, k=k, exclude_seen=exclude_seen)

    with pytest.raises(ScorerCrashError):
        run_batch(
            tracking=trk,
            store_url=url,
            interactions=log,
            k=3,
            active_days=None,
            chunk_size=20,
            show_progress=False,
            model_hook=CrashOnSecondBlock,
        )
    assert store.current() == first.batch
    pd.testing.assert_frame_equal(store.read_all(), before)
    store.close()


def test_prefect_flow_runs_locally_and_refreshes_the_store(registry, tmp_path) -> None:
    trk = registry["tracking"]
    log_path = tmp_path / "train.parquet"
    registry["train"].interactions.to_parquet(log_path)
    url = f"sqlite:///{tmp_path / 'recs.db'}"
    summary = nightly_batch_flow(
        tracking_uri=trk.tracking_uri,
        artifact_location=trk.artifact_location,
        store_url=url,
        interactions_path=str(log_path),
        registered_model=trk.registered_model,
        k=4,
        active_days=None,
    )
    store = open_store(url)
    assert store.current() is not None
    assert summary["batch_id"] == store.current().batch_id
    assert summary["n_users"] == registry["train"].interactions["user_id"].nunique()
    assert store.read_all().groupby("user_id").size().max() == 4
    store.close()


def test_deployment_definition_runs_nightly_at_two() -> None:
    import asyncio
    from datetime import UTC, datetime

    from prefect.server.schemas.schedules import CronSchedule

    params = {
        "tracking_uri": "sqlite:///x.db",
        "artifact_location": "/tmp/a",
        "store_url": "sqlite:///r.db",
        "interactions_path": "t.parquet",
    }
    deployment = nightly_deployment(params)
    assert deployment.name == "level3-nightly-batch"
    assert deployment.parameters["store_url"] == "sqlite:///r.db"

    def fire_times(dep, n: int) -> list[tuple[int, int, int]]:
        (schedule,) = [s.schedule for s in dep.schedules]
        cron = CronSchedule(cron=schedule.cron, timezone=schedule.timezone or "UTC")
        start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        dates = asyncio.run(cron.get_dates(n=n, start=start))  # the server's own computation
        return [(d.day, d.hour, d.minute) for d in dates]

    # what Prefect's scheduler would do with it: once a night, at 02:00
    assert fire_times(deployment, 3) == [(11, 2, 0), (12, 2, 0), (13, 2, 0)]
    # another schedule is taken as given, not replaced by the nightly one
    assert fire_times(nightly_deployment(params, cron="30 * * * *"), 2) == [(10, 12, 30), (10, 13, 30)]


def test_batch_stores_the_cold_start_answer_the_model_service_gives(registry, tmp_path) -> None:
    trk = registry["tracking"]
    log = registry["train"].interactions
    url = f"sqlite:///{tmp_path / 'recs.db'}"
    run_batch(tracking=trk, store_url=url, interactions=log, k=5, active_days=4, show_progress=False)
    champion = trk.client().get_model_version_by_alias(trk.registered_model, CHAMPION)
    model = registry["models"][champion.tags["model_name"]]
    runner = ModelRunner(model, "m", "1")
    service_answer = runner.recommend(RecommendRequest(user_id="never-seen-42", k=5))
    assert not service_answer.known_user
    store = open_store(url)
    cold = store.get_cold_start("never-seen-42")
    assert cold is not None
    assert cold.item_ids == [i.item_id for i in service_answer.items]
    assert cold.scores == pytest.approx([i.score for i in service_answer.items], rel=1e-5)
    inactive = sorted(set(model.user_ids_.tolist()) - set(active_users(log, days=4).tolist()))
    assert inactive, "the fixture should have users outside the 4-day window"
    assert store.get(inactive[0]) is None and store.get_cold_start(inactive[0]) is None  # model's job
    store.close()
