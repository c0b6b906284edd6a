"""One batch of inference records, applied in the consumer's transaction as one Arrow table (``records.RecordRows``
decodes it): each record flagged for unusual output (against its deployment's reference of earlier hours), staged
Parquet files registered in the manifest, metric buckets merged, flag counts per window added. Publishing the
staged files happens after the commit (``record_store.publish_pending``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Rows
from llmops.runtime import Runtime
from llmops_monitoring import anomaly_store, feedback_metrics, metrics_store, record_store, repository
from llmops_monitoring.anomalies import Detector, Reference
from llmops_monitoring.metrics import merged
from llmops_monitoring.records import SCHEMA
from llmops_monitoring.settings import MonitoringSettings


class Ingest:
    """The records consumer's batch handler, with what it keeps between batches: the detector (its PII rules built
    once) and each deployment's outlier reference (read again every ``reference_refresh_seconds``)."""

    def __init__(self, runtime: Runtime, settings: MonitoringSettings) -> None:
        self.runtime, self.settings = runtime, settings
        self.detector = Detector(settings.anomalies)
        self._references: dict[tuple[str, str], tuple[float, Reference | None]] = {}

    async def __call__(self, session: AsyncSession, rows: Rows) -> None:
        table = rows.table
        references = {}
        pairs = table.select(["project", "deployment_id"]).group_by(["project", "deployment_id"]).aggregate([])
        for project, deployment_id in zip(
            pairs["project"].to_pylist(), pairs["deployment_id"].to_pylist(), strict=True
        ):
            if deployment_id is not None:
                references[(project, deployment_id)] = await self.reference(session, project, deployment_id)
        flags = self.detector.flags_of_table(table, references)
        table = table.append_column("flags", pa.array(flags, SCHEMA.field("flags").type))
        files = await record_store.stage_table(self.runtime.store, self.settings.records_prefix, table)
        buckets = metrics_store.buckets_of_table(table)
        await record_store.register(session, files)
        await repository.index_requests(session, table)
        await feedback_metrics.settle(session, buckets)  # feedback that came before its record, counted with it
        # Rows that other workers' batches share, last: their locks are held only until the commit.
        await anomaly_store.count_table(session, table, flags, window_seconds=self.settings.anomaly_window_seconds)
        await metrics_store.merge_buckets(session, buckets)

    async def reference(self, session: AsyncSession, project: str, deployment_id: str | None) -> Reference | None:
        """The outlier fences of a deployment: quartiles of its hour buckets over the reference hours before the
        current hour (None without a deployment, or before it has history)."""
        if deployment_id is None:
            return None
        key = (project, deployment_id)
        cached = self._references.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.settings.reference_refresh_seconds:
            return cached[1]
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        buckets = await metrics_store.read_buckets(
            session,
            project=project,
            start=end - timedelta(hours=self.settings.reference_hours),
            end=end,
            resolution="hour",
            filters={"deployment_id": deployment_id},
            limit=self.settings.max_query_buckets,
        )
        total = merged(bucket for _, bucket in buckets)

        def quartiles(sketch):
            return None if sketch.count == 0 else tuple(sketch.quantile(q) for q in (0.25, 0.5, 0.75))

        reference = Reference.from_quantiles(
            length=quartiles(total.output_chars),
            latency_ms=quartiles(total.latency),
            tokens_out=quartiles(total.output_tokens_dist),
            counts={
                "length": total.output_chars.count,
                "latency_ms": total.latency.count,
                "tokens_out": total.output_tokens_dist.count,
            },
            settings=self.settings.anomalies,
        )
        self._references[key] = (time.monotonic(), reference)
        return reference
