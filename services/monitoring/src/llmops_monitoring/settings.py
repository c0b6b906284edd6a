"""The monitoring service's settings (prefix ``LLMOPS_MONITORING_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from llmops.settings import ServiceSettings
from llmops_monitoring.anomalies import AnomalySettings
from llmops_monitoring.drift_settings import DriftSettings
from llmops_schemas import topics


class MonitoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_MONITORING_", env_nested_delimiter="__", extra="ignore")

    service: str = "monitoring"
    http_host: str = "127.0.0.1"
    http_port: int = 8006
    #: The consumer group of the projections (deployments, feedback, rules) and of the records.
    consumer_group: str = "monitoring"
    records_group: str = "monitoring-records"
    #: Where a new consumer group starts: earliest (the whole history) or latest.
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: The topics of inference records (the platform's; tests give their own).
    records_topics: list[str] = Field(default_factory=lambda: [topics.INFERENCE])
    #: Where a new records consumer group starts.
    records_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: Most records taken in one batch (one Parquet file per date and deployment, one metrics transaction). Larger
    #: batches cost less a record: a batch's metric buckets are bounded by its minutes and dimensions, not by its
    #: records (make bench-monitoring: 9,600 events/s at 5,000, 15,400 at 20,000 on two cores).
    records_batch_max: int = Field(default=20_000, ge=1, le=100_000)
    #: Processes running the records consumer (members of its group: Kafka shares the partitions among them), so
    #: ingest uses other cores than the API's; 0 runs it in the service's own process. More workers than the
    #: records topics have partitions leaves some idle.
    records_workers: int = Field(default=2, ge=0, le=64)
    #: Most bytes one fetch takes of a partition: with a backlog, a batch holds about this much of each partition it
    #: reads (up to ``records_batch_max``), which bounds a worker's memory whatever the records' sizes.
    records_fetch_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)

    # --- the record store ---
    #: The object store prefix of the record store (hive layout: ``<prefix>/date=YYYY-MM-DD/deployment=ID/...``).
    records_prefix: str = "monitoring/records"
    #: Days of records kept; older date partitions are removed (files and manifest rows) by the retention task.
    retention_days: int = Field(default=30, ge=1, le=3650)
    #: How often committed files are published from staging to their final keys (seconds).
    publish_interval_seconds: float = Field(default=1.0, gt=0)
    #: How often retention is applied and orphaned staging files are swept (seconds; 0: never by itself, for tests
    #: that drive ``MonitoringService.maintain`` or its parts themselves).
    maintenance_interval_seconds: float = Field(default=60.0, ge=0)

    # --- metrics ---
    #: Minute buckets older than this are rolled up into hours (and removed); hour buckets live as long as records.
    minute_buckets_days: int = Field(default=2, ge=1, le=60)
    #: Seconds feedback on a request whose record has not been ingested yet waits for it (the records consumer lags,
    #: or the record's batch was dead-lettered and is replayed later); then it counts under the model version it
    #: names, or is dropped, with a log line. The wait is over when the record arrives, or at a maintenance pass.
    feedback_wait_seconds: float = Field(default=3600.0, ge=0)
    #: Seconds a drift, alert or anomaly of a deployment not yet known (its ``deployment.requested`` late) waits for
    #: it before its policies are looked up; then it is dropped, with a log line.
    cause_wait_seconds: float = Field(default=86_400.0, ge=0)
    #: Most buckets one metrics query may read (bounded work per request).
    max_query_buckets: int = Field(default=200_000, ge=1)
    #: Most records one read of the record store holds (the records API, a drift window), counted from the manifest
    #: before anything is read: past it, the API answers 422 and a drift report is skipped with the reason.
    max_read_records: int = Field(default=1_000_000, ge=1)
    #: Largest evaluation artifact (JSONL of a gating run's examples) read as a drift reference.
    max_reference_bytes: int = Field(default=256 * 1024 * 1024, ge=1)

    # --- unusual outputs ---
    #: What counts as unusual and when a window's share of it is announced (env: LLMOPS_MONITORING_ANOMALIES__...).
    anomalies: AnomalySettings = Field(default_factory=AnomalySettings)
    #: The windows flagged records are counted and assessed in (seconds).
    anomaly_window_seconds: int = Field(default=300, ge=10, le=86_400)
    #: How long after its end a window waits for late records before it is assessed (seconds).
    anomaly_grace_seconds: float = Field(default=60.0, ge=0)
    #: How often closed windows are assessed (seconds).
    anomaly_assess_interval_seconds: float = Field(default=15.0, gt=0)
    #: The outlier reference of a deployment: its hour buckets of this many hours before the current hour.
    reference_hours: int = Field(default=24, ge=1, le=24 * 30)
    #: How long a deployment's reference is reused before it is read again (seconds).
    reference_refresh_seconds: float = Field(default=300.0, ge=0)

    # --- drift ---
    #: Scheduled drift reports: every this many seconds, for each ready deployment (0: only on request).
    drift_interval_seconds: float = Field(default=3600.0, ge=0)
    #: The current window of a scheduled report (seconds back from now).
    drift_window_seconds: int = Field(default=3600, ge=60)
    #: A scheduled report claimed by a replica and still running after this long (the replica died) is made again.
    drift_claim_seconds: int = Field(default=900, ge=30)
    #: Days a drift report (its row, JSON and snapshot) is kept.
    drift_report_days: int = Field(default=90, ge=1, le=3650)
    #: How reports are run and judged (env: LLMOPS_MONITORING_DRIFT__...).
    drift: DriftSettings = Field(default_factory=DriftSettings)
    #: The object store prefix of drift reports.
    reports_prefix: str = "monitoring/drift"

    # --- alerts and policies ---
    #: How often alert rules and budget alerts are evaluated (seconds).
    alert_interval_seconds: float = Field(default=30.0, gt=0)
    #: Most alert rules (and, apart, budgets) evaluated in one pass, least recently evaluated first.
    alert_rules_per_pass: int = Field(default=1000, ge=1, le=100_000)
    #: The share of a budget (tokens or cost in its current period) at which its alert fires.
    budget_alert_share: float = Field(default=0.8, gt=0, le=1)
