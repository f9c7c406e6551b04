"""Every view's rows from Feast's SQLite online store in one query, as Feast's provider returns them.

Feast's `SqliteOnlineStore.online_read` asks one view per call: a scoring request that reads five
views pays five statements, five key serialisations and the conversion of every stored feature
of each row (it parses all of them, whatever was asked). `SqliteViews` asks the same tables in one
``UNION ALL`` statement built once, serialises each entity key once, and parses only the features
asked. It returns what the provider returns — per view ``(timestamp, {feature: ValueProto})``, or
``(None, None)`` for an entity the view does not hold — from the same tables, keys and timestamp
conversion (Feast's own helpers), so `online.FeastOnlineReader` reads the same values either way
(the equality is tested against the provider in ``tests/test_serving_scorer.py``).

This is the SQLite twin of the reader's Redis pipeline (`FeastOnlineReader._read_redis`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id, _table_id
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

Row = tuple[datetime | None, dict[str, Any] | None]


def sqlite_store(provider: Any) -> SqliteOnlineStore | None:
    """The provider's SQLite online store (None: another online store)."""
    store = getattr(provider, "online_store", None)
    return store if isinstance(store, SqliteOnlineStore) else None


class SqliteViews:
    """One statement reading several feature views of one SQLite online store.

    Args:
        store: The provider's `SqliteOnlineStore`.
        config: Feast's repo config.
        views: Per view, ``(feature view, features asked)``; `read` answers in this order.
    """

    def __init__(
        self, store: SqliteOnlineStore, config: Any, views: Sequence[tuple[Any, Sequence[str]]]
    ) -> None:
        self.store = store
        self.config = config
        self.wanted = [frozenset(names) for _, names in views]
        versioning = config.registry.enable_online_feature_view_versioning
        # The "[timestamp]" column name makes sqlite3 apply Feast's registered converter (the
        # declared type of a compound SELECT's column is not always passed on).
        self.sql = " UNION ALL ".join(
            f'SELECT {i}, feature_name, value, event_ts AS "event_ts [timestamp]" '
            f"FROM {_quote_id(_table_id(config.project, fv, versioning))} WHERE entity_key = ?"
            for i, (fv, _) in enumerate(views)
        )
        self.version = config.entity_key_serialization_version

    def read(self, keys: Sequence[Any]) -> list[Row]:
        """Per view, its row for the entity key at the same position in `keys` (one per view).

        Raises:
            sqlite3.Error: The database could not be read.
        """
        serialized: dict[int, bytes] = {}
        params = []
        for key in keys:
            # The card's and the terminal's keys each serve several views: serialise each once.
            if id(key) not in serialized:
                serialized[id(key)] = serialize_entity_key(key, entity_key_serialization_version=self.version)
            params.append(serialized[id(key)])
        conn = self.store._get_conn(self.config)
        rows: list[dict[str, Any]] = [{} for _ in keys]
        stamps: list[datetime | None] = [None] * len(keys)
        for view, name, value, ts in conn.execute(self.sql, params).fetchall():
            stamps[view] = ts  # Feast keeps the last row's
            if name in self.wanted[view]:
                proto = ValueProto()
                proto.ParseFromString(value)
                rows[view][name] = proto
        # A view with rows but none of the asked features still holds the entity, as in Feast.
        return [
            (_utc(ts), row) if ts is not None else (None, None) for ts, row in zip(stamps, rows, strict=True)
        ]


def _utc(ts: datetime) -> datetime:
    """Feast's reading of a stored timestamp: naive values are taken as UTC."""
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
