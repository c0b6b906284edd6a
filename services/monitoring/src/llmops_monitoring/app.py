"""Composition root of the monitoring service: HTTP API (metrics, records, anomalies, drift reports, alert rules,
policies) and its consumers in one process, with the record store's publisher and maintenance loops.

``llmops-monitoring serve`` applies the migrations (as the database owner) and serves the API.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI

from llmops.bus import Consumer, make_broker
from llmops.bus.faults import is_transient
from llmops.db import Database, upgrade
from llmops.entrypoint import service_cli
from llmops.http import create_app
from llmops.logging import get_logger
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops_monitoring import (
    alerts,
    anomaly_store,
    api,
    drift_api,
    drift_service,
    feedback_metrics,
    metrics_api,
    metrics_store,
    policies,
    prometheus,
    record_store,
    repository,
    rules_api,
)
from llmops_monitoring.consumers import policies_consumer, projections_consumer, records_consumer
from llmops_monitoring.metrics import summarise
from llmops_monitoring.records_worker import RecordsWorkers
from llmops_monitoring.settings import MonitoringSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

log = get_logger(__name__)


class MonitoringService:
    """The parts of a running monitoring service, for `serve`, the demo and the tests."""

    def __init__(self, settings: MonitoringSettings | None = None) -> None:
        self.settings = settings or MonitoringSettings()
        self.store = ObjectStore(self.settings.s3)
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="monitoring"),
            store=self.store,
        )
        # ingest in worker processes, or (records_workers=0) here
        self.records_workers = RecordsWorkers(self.settings) if self.settings.records_workers else None
        self.records_consumer: Consumer | None = (
            None if self.records_workers else records_consumer(self.settings, self.runtime)
        )
        self.consumer: Consumer = projections_consumer(self.settings, self.runtime)
        self.policies_consumer: Consumer = policies_consumer(self.settings, self.runtime)
        self.app: FastAPI = create_app(
            self.runtime,
            title="llmops monitoring",
            routers=[api.router, metrics_api.router, drift_api.router, rules_api.router],
            extra_metrics=self.prometheus_text,
            # served (uvicorn runs the app's lifespan) or started without HTTP, the same work runs
            on_start=[self._started],
            on_stop=[self._stopping],
        )
        self._prometheus: tuple[float, str] = (0.0, "")
        self.app.state.settings = self.settings

    async def start(self) -> None:
        """Start without HTTP (what the app's lifespan does when it is served)."""
        await self.runtime.start()
        await self._started(self.runtime)

    async def stop(self) -> None:
        await self._stopping(self.runtime)
        await self.runtime.stop()

    async def _started(self, runtime: Runtime) -> None:
        """The records workers and the periodic work: publishing record files, maintenance, anomalies, scheduled
        drift reports, alerts."""
        if self.records_workers is not None:
            await self.records_workers.start()
        self.runtime.spawn(self._every(self.settings.publish_interval_seconds, self.publish), name="records-publish")
        if self.settings.maintenance_interval_seconds > 0:
            self.runtime.spawn(
                self._every(self.settings.maintenance_interval_seconds, self.maintain), name="records-maintenance"
            )
        self.runtime.spawn(
            self._every(self.settings.anomaly_assess_interval_seconds, self.assess_anomalies), name="anomalies-assess"
        )
        if self.settings.drift_interval_seconds > 0:
            self.runtime.spawn(
                self._every(self.settings.drift_interval_seconds, self.drift_pass), name="drift-schedule"
            )
        self.runtime.spawn(self._every(self.settings.alert_interval_seconds, self.evaluate_alerts), name="alerts")

    async def _stopping(self, runtime: Runtime) -> None:
        if self.records_workers is not None:
            await self.records_workers.stop()

    async def publish(self) -> int:
        """Copy the committed record files from staging to their final keys."""
        return await record_store.publish_pending(self.runtime.db, self.store)

    async def assess_anomalies(self) -> int:
        """Announce the unusual outputs of the windows that closed (throttled); returns how many notices."""
        async with self.runtime.db.transaction() as session:
            return await anomaly_store.assess_closed_windows(
                session,
                self.runtime,
                self.settings.anomalies,
                window_seconds=self.settings.anomaly_window_seconds,
                grace_seconds=self.settings.anomaly_grace_seconds,
            )

    async def drift_pass(self) -> int:
        """The scheduled drift reports of the window that just ended; returns how many were made."""
        return await drift_service.scheduled_pass(self.runtime, self.store, self.settings)

    async def evaluate_alerts(self) -> int:
        """Move the alert rules and budget alerts on; returns how many fired and resolved events."""
        async with self.runtime.db.transaction() as session:
            return await alerts.evaluate_rules(session, self.runtime, self.settings)

    async def prometheus_text(self) -> str:
        """The inference metrics for ``/metrics`` (read again at most every 15 seconds)."""
        made_at, text = self._prometheus
        if time.monotonic() - made_at > 15:
            async with self.runtime.db.sessions() as session:
                groups = await metrics_store.prometheus_groups(session, limit=self.settings.max_query_buckets)
            text = prometheus.render({prometheus.Group(*key): summarise([bucket]) for key, bucket in groups.items()})
            self._prometheus = (time.monotonic(), text)
        return text

    async def maintain(self) -> None:
        """Retention of old date partitions, minute buckets and drift reports, the sweep of staging files no
        transaction registered, and waiting feedback settled."""
        await record_store.apply_retention(self.runtime.db, self.store, days=self.settings.retention_days)
        async with self.runtime.db.transaction() as session:
            before = datetime.now(UTC) - timedelta(days=self.settings.minute_buckets_days)
            await metrics_store.drop_minutes_before(session, before)
            await repository.drop_requests_before(session, before)
            waited = timedelta(seconds=self.settings.cause_wait_seconds)
            await policies.drop_waiting_causes(session, datetime.now(UTC) - waited)
        await self.settle_feedback()
        await record_store.sweep_staging(
            self.runtime.db, self.store, self.settings.records_prefix, older_than=timedelta(hours=1)
        )
        await drift_service.drop_reports_before(
            self.runtime.db, self.store, datetime.now(UTC) - timedelta(days=self.settings.drift_report_days)
        )

    async def settle_feedback(self) -> None:
        """Count the feedback whose record arrived while it was being parked (the ingest counts the rest), and the
        feedback that waited ``feedback_wait_seconds`` for a record that never came."""
        give_up = datetime.now(UTC) - timedelta(seconds=self.settings.feedback_wait_seconds)
        buckets: dict = {}
        async with self.runtime.db.transaction() as session:
            await feedback_metrics.settle(session, buckets, give_up_before=give_up)
            await metrics_store.merge_buckets(session, buckets)

    @staticmethod
    async def _every(seconds: float, work) -> None:
        while True:
            try:
                await work()
            except Exception as exc:
                (log.warning if is_transient(exc) else log.exception)(
                    "monitoring.background_failed", work=work.__name__, error=repr(exc)
                )
            await asyncio.sleep(seconds)


def migrate(settings: MonitoringSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or MonitoringSettings()).migrations_db_url)


cli = service_cli(
    "monitoring", settings=MonitoringSettings, build=MonitoringService, migrate=migrate, runs_without_http=True
)
main = cli

if __name__ == "__main__":
    main()
