"""Level 4's Feast feature store for one run folder: configure, apply, materialise, read, push.

The definitions live in ``level4_fraud/feature_repo/`` (entities, sources, views, on-demand
views, services). This module gives them a home in a run folder::

    RUN/feature_store/
        feature_store.yaml     rendered from feature_repo/feature_store.yaml (for the Feast CLI)
        data/*.parquet         the batch sources (card and terminal windows, card activity, profiles)
        registry.db            Feast's registry (a local file)
        online.db              the SQLite online store (unless Redis is configured)

and wraps Feast's API in the calls the level needs:

>>> fs = FraudFeatureStore(run_dir, FeatureStoreConfig())
>>> fs.write_sources(**sources_from_transactions(tx, customers=customers, terminals=terminals))
>>> fs.apply()
>>> train = fs.training_set(entity_frame(tx))            # point in time, get_historical_features
>>> fs.materialize(start, end)                            # offline -> online
>>> fs.online_features([{"CUSTOMER_ID": 1, "TERMINAL_ID": 7, "TX_AMOUNT": 12.0, "TX_DATETIME": now}])
>>> fs.push(card_activity_rows(new_tx))                   # streaming update of the online store

Point in time: a training row at time t sees only rows with ``event_timestamp <= t`` and younger
than the view's TTL. `entity_frame` asks as of one microsecond before each transaction (the
moment of authorisation, before the transaction is recorded), so a card's own transaction never
counts as its "previous" one.

Scale-out: ``offline_store="ray"`` and ``batch_engine="ray"`` run retrieval and materialisation
on Ray (local by default, ``ray_address`` joins a cluster); see README_FEAST.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from level4_fraud.feature_repo import data_sources as ds
from level4_fraud.feature_repo.feature_views import (
    CARD_WINDOW_FEATURES,
    LAST_TX_AMOUNT,
    LAST_TX_EPOCH_S,
    TERMINAL_VIEW_FEATURES,
    TERMINAL_WINDOW_FEATURES,
    WINDOWS_DAYS,
)
from level4_fraud.features import (
    DEFAULT_DELAY_DAYS,
    TERMINAL_FRAUD_TIMES,
    TERMINAL_RECENCY_FEATURES,
    recency_days,
    recency_fill,
)
from level4_fraud.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    X_CUSTOMER,
    X_TERMINAL,
    Y_CUSTOMER,
    Y_TERMINAL,
)
from shared.atomic import atomic_path, atomic_write_text
from shared.errors import ConfigError, InputFileError, SchemaError

EVENT_TIMESTAMP = ds.EVENT_TIMESTAMP
TEMPLATE = Path(__file__).resolve().parent / "feature_repo" / "feature_store.yaml"
RAY_ENGINE_TYPE = "level4_fraud.feature_repo.ray_engine.PointInTimeRayComputeEngine"
DEFAULT_SERVICE = "fraud_features_v1"
GEO_SERVICE = "fraud_features_geo_v1"
PUSH_SOURCE = "card_activity_push"
# Authorisation happens before the transaction is recorded: ask as of just before it.
BEFORE_EVENT = pd.Timedelta(microseconds=1)
_QUERY_ROW = "__query_row__"

_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


class FeatureStoreConfig(BaseModel):
    """Where the feature store keeps its data and what runs it.

    Quick and full profiles use the same defaults (SQLite online store, Parquet files read by
    Feast's file/dask offline store, in-process materialisation). Redis is used when
    ``redis_url`` is set; Ray when ``offline_store``/``batch_engine`` say "ray".

    Attributes:
        project: Feast project name (letters, digits, underscores); also the Redis key namespace.
        online_store: "sqlite" (a file in the run folder) or "redis".
        redis_url: ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS) or Feast's own
            ``host:port[,db=N,password=...]``. Setting it selects Redis unless
            ``online_store`` is given explicitly.
        redis_key_ttl_seconds: Expire online keys after this many seconds (None: never).
        offline_store: "file" (Feast's Parquet/dask store) or "ray" (Feast's Ray offline store).
        batch_engine: "local" (in process) or "ray" (Feast's Ray compute engine, point-in-time
            variant `level4_fraud.feature_repo.ray_engine.PointInTimeRayComputeEngine`).
        ray_address: Address of a Ray cluster (``ray://host:10001`` or ``host:6379``); None runs
            a local Ray, or uses the one this process already started.
        ray_max_workers: Ray workers for the engine's transformations (None: Ray decides).
        ray_write_concurrency: Parallel online-store writers (None: 1 for SQLite, 4 for Redis).
    """

    model_config = ConfigDict(extra="forbid")

    project: str = "level4_fraud"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str | None = None
    redis_key_ttl_seconds: int | None = Field(default=None, gt=0)
    offline_store: Literal["file", "ray"] = "file"
    batch_engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_max_workers: int | None = Field(default=None, gt=0)
    ray_write_concurrency: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> FeatureStoreConfig:
        if not _PROJECT_RE.match(self.project):
            raise ValueError(f"project must be letters, digits and underscores, got {self.project!r}")
        if self.redis_url and "online_store" not in self.model_fields_set:
            self.online_store = "redis"
        if self.online_store == "redis" and not self.redis_url:
            raise ValueError("online_store 'redis' needs redis_url")
        if self.redis_url:
            redis_connection_string(self.redis_url)  # fails early on a malformed URL
        return self


def redis_connection_string(url: str) -> str:
    """Feast's Redis connection string (``host:port,db=N,password=...,ssl=true``) from a URL.

    A string without a scheme is taken as already in Feast's form.

    Raises:
        ValueError: The URL has no host or a port that is not a number.
    """
    if "://" not in url:
        if not url.split(",", 1)[0]:
            raise ValueError(f"redis_url has no host: {url!r}")
        return url
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss"} or not parsed.hostname:
        raise ValueError(f"redis_url must look like redis://host:port/db, got {url!r}")
    try:
        port = parsed.port or 6379
    except ValueError as exc:
        raise ValueError(f"redis_url has a bad port: {url!r}") from exc
    parts = [f"{parsed.hostname}:{port}"]
    db = parsed.path.strip("/")
    if db:
        if not db.isdigit():
            raise ValueError(f"redis_url database must be a number, got {db!r}")
        parts.append(f"db={db}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


class FeatureStoreLayout:
    """Paths of a run's feature store folder (``RUN/feature_store``)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.root = self.run_dir / "feature_store"
        self.yaml = self.root / "feature_store.yaml"
        self.registry = self.root / "registry.db"
        self.online_db = self.root / "online.db"
        self.ray_storage = self.root / "ray_storage"

    def source(self, relative: str) -> Path:
        """Absolute path of a batch source given as in data_sources.py (``data/x.parquet``)."""
        return self.root / relative


def render_repo_config(layout: FeatureStoreLayout, cfg: FeatureStoreConfig) -> dict[str, Any]:
    """The ``feature_store.yaml`` of a run: the template with the configured stores.

    Paths are relative to the feature store folder (Feast's ``repo_path``), so a run folder can be
    moved; the Ray offline store's staging folder is absolute because Ray workers resolve it.
    """
    conf: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    conf["project"] = cfg.project
    conf["registry"] = {"registry_type": "file", "path": layout.registry.name}
    if cfg.online_store == "redis":
        online: dict[str, Any] = {
            "type": "redis",
            "connection_string": redis_connection_string(cfg.redis_url or ""),
        }
        if cfg.redis_key_ttl_seconds:
            online["key_ttl_seconds"] = cfg.redis_key_ttl_seconds
        conf["online_store"] = online
    else:
        conf["online_store"] = {"type": "sqlite", "path": layout.online_db.name}
    if cfg.offline_store == "ray":
        offline: dict[str, Any] = {"type": "ray", "storage_path": str(layout.ray_storage)}
        if cfg.ray_address:
            offline["ray_address"] = cfg.ray_address
        conf["offline_store"] = offline
    else:
        conf["offline_store"] = {"type": "file"}
    if cfg.batch_engine == "ray":
        engine: dict[str, Any] = {"type": RAY_ENGINE_TYPE}
        if cfg.ray_address:
            engine["ray_address"] = cfg.ray_address
        if cfg.ray_max_workers:
            engine["max_workers"] = cfg.ray_max_workers
        default_writers = 4 if cfg.online_store == "redis" else 1
        engine["write_concurrency"] = cfg.ray_write_concurrency or default_writers
        conf["batch_engine"] = engine
    else:
        conf["batch_engine"] = "local"
    return conf


# --- frames for the batch sources ----------------------------------------------------------------


def _utc(values: Any) -> pd.Series:
    """Datetimes as a UTC-aware nanosecond Series with a fresh index (naive ones are UTC)."""
    if isinstance(values, pd.Series):
        values = values.array
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[ns, UTC]")


def _epoch_seconds(when: pd.Series) -> Any:
    """UTC epoch seconds (float) of aware datetimes."""
    return (when - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{what}: missing column(s) {', '.join(missing)}")


def card_activity_rows(tx: pd.DataFrame) -> pd.DataFrame:
    """The card-activity source (or a push) from transactions: one row per transaction.

    Each row says "as of ``event_timestamp`` this card's last transaction was at
    ``LAST_TX_EPOCH_S`` for ``LAST_TX_AMOUNT``".

    Args:
        tx: Transactions with ``CUSTOMER_ID, TX_DATETIME, TX_AMOUNT``.
    """
    _require(tx, (CUSTOMER_ID, TX_DATETIME, TX_AMOUNT), "transactions")
    when = _utc(tx[TX_DATETIME])
    return pd.DataFrame(
        {
            CUSTOMER_ID: tx[CUSTOMER_ID].to_numpy(dtype="int64"),
            EVENT_TIMESTAMP: when.array,
            LAST_TX_EPOCH_S: _epoch_seconds(when),
            LAST_TX_AMOUNT: tx[TX_AMOUNT].to_numpy(dtype="float64"),
        }
    )


def entity_frame(tx: pd.DataFrame) -> pd.DataFrame:
    """The entity frame of a training set: one row per transaction, asked just before it.

    Columns: ``TRANSACTION_ID`` (when present), ``CUSTOMER_ID, TERMINAL_ID`` (entities),
    ``TX_AMOUNT, TX_DATETIME`` (request fields of the on-demand view) and ``event_timestamp`` =
    ``TX_DATETIME`` minus one microsecond, UTC.
    """
    _require(tx, (CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_DATETIME), "transactions")
    when = _utc(tx[TX_DATETIME])
    out = pd.DataFrame(index=tx.index)
    if TRANSACTION_ID in tx.columns:
        out[TRANSACTION_ID] = tx[TRANSACTION_ID].to_numpy()
    out[CUSTOMER_ID] = tx[CUSTOMER_ID].to_numpy(dtype="int64")
    out[TERMINAL_ID] = tx[TERMINAL_ID].to_numpy(dtype="int64")
    out[TX_AMOUNT] = tx[TX_AMOUNT].to_numpy(dtype="float64")
    out[TX_DATETIME] = when.array
    out[EVENT_TIMESTAMP] = (when - BEFORE_EVENT).array
    return out


def profile_rows(table: pd.DataFrame, key: str, x: str, y: str, since: datetime) -> pd.DataFrame:
    """A profile source (coordinates) from a simulator side table, valid from `since`."""
    _require(table, (key, x, y), f"{key} table")
    return pd.DataFrame(
        {
            key: table[key].to_numpy(dtype="int64"),
            x: table[x].to_numpy(dtype="float64"),
            y: table[y].to_numpy(dtype="float64"),
            EVENT_TIMESTAMP: _utc([since] * len(table)).array,
        }
    )


def sources_from_transactions(
    tx: pd.DataFrame,
    *,
    customers: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    delay_days: int | None = None,
    until: Any = None,
) -> dict[str, pd.DataFrame]:
    """Every batch source of the repository from transactions (and side tables when given).

    Window snapshots come from `level4_fraud.features.daily_snapshots` (the windows of
    ``feature_views.WINDOWS_DAYS``, terminal risk over the window delayed by `delay_days`,
    late `labels` used only from their ``LABEL_AVAILABLE_FROM``); the card activity is one row
    per transaction; profiles (coordinates) are valid from the first transaction's midnight.

    Returns:
        Frames by source name, ready for `FraudFeatureStore.write_sources`.
    """
    from level4_fraud import features
    from level4_fraud.feature_repo.feature_views import WINDOWS_DAYS

    delay = features.DEFAULT_DELAY_DAYS if delay_days is None else delay_days
    cards, terms = features.daily_snapshots(
        tx, windows=WINDOWS_DAYS, delay_days=delay, labels=labels, until=until
    )
    out = {"card_windows": cards, "terminal_windows": terms, "card_activity": card_activity_rows(tx)}
    if customers is not None and terminals is not None:
        since = _utc(tx[TX_DATETIME]).min().floor("D").to_pydatetime()
        out["card_profile"] = profile_rows(customers, CUSTOMER_ID, X_CUSTOMER, Y_CUSTOMER, since)
        out["terminal_profile"] = profile_rows(terminals, TERMINAL_ID, X_TERMINAL, Y_TERMINAL, since)
    return out


# Columns each batch source must hold (beyond event_timestamp).
SOURCE_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "card_windows": (ds.CARD_WINDOWS_FILE, (CUSTOMER_ID, *CARD_WINDOW_FEATURES)),
    "terminal_windows": (ds.TERMINAL_WINDOWS_FILE, (TERMINAL_ID, *TERMINAL_VIEW_FEATURES)),
    "card_activity": (ds.CARD_ACTIVITY_FILE, (CUSTOMER_ID, LAST_TX_EPOCH_S, LAST_TX_AMOUNT)),
    "card_profile": (ds.CARD_PROFILE_FILE, (CUSTOMER_ID, X_CUSTOMER, Y_CUSTOMER)),
    "terminal_profile": (ds.TERMINAL_PROFILE_FILE, (TERMINAL_ID, X_TERMINAL, Y_TERMINAL)),
}
REQUIRED_SOURCES = ("card_windows", "terminal_windows", "card_activity")
PROFILE_SOURCES = ("card_profile", "terminal_profile")
_INT_COLUMNS = {CUSTOMER_ID, TERMINAL_ID} | {
    c for c in (*CARD_WINDOW_FEATURES, *TERMINAL_WINDOW_FEATURES) if "_NB_TX_" in c
}


def _typed_source(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Only the source's columns, with the dtypes its feature view declares, UTC timestamps."""
    _, columns = SOURCE_COLUMNS[name]
    _require(df, (*columns, EVENT_TIMESTAMP), name)
    out = pd.DataFrame({EVENT_TIMESTAMP: _utc(df[EVENT_TIMESTAMP]).array})
    for col in columns:
        values = df[col].to_numpy()
        if col in _INT_COLUMNS:
            series = pd.Series(values)
            if series.isna().any():
                raise SchemaError(f"{name}: column {col} has missing values")
            out[col] = series.to_numpy(dtype="int64")
        else:
            out[col] = pd.to_numeric(pd.Series(values), errors="raise").to_numpy(dtype="float64")
    return out


# --- the store ---------------------------------------------------------------------------------


class FraudFeatureStore:
    """The feature store of one run folder (see the module docstring).

    Args:
        run_dir: The run folder; the store lives in ``run_dir/feature_store``.
        config: Stores and engines; SQLite + Parquet + in-process by default.
    """

    def __init__(self, run_dir: str | Path, config: FeatureStoreConfig | None = None) -> None:
        self.config = config or FeatureStoreConfig()
        self.layout = FeatureStoreLayout(run_dir)

    # -- configuration

    def repo_config_dict(self) -> dict[str, Any]:
        """The rendered ``feature_store.yaml`` content for this run."""
        return render_repo_config(self.layout, self.config)

    def write_config(self) -> Path:
        """Write ``feature_store.yaml`` into the run's feature store folder (for the Feast CLI)."""
        text = yaml.safe_dump(self.repo_config_dict(), sort_keys=False)
        return atomic_write_text(self.layout.yaml, text)

    @cached_property
    def store(self) -> Any:
        """The `feast.FeatureStore` of this run (created on first use)."""
        from feast import FeatureStore, RepoConfig

        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        try:
            repo_config = RepoConfig(repo_path=self.layout.root, **self.repo_config_dict())
        except Exception as exc:  # pydantic's message names the bad field
            raise ConfigError(f"feature store config: {exc}".splitlines()[0]) from exc
        # Both: Feast resolves the registry against the store's repo_path (cwd when not given)
        # and the SQLite file against the config's.
        return FeatureStore(repo_path=str(self.layout.root), config=repo_config)

    # -- data

    def write_sources(self, **frames: pd.DataFrame | None) -> list[Path]:
        """Write batch sources as Parquet (atomically) under ``feature_store/data``.

        Args:
            **frames: By source name (`SOURCE_COLUMNS`): ``card_windows``, ``terminal_windows``,
                ``card_activity``, ``card_profile``, ``terminal_profile``; each with its
                columns and ``event_timestamp``. None entries are skipped.

        Returns:
            The files written.

        Raises:
            SchemaError: An unknown source name, or a frame lacking a column.
        """
        written = []
        for name, df in frames.items():
            if df is None:
                continue
            if name not in SOURCE_COLUMNS:
                raise SchemaError(f"unknown feature source {name!r}; known: {', '.join(SOURCE_COLUMNS)}")
            path = self.layout.source(SOURCE_COLUMNS[name][0])
            typed = _typed_source(name, df)
            with atomic_path(path) as tmp:
                typed.to_parquet(tmp, index=False)
            written.append(path)
        return written

    def has_source(self, name: str) -> bool:
        """Whether the batch source `name` has been written."""
        return self.layout.source(SOURCE_COLUMNS[name][0]).is_file()

    @property
    def has_geo(self) -> bool:
        """Whether customer and terminal coordinates were written (distance from home served)."""
        return all(self.has_source(n) for n in PROFILE_SOURCES)

    # -- Feast operations

    def definitions(self) -> list[Any]:
        """The Feast objects this run registers (profiles and geo only with coordinates)."""
        from level4_fraud.feature_repo import entities, feature_services, feature_views, on_demand

        objects: list[Any] = [entities.card, entities.terminal, ds.card_activity_push]
        objects += list(feature_views.BATCH_VIEWS)
        objects += [on_demand.transaction_context, feature_services.fraud_features_v1]
        if self.has_geo:
            objects += list(feature_views.PROFILE_VIEWS)
            objects += [on_demand.geo_context, feature_services.fraud_features_geo_v1]
        return objects

    def apply(self) -> list[str]:
        """Register the definitions in the run's registry and create the online tables.

        Returns:
            Names of the registered feature views, on-demand views and services.

        Raises:
            InputFileError: A required batch source has not been written yet.
        """
        missing = [n for n in REQUIRED_SOURCES if not self.has_source(n)]
        if missing:
            raise InputFileError(
                f"feature store {self.layout.root}: write the source(s) {', '.join(missing)} before apply"
            )
        objects = self.definitions()
        self.store.apply(objects)
        return [o.name for o in objects if not type(o).__name__.endswith(("Entity", "Source"))]

    @property
    def default_service(self) -> str:
        """The geo service when coordinates exist, else the base one."""
        return GEO_SERVICE if self.has_geo else DEFAULT_SERVICE

    def materialize(self, start: datetime, end: datetime, views: list[str] | None = None) -> None:
        """Load the newest row per entity with ``start <= event_timestamp < end`` into the online store.

        Args:
            start: Start of the interval (naive datetimes are UTC).
            end: End of the interval; with the Ray engine, TTL is measured from here.
            views: Feature view names (None: every view with a batch source).
        """
        self.store.materialize(
            start_date=_utc([start]).iloc[0].to_pydatetime(),
            end_date=_utc([end]).iloc[0].to_pydatetime(),
            feature_views=views,
        )

    def feature_refs(self, service: str | None = None) -> list[str]:
        """``view:feature`` references of a feature service (default: `default_service`)."""
        svc = self.store.get_feature_service(service or self.default_service)
        return [f"{p.name_to_use()}:{f.name}" for p in svc.feature_view_projections for f in p.features]

    def training_set(
        self,
        entity_df: pd.DataFrame,
        *,
        service: str | None = None,
        features: list[str] | None = None,
        delay_days: int | None = None,
    ) -> pd.DataFrame:
        """Point-in-time features for each row of `entity_df` (`entity_frame`), in its order.

        Batch features come from Feast's ``get_historical_features``, asked once per feature
        view with the unique ``(entity key, event_timestamp)`` pairs and joined back;
        on-demand features are then computed by Feast's own transformation of each on-demand
        view. Asking this way works around two defects of feast 0.67's file (dask) offline
        store, which otherwise (a) drops an entity row whose entity has rows but none valid at
        its time, instead of returning nulls, and with it that row's features from every other
        view, and (b) merges entity rows that share keys and timestamp (feast-dev/feast#6787).
        The result has exactly one row per input row.

        The terminal view stores the times of the terminal's latest and earliest known fraud
        (`features.TERMINAL_FRAUD_TIMES`), not the days since them that the models read: days
        counted at the snapshot's midnight would be up to a day stale at the transaction. When
        both times are in the result, the models' `features.TERMINAL_RECENCY_FEATURES` are
        added, measured from each row's ``TX_DATETIME`` (``event_timestamp`` without it) with
        `features.recency_days` exactly as serving does (`serving.online`), so a model trained
        here reads the columns and values it is served. The times stay too (what the online
        store holds, for skew checks); a model selects its inputs by name.

        Args:
            entity_df: ``event_timestamp``, the entity keys (``CUSTOMER_ID``, ``TERMINAL_ID``)
                and the request fields ``TX_AMOUNT, TX_DATETIME`` when on-demand features are
                asked; other columns (labels, ids) pass through.
            service: A feature service name (default: `default_service`).
            features: ``view:feature`` references instead of a service.
            delay_days: The label delay the terminal source was written with
                (`sources_from_transactions`; default: `features.DEFAULT_DELAY_DAYS`). With the
                store's windows (``feature_views.WINDOWS_DAYS``) it gives the recency of a
                terminal without a known fraud and its cap (`features.recency_fill`).

        Returns:
            `entity_df`'s columns followed by the features (then the terminal recency when the
            fraud times were asked), same row order and index; stored features are float64
            with NaN where nothing valid was known at that time.
        """
        _require(entity_df, (EVENT_TIMESTAMP,), "entity frame")
        refs = features if features is not None else self.feature_refs(service)
        frame = entity_df.reset_index(drop=True).copy()
        frame[EVENT_TIMESTAMP] = _utc(frame[EVENT_TIMESTAMP]).array

        by_view: dict[str, list[str]] = {}
        for ref in refs:
            view, feature = ref.split(":", 1)
            by_view.setdefault(view, []).append(feature)
        registered = {o.name: o for o in self.store.list_on_demand_feature_views()}
        odfvs = {v: registered[v] for v in by_view if v in registered}
        wanted = {v: list(f) for v, f in by_view.items() if v not in odfvs}
        needed = {v: list(f) for v, f in wanted.items()}
        for odfv in odfvs.values():
            for proj in odfv.source_feature_view_projections.values():
                cols = needed.setdefault(proj.name, [])
                cols += [f.name for f in proj.features if f.name not in cols]

        # One historical query per view, on its unique (keys, timestamp) rows: a view with no
        # valid row for an entity row must give nulls there, not remove the row for every view.
        for view, feats in needed.items():
            fv = self.store.get_feature_view(view)
            keys = [e.name for e in fv.entity_columns]
            _require(frame, keys, "entity frame")
            query = frame.loc[:, [*keys, EVENT_TIMESTAMP]].drop_duplicates(ignore_index=True)
            # Matched back by a row number: the Ray store returns timestamps cut to the second.
            query[_QUERY_ROW] = np.arange(len(query))
            refs_view = [f"{view}:{f}" for f in feats]
            found = self.store.get_historical_features(entity_df=query, features=refs_view).to_df()
            found = found.loc[:, [_QUERY_ROW, *feats]].drop_duplicates(_QUERY_ROW)
            got = query.merge(found, on=_QUERY_ROW, how="left").drop(columns=[_QUERY_ROW])
            # float64 with NaN for "not known at that time", whatever the store's own types.
            got[feats] = got[feats].astype("float64")
            if self.config.offline_store == "ray" and fv.ttl:
                got = self._apply_ttl(fv, keys, got, feats)
            frame = frame.merge(got, on=[*keys, EVENT_TIMESTAMP], how="left", validate="many_to_one")

        if odfvs:
            import pyarrow as pa

            table = pa.Table.from_pandas(frame, preserve_index=False)
            for name, odfv in odfvs.items():
                out = odfv.transform_arrow(table, full_feature_names=False)
                for col in by_view[name]:
                    frame[col] = out[col].to_pandas().to_numpy()

        keep = list(entity_df.columns) + [
            r.split(":", 1)[1] for r in refs if r.split(":", 1)[1] not in entity_df.columns
        ]
        frame = frame.loc[:, list(dict.fromkeys(keep))]
        if all(c in frame.columns for c in TERMINAL_FRAUD_TIMES):
            frame = _with_recency(frame, DEFAULT_DELAY_DAYS if delay_days is None else delay_days)
        frame.index = entity_df.index
        return frame

    def _apply_ttl(self, fv: Any, keys: list[str], got: pd.DataFrame, feats: list[str]) -> pd.DataFrame:
        """Null the features of rows whose newest source row is older than the view's TTL.

        feast 0.67's Ray offline store joins with a backward as-of merge and no tolerance: it
        never applies a feature view's TTL, so it would serve a 30-day-old snapshot as current.
        The newest source timestamp at or before each entity row comes from the source's key
        and timestamp columns only.
        """
        source = fv.batch_source
        ts_col = source.timestamp_field
        path = Path(source.path)
        path = path if path.is_absolute() else self.layout.root / path
        seen = pd.read_parquet(path, columns=[*keys, ts_col]).rename(columns={ts_col: "__source_ts__"})
        seen["__source_ts__"] = _utc(seen["__source_ts__"]).array
        asked = got.loc[:, [*keys, EVENT_TIMESTAMP]].reset_index()
        newest = (
            pd.merge_asof(
                asked.sort_values(EVENT_TIMESTAMP),
                seen.sort_values("__source_ts__"),
                left_on=EVENT_TIMESTAMP,
                right_on="__source_ts__",
                by=keys,
                direction="backward",
            )
            .set_index("index")["__source_ts__"]
            .reindex(got.index)
        )
        stale = newest.isna() | (newest < got[EVENT_TIMESTAMP] - fv.ttl)
        got = got.copy()
        got.loc[stale.to_numpy(), feats] = np.nan
        return got

    def online_features(
        self,
        rows: pd.DataFrame | Iterable[Mapping[str, Any]],
        *,
        service: str | None = None,
        features: list[str] | None = None,
    ) -> pd.DataFrame:
        """Online features for requests (entities plus ``TX_AMOUNT, TX_DATETIME``), in order."""
        records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else [dict(r) for r in rows]
        refs = features
        if refs is None:
            refs = self.store.get_feature_service(service or self.default_service)
        return self.store.get_online_features(features=refs, entity_rows=records).to_df()

    def push(self, rows: pd.DataFrame, *, offline: bool = False) -> int:
        """Push card-activity rows (`card_activity_rows`) to the online store (and offline).

        The newest row per card is kept: SQLite's online store keeps the last write, not the
        newest event, so an unsorted batch could otherwise leave an older value.

        Returns:
            The number of cards updated.
        """
        from feast.data_source import PushMode

        typed = _typed_source("card_activity", rows)
        newest = typed.sort_values(EVENT_TIMESTAMP, kind="mergesort")
        newest = newest.drop_duplicates(CUSTOMER_ID, keep="last")
        if offline:
            self.store.push(PUSH_SOURCE, newest, to=PushMode.ONLINE_AND_OFFLINE)
            return len(newest)
        views, provider = self._push_targets
        for view in views:
            provider.ingest_df(view, newest)
        return len(newest)

    @cached_property
    def _push_targets(self) -> tuple[list[Any], Any]:
        """The push source's feature views and the provider that writes them, resolved once.

        ``FeatureStore.push`` looks both up in the registry on every call (deserialising every
        view and service: about three quarters of a push's time, tens of ms for a stream
        consumer's batch of a hundred cards); what it then does for an online push is the
        provider's ``ingest_df`` per view, as here. Its one other step, recomputing feature
        services marked ``precompute_online``, has nothing to do in this repository (checked
        here, so a service that starts to need it is not skipped silently). A consumer built
        before a later ``feast apply`` keeps the views it resolved, as Feast's registry cache does.
        """
        store = self.store
        services = store.list_feature_services()
        if any(getattr(svc, "precompute_online", False) for svc in services):
            raise ConfigError("a feature service precomputes online vectors: push through FeatureStore.push")
        # Feast's own resolution (the views whose stream source is the push source).
        views = list(store._fvs_for_push_source_or_raise(PUSH_SOURCE, True))
        return views, store._get_provider()

    def teardown(self) -> None:
        """Remove the online tables or keys of this project (Feast's teardown)."""
        self.store.teardown()


def _with_recency(frame: pd.DataFrame, delay_days: int) -> pd.DataFrame:
    """`frame` with the `TERMINAL_RECENCY_FEATURES` from its `TERMINAL_FRAUD_TIMES` columns.

    Measured from the transaction's own time (``TX_DATETIME``; ``event_timestamp``, one
    microsecond earlier, when the frame has none), as serving measures it from the request.
    """
    when = frame[TX_DATETIME] if TX_DATETIME in frame.columns else frame[EVENT_TIMESTAMP]
    last, first = (frame[c].to_numpy(dtype="float64") for c in TERMINAL_FRAUD_TIMES)
    fill = recency_fill(WINDOWS_DAYS, delay_days)
    days = recency_days(_epoch_seconds(_utc(when)), last, first, fill)
    out = frame.copy()
    for name in TERMINAL_RECENCY_FEATURES:
        out[name] = days[name]
    return out


def materialize_window(snapshots: pd.DataFrame) -> tuple[datetime, datetime]:
    """A ``(start, end)`` that covers every row of a source frame (end just after the newest)."""
    ts = _utc(snapshots[EVENT_TIMESTAMP])
    return ts.min().to_pydatetime(), (ts.max() + timedelta(seconds=1)).to_pydatetime()
