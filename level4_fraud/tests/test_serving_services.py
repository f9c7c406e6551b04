"""The scoring service on the real backing services (marker ``services``): the Feast online store
on Redis (127.0.0.1:6379) gives the same inputs and decisions as the run's SQLite store, and the
audit log on PostgreSQL (127.0.0.1:5432, database ``test``) keeps one row per decision."""

from __future__ import annotations

import contextlib
import io
import math
import uuid
import warnings

import pytest

from level4_fraud.serving.schemas import TransactionIn
from level4_fraud.tests.serving_helpers import assert_read_matches_feast, payload, serving_config, serving_run

pytestmark = [pytest.mark.services, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql://127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def run():
    return serving_run()


@pytest.fixture()
def redis_run(run, tmp_path):
    """A copy of the run whose online store is materialised into Redis (own project)."""
    import pandas as pd

    from level4_fraud import data
    from level4_fraud.feature_store import FeatureStoreConfig, FraudFeatureStore

    folder = run.copy(tmp_path / "run")
    config = FeatureStoreConfig(project=f"l4serve_{uuid.uuid4().hex[:10]}", redis_url=REDIS_URL)
    store = FraudFeatureStore(folder, config)
    tx = data.read_fdh_folder(run.history)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.apply()
        # as the pipeline does: from the first transaction to the midnight after the last one
        end = tx["TX_DATETIME"].max().normalize() + pd.Timedelta(days=1)
        store.materialize(tx["TX_DATETIME"].min().to_pydatetime(), end.to_pydatetime())
    yield folder, config
    store.teardown()


def test_redis_online_store_gives_the_sqlite_stores_inputs_and_decisions(run, redis_run):
    from level4_fraud.serving.scorer import FraudScorer

    folder, fs_config = redis_run
    on_redis = FraudScorer.from_run(folder, serving_config(run), feature_store=fs_config)
    on_sqlite = FraudScorer.from_run(run.run_dir, serving_config(run))
    assert "redis" in str(on_redis.source.reader.store.repo_config_dict()["online_store"]["type"])
    for _, row in run.replay().head(60).iterrows():
        tx = TransactionIn.model_validate(payload(row))
        a, b = on_redis.source.features(tx), on_sqlite.source.features(tx)
        assert a.flags == b.flags and "online_store_unavailable" not in a.flags
        for name, value in b.values.items():
            other = a.values[name]
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(other, float) and math.isnan(other), name
            else:
                assert other == pytest.approx(value), name
        assert on_redis.score(tx).decision == on_sqlite.score(tx).decision
    # Feast's Redis store appends to the feature list it is given: the reader's own lists must
    # not grow with every read (each read would ask for more fields than the last).
    asked = [list(names) for _, _, names in on_redis.source.reader._views]
    for _, row in run.replay().head(20).iterrows():
        on_redis.source.reader.read(int(row["CUSTOMER_ID"]), int(row["TERMINAL_ID"]))
    assert [list(names) for _, _, names in on_redis.source.reader._views] == asked


def test_the_direct_redis_read_equals_feasts_get_online_features(run, redis_run):
    from level4_fraud.serving.scorer import FraudScorer

    folder, fs_config = redis_run
    reader = FraudScorer.from_run(folder, serving_config(run), feature_store=fs_config).source.reader
    replay = run.replay()
    pairs = [
        *zip(replay["CUSTOMER_ID"].head(30), replay["TERMINAL_ID"].head(30), strict=True),
        (10**9, 10**9),
    ]
    found = sum(assert_read_matches_feast(reader, int(card), int(term)) for card, term in pairs)
    assert found >= 25


@pytest.fixture()
def pg_table():
    import psycopg2

    table = f"audit_serving_{uuid.uuid4().hex[:10]}"
    yield table
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


def test_postgres_audit_log_keeps_one_row_per_decision(run, pg_table):
    from level4_fraud.serving.audit import AuditLog
    from level4_fraud.serving.scorer import FraudScorer
    from level4_fraud.serving.service import ScoringService

    cfg = serving_config(run)
    audit = AuditLog.open(PG_URL, b"k" * 32, table=pg_table)
    service = ScoringService(FraudScorer.from_run(run.run_dir, cfg), audit)
    try:
        txs = [TransactionIn.model_validate(payload(r)) for _, r in run.replay().head(20).iterrows()]
        first = [service.decide(tx) for tx in txs]
        again = [service.decide(tx) for tx in txs]
        assert not any(d.replayed for d in first) and all(d.replayed for d in again)
        assert [d.model_dump(exclude={"replayed"}) for d in again] == [
            d.model_dump(exclude={"replayed"}) for d in first
        ]
        assert audit.count() == len(txs)
    finally:
        service.close()


def test_a_scorer_on_the_redis_card_ledger_decides_as_the_in_process_one(run):
    """``serving.ledger_url`` moves the card state to Redis: same inputs, scores and decisions
    over a replayed day, each payment recorded after its decision as the service does."""
    from level4_fraud.serving.redis_ledger import RedisCardLedger
    from level4_fraud.serving.scorer import FraudScorer

    version = f"ledger-test-{uuid.uuid4().hex[:10]}"
    shared = FraudScorer.from_run(
        run.run_dir, serving_config(run, ledger_url=REDIS_URL), model_version=version
    )
    local = FraudScorer.from_run(run.run_dir, serving_config(run), model_version=version)
    assert isinstance(shared.ledger, RedisCardLedger)
    try:
        assert shared.describe()["cards_in_state"] == local.describe()["cards_in_state"] > 0
        for _, row in run.replay().head(80).iterrows():
            tx = TransactionIn.model_validate(payload(row))
            a, b = shared.score(tx), local.score(tx)
            assert a.decision == b.decision and a.flags == b.flags
            assert a.score == pytest.approx(b.score, abs=1e-6)
            shared.observe(tx)
            local.observe(tx)
    finally:
        shared.ledger.clear()  # type: ignore[attr-defined]
