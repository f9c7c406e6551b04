"""The feature store with its online store on Redis (127.0.0.1:6379), as configured in production.

Each test uses its own Feast project (the Redis key namespace) and removes its keys after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from level4_fraud.feature_repo.feature_views import card_count, terminal_risk
from level4_fraud.feature_store import FeatureStoreConfig, FraudFeatureStore, card_activity_rows
from level4_fraud.tests.test_feast import DAY, build_store, request, transactions

pytestmark = pytest.mark.services

REDIS_URL = "redis://127.0.0.1:6379/0"


def project_keys(client, project: str) -> list[bytes]:
    # Feast's Redis keys end with the project name.
    return list(client.scan_iter(match=f"*{project}".encode()))


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[tuple[FraudFeatureStore, object]]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    project = f"l4test_{uuid.uuid4().hex[:12]}"
    fs = build_store(tmp_path, geo=True, config=FeatureStoreConfig(project=project, redis_url=REDIS_URL))
    try:
        yield fs, client
    finally:
        leftover = project_keys(client, project)
        if leftover:
            client.delete(*leftover)
        client.close()


def test_redis_materialize_read_push_and_teardown(redis_store) -> None:
    fs, client = redis_store
    assert fs.config.online_store == "redis"
    assert fs.store.config.online_store.type == "redis"
    fs.materialize(DAY - timedelta(days=2), DAY + timedelta(days=2))
    assert project_keys(client, fs.config.project)  # the rows are in Redis

    at = "2018-04-03 11:00"
    got = fs.online_features([request(1, 7, 30.0, at), request(2, 8, 5.0, at)])
    assert list(got[card_count(1)]) == [20, 30]
    assert got.loc[0, terminal_risk(7)] == pytest.approx(3.03)
    assert got.loc[0, "SECONDS_SINCE_LAST_TX"] == 3600.0
    assert got.loc[1, "DISTANCE_FROM_HOME"] == pytest.approx(0.0)

    fs.push(card_activity_rows(transactions([(20, 1, 7, 9.0, "2018-04-03 10:45:00")])))
    assert fs.online_features([request(1, 7, 30.0, at)]).loc[0, "SECONDS_SINCE_LAST_TX"] == 900.0
    # Redis keeps the newer event: a late push of an older transaction changes nothing.
    fs.push(card_activity_rows(transactions([(21, 1, 7, 9.0, "2018-04-03 09:00:00")])))
    assert fs.online_features([request(1, 7, 30.0, at)]).loc[0, "SECONDS_SINCE_LAST_TX"] == 900.0

    fs.teardown()
    assert project_keys(client, fs.config.project) == []
