"""Feast's Ray compute engine with point-in-time materialisation (workaround for feast 0.67).

Why this exists (see README_FEAST.md): with ``batch_engine: ray.engine`` feast 0.67 materialises
a feature view through a DAG whose filter node applies the view's TTL against the wall clock
(``datetime.now() - ttl``) whenever no entity timestamps are present, which is always the case
when materialising. Every row older than ``now - ttl`` is dropped before the write, so a backfill
of historical data (the Handbook's 2018 transactions, any replay) writes nothing; the job still
reports success because the write step logs and swallows errors and an empty dataset is no error.
Two more details matter for correctness: the materialisation dedup is per block (two blocks of
one entity can land in any order, and SQLite's upsert keeps the last write, not the newest
event), and write failures are logged but not raised.

`PointInTimeRayComputeEngine` is the stock engine with three nodes replaced, for
materialisation only (historical retrieval is untouched):

- TTL is measured from the materialisation's ``end_date``: the online store after
  ``materialize(start, end)`` holds what a point-in-time lookup at ``end`` would return;
- the newest row per entity is chosen over the whole dataset (a Ray groupby), not per block;
- a failing write raises, so the job ends in ERROR and ``FeatureStore.materialize`` raises.

Select it with ``batch_engine: {type: level4_fraud.feature_repo.ray_engine.PointInTimeRayComputeEngine}``
(`level4_fraud.feature_store` does this for ``batch_engine="ray"``); every other option of
``ray.engine`` (``ray_address``, ``max_workers``, ``write_concurrency``...) applies unchanged.
The per-batch functions are closures, which Ray pickles by value: cluster workers need Feast,
not this package.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.common.serde import SerializedArtifacts
from feast.infra.compute_engines.dag.context import ExecutionContext
from feast.infra.compute_engines.dag.model import DAGFormat
from feast.infra.compute_engines.dag.node import DAGNode
from feast.infra.compute_engines.dag.plan import ExecutionPlan
from feast.infra.compute_engines.dag.value import DAGValue
from feast.infra.compute_engines.ray.compute import RayComputeEngine
from feast.infra.compute_engines.ray.config import RayComputeEngineConfig
from feast.infra.compute_engines.ray.feature_builder import RayFeatureBuilder
from feast.infra.compute_engines.ray.job import RayMaterializationJob
from feast.infra.compute_engines.ray.nodes import RayWriteNode
from feast.infra.registry.base_registry import BaseRegistry
from feast.utils import _convert_arrow_to_proto

logger = logging.getLogger(__name__)

ENGINE_TYPE = "level4_fraud.feature_repo.ray_engine.PointInTimeRayComputeEngine"


class PointInTimeRayComputeEngineConfig(RayComputeEngineConfig):
    """``ray.engine``'s options; only the type differs (Feast finds the class by this name)."""

    type: Literal["level4_fraud.feature_repo.ray_engine.PointInTimeRayComputeEngine"] = ENGINE_TYPE  # type: ignore[assignment]


class _TtlAtEndFilterNode(DAGNode):
    """Keep rows whose timestamp is within the view's TTL of the materialisation's end."""

    def __init__(
        self,
        name: str,
        *,
        timestamp_column: str,
        ttl: timedelta | None,
        end_time: datetime,
        filter_condition: str | None,
    ) -> None:
        super().__init__(name)
        self.timestamp_column = timestamp_column
        self.ttl = ttl
        self.end_time = end_time
        self.filter_condition = filter_condition

    def execute(self, context: ExecutionContext) -> DAGValue:
        value = self.get_single_input_value(context)
        value.assert_format(DAGFormat.RAY)
        ts_col = self.timestamp_column
        # ttl None or 0 means "never expires" in Feast.
        lower = pd.Timestamp(self.end_time - self.ttl) if self.ttl else None
        if lower is not None and lower.tzinfo is None:
            lower = lower.tz_localize("UTC")
        condition = self.filter_condition

        def keep(batch: pd.DataFrame) -> pd.DataFrame:
            if batch.empty:
                return batch
            if lower is not None:
                ts = pd.to_datetime(batch[ts_col], utc=True)
                batch = batch[(ts >= lower).to_numpy()]
            if condition:
                batch = batch.query(condition)
            return batch

        data = value.data.map_batches(keep, batch_format="pandas")
        return DAGValue(data=data, format=DAGFormat.RAY, metadata={"filtered": True, "ttl_from": "end_date"})


class _LatestPerEntityNode(DAGNode):
    """The newest row of each entity over the whole dataset (a shuffle, not a per-block pass)."""

    def __init__(self, name: str, *, join_keys: list[str], order_by: list[str]) -> None:
        super().__init__(name)
        self.join_keys = join_keys
        self.order_by = order_by

    def execute(self, context: ExecutionContext) -> DAGValue:
        value = self.get_single_input_value(context)
        value.assert_format(DAGFormat.RAY)
        keys, order = list(self.join_keys), list(self.order_by)

        def newest_in_block(block: pd.DataFrame) -> pd.DataFrame:
            # Shrinks each block before the shuffle; the groupby below settles ties across blocks.
            if block.empty:
                return block
            return block.sort_values(order, kind="mergesort").drop_duplicates(keys, keep="last")

        def newest(group: pd.DataFrame) -> pd.DataFrame:
            return group.sort_values(order, kind="mergesort").tail(1)

        data = value.data.map_batches(newest_in_block, batch_format="pandas")
        data = data.groupby(keys).map_groups(newest, batch_format="pandas")
        return DAGValue(data=data, format=DAGFormat.RAY, metadata={"deduped": True})


class _StrictRayWriteNode(RayWriteNode):
    """`RayWriteNode` that raises when a write fails and counts the rows it wrote.

    The stock node wraps its batch function in ``safe_batch_processor`` and calls
    ``write_to_online_store``, both of which log an exception and carry on.
    """

    def execute(self, context: ExecutionContext) -> DAGValue:
        value = self.get_single_input_value(context)
        value.assert_format(DAGFormat.RAY)
        artifacts = SerializedArtifacts.serialize(
            feature_view=self.feature_view, repo_config=context.repo_config
        )

        def write(batch: pd.DataFrame) -> pd.DataFrame:
            if batch.empty:
                return batch
            view, online_store, offline_store, repo_config = artifacts.unserialize()
            table = pa.Table.from_pandas(batch, preserve_index=False).combine_chunks()
            if getattr(view, "online", False):
                join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
                rows = _convert_arrow_to_proto(table, view, join_keys)
                if rows:
                    online_store.online_write_batch(
                        config=repo_config, table=view, data=rows, progress=lambda _n: None
                    )
            if getattr(view, "offline", False):
                offline_store.offline_write_batch(
                    config=repo_config, feature_view=view, table=table, progress=lambda _n: None
                )
            return batch

        cfg = self.config
        concurrency = 1  # SQLite is one file: one writer unless configured otherwise.
        if cfg is not None and cfg.write_concurrency is not None:
            concurrency = cfg.write_concurrency
        elif cfg is not None and cfg.max_workers is not None:
            concurrency = cfg.max_workers
        written = value.data.map_batches(write, batch_format="pandas", concurrency=concurrency)
        written = written.materialize()
        rows = written.count()
        logger.info("materialised %d rows of %s", rows, self.feature_view.name)
        return DAGValue(
            data=written,
            format=DAGFormat.RAY,
            metadata={"written": True, "feature_view": self.feature_view.name, "rows_written": rows},
        )


class _PointInTimeRayFeatureBuilder(RayFeatureBuilder):
    """Ray feature builder whose materialisation plan uses the nodes above."""

    def build_filter_node(self, view: Any, input_node: DAGNode) -> DAGNode:
        end_time = self.task.end_time
        if not self.is_materialization or end_time is None:
            return super().build_filter_node(view, input_node)
        node = _TtlAtEndFilterNode(
            "filter",
            timestamp_column=self.get_column_info(view).timestamp_column,
            ttl=getattr(view, "ttl", None),
            end_time=end_time,
            filter_condition=getattr(view, "filter", None),
        )
        node.add_input(input_node)
        self.nodes.append(node)
        return node

    def build_dedup_node(self, view: Any, input_node: DAGNode) -> DAGNode:
        if not self.is_materialization:
            return super().build_dedup_node(view, input_node)
        info = self.get_column_info(view)
        order = [info.timestamp_column]
        if info.created_timestamp_column:
            order.append(info.created_timestamp_column)
        node = _LatestPerEntityNode("dedup", join_keys=info.join_keys_columns, order_by=order)
        node.add_input(input_node)
        self.nodes.append(node)
        return node

    def _build_materialization_plan(self) -> ExecutionPlan:
        plan = super()._build_materialization_plan()
        for node in plan.nodes:
            # The stock builder instantiates RayWriteNode directly; same attributes, strict execute.
            if type(node) is RayWriteNode:
                node.__class__ = _StrictRayWriteNode
        return plan


class PointInTimeRayComputeEngine(RayComputeEngine):
    """Feast's Ray compute engine, materialising point in time (see the module docstring)."""

    def _materialize_one(
        self,
        registry: BaseRegistry,
        task: MaterializationTask,
        from_offline_store: bool = False,
        **kwargs: Any,
    ) -> MaterializationJob:
        if from_offline_store:
            return super()._materialize_one(registry, task, from_offline_store=True, **kwargs)
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            context = self.get_execution_context(registry, task)
            builder = _PointInTimeRayFeatureBuilder(registry, task.feature_view, task, self.config)
            result = builder.build().execute(context)
        except Exception as exc:  # reported through the job: FeatureStore.materialize raises it
            logger.error("materialisation of %s failed: %s", task.feature_view.name, exc)
            return RayMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=exc)
        return RayMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED, result=result)
