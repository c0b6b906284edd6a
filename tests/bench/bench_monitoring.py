"""Benchmark: the monitoring service's sustained ingest beside the raw consume rate, and its drift reports beside
Evidently called directly.

Ingest: N ``inference.completed`` / ``inference.failed`` events (default 120,000; the monitoring tests' synthetic
traffic: redacted texts of a few hundred characters, 3 deployments, 2 routes, 50 users, over the last two minutes)
are published once to a fresh 3-partition topic. Then, for each ``records_batch_max`` asked for:
  raw:      an AIOKafkaConsumer reads them all, committing offsets after each batch (no decoding); three times (two
            before the service, one after), the median kept: it swings by 2x between reads on a shared machine;
  platform: the platform's idempotent consumer (``llmops.bus.Consumer``) with a handler that does nothing: each
            event decoded and validated, its inbox row written, offsets committed (one process);
  service:  a MonitoringService on a fresh database with its records workers (``records_workers``, 2 by default)
            consumes them all (flags, Parquet files staged and registered, minute and hour metric buckets, request
            index, anomaly counts, inbox rows, one transaction a batch);
each rate is measured from the first event handled (or stored) to the last; the service's once all its records
workers are in their consumer group (the records stored before are left out). Then the record store must hold
exactly N rows and the minute buckets count exactly N requests.
Target: at least 5,000 events/s into the metrics and the record store, and at least 0.5 of the raw rate.

Drift: 10,000 stable records and 10,000 shifted ones put into the record store (staged and registered as the
consumer does), then rounds of: a report through the service (``drift_service.run_report``: both windows read from
the record store, Evidently in a thread, JSON and snapshot stored, the row), ``drift.run_drift`` called directly on
the same records, and Evidently itself on the report's sampled frames (run, JSON, snapshot: what the service keeps),
taking turns at going first. Median of the rounds. Target: direct / service at least 0.9.
Usage: python tests/bench/bench_monitoring.py [--events N] [--batch-max 20000 ...] [--rounds R] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import gzip
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select, text

from llmops import infra
from llmops.bus import Consumer, make_broker
from llmops.db import Database, create_database, drop_database
from llmops.logging import configure_logging
from llmops.settings import KafkaSettings, PostgresSettings
from llmops_monitoring import drift_service, record_store
from llmops_monitoring.app import MonitoringService, migrate
from llmops_monitoring.drift import run_drift
from llmops_monitoring.models import record_files
from llmops_monitoring.settings import MonitoringSettings

# the monitoring tests' synthetic traffic and the events a gateway publishes for it
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "monitoring" / "tests"))
import events
import traffic

BOOTSTRAP = KafkaSettings().bootstrap_servers
DEPLOYMENTS = ("dep-a", "dep-b", "dep-c")
ROUTES = ("support-chat", "billing-agent")
HOUR = timedelta(hours=1)


# -- ingest ----------------------------------------------------------------------------------------------------------
def inference_events(n: int) -> list[bytes]:
    now = datetime.now(UTC)
    records = traffic.records(n, seed=7, start=now - timedelta(minutes=2), minutes=2)
    sent = []
    for i, record in enumerate(records):
        record["route"] = ROUTES[i % len(ROUTES)]
        sent.append(events.from_record(record, project="bench", deployment_id=DEPLOYMENTS[i % len(DEPLOYMENTS)]))
    return [event.to_bytes() for event in sent]


async def publish(topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=uuid.uuid4().bytes) for value in values]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def raw_rate(topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=1000,
    )
    await consumer.start()
    seen, first_at, first_count = 0, None, 0
    while seen < n:
        batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
        got = sum(len(records) for records in batch.values())
        if got and first_at is None:
            first_at, first_count = time.perf_counter(), got
        seen += got
        if got:
            await consumer.commit()
    elapsed = time.perf_counter() - first_at
    await consumer.stop()
    return (n - first_count) / elapsed


async def platform_rate(settings: MonitoringSettings, topic: str, n: int) -> float:
    """Events/s through the platform's own idempotent consumer doing no work: each event decoded and validated (the
    envelope and its payload), its inbox row written, offsets committed after each batch, in one process; what any
    consumer of the platform pays before its handler runs."""
    db = Database(settings.db_url)
    broker = make_broker(settings.kafka, client_id="bench-platform")
    consumer = Consumer(
        f"bench-platform-{uuid.uuid4().hex[:6]}", db, broker, [topic], max_records=settings.records_batch_max
    )
    done = 0

    async def nothing(session, deliveries) -> None:
        nonlocal done
        done += len(deliveries)

    consumer.on_batch(nothing)
    consumer.subscribe(partition_fetch_bytes=settings.records_fetch_bytes)
    await broker.start()
    first_at = first_count = None
    started = time.perf_counter()
    try:
        while done < n:
            if first_at is None and done:
                first_at, first_count = time.perf_counter(), done
            assert time.perf_counter() - started < 600, f"{done} of {n} consumed after 600 s"
            await asyncio.sleep(0.01)
        ended = time.perf_counter()
    finally:
        await broker.stop()
        await db.dispose()
    return (n - first_count) / (ended - first_at)


@asynccontextmanager
async def bench_settings(run: str, label: str, **overrides) -> AsyncIterator[MonitoringSettings]:
    """Settings of a monitoring service on a fresh database (dropped after) and a private object-store prefix
    (emptied after)."""
    pg, name = PostgresSettings(), f"llmops_monitoring_bench_{run}_{label}"
    await create_database(name, owner="llmops_monitoring", connect=("llmops_monitoring_app",))
    settings = MonitoringSettings(
        database_url=pg.url(name, user="llmops_monitoring_app"),
        migrations_database_url=pg.url(name, user="llmops_monitoring"),
        consumer_group=f"bench-monitoring-{run}-{label}",
        records_group=f"bench-monitoring-records-{run}-{label}",
        records_prefix=f"bench-monitoring/{run}/{label}/records",
        reports_prefix=f"bench-monitoring/{run}/{label}/drift",
        drift_interval_seconds=0,
        # the shared deployments, feedback and monitoring topics hold other runs' history: start at their end
        consumer_offset_reset="latest",
        **overrides,
    )
    try:
        await asyncio.to_thread(migrate, settings)
        yield settings
    finally:
        await drop_database(name)
        store = MonitoringService(settings).store
        for key, _, _ in await store.list_named(f"bench-monitoring/{run}/{label}/"):
            await store.remove_named(key)


async def group_state(group: str) -> tuple[str, int]:
    """A consumer group's state and number of members, as its coordinator tells."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        described = response.groups[0]  # (error, group, state, protocol type, protocol, members, ...)
        return described[2], len(described[5])
    finally:
        await admin.close()


async def ingest_rate(settings: MonitoringSettings, n: int, profile: cProfile.Profile | None) -> tuple[float, float]:
    """Sustained events/s into the record store and metrics, and the whole run's (service start to last stored).
    Sustained is measured from the moment all the service's records consumers are in their group (a worker that
    joins later pauses the others for a rebalance): the records stored by then are left out of the rate."""
    service = MonitoringService(settings)
    db = service.runtime.db
    started = time.perf_counter()
    if profile:
        profile.enable()
    await service.start()
    members = settings.records_workers or 1
    first_at = first_count = None
    try:
        while True:
            async with db.sessions() as session:
                rows, files = (
                    await session.execute(select(func.coalesce(func.sum(record_files.c.rows), 0), func.count()))
                ).one()
            if first_at is None and await group_state(settings.records_group) == ("Stable", members):
                first_at, first_count = time.perf_counter(), rows
            if rows >= n:
                break
            assert time.perf_counter() - started < 600, f"{rows} of {n} records stored after 600 s"
            consumer, workers = service.records_consumer, service.records_workers
            if consumer is not None:
                assert consumer.stalled_batches < 3, f"the records consumer is stuck: {consumer.stalled_by}"
            else:
                assert workers.restarts == 0, "a records worker died"
            # polled every 0.1 s: the poll's query shares the machine with the service; the end is known to 0.1 s
            await asyncio.sleep(0.1)
        ended = time.perf_counter()
        if profile:
            profile.disable()
        async with db.sessions() as session:
            requests = (
                await session.execute(
                    text(  # the buckets of all users (the per-user ones count the same records again)
                        "SELECT sum((data->>'requests')::bigint) FROM metric_buckets"
                        " WHERE resolution = 'minute' AND \"user\" = ''"
                    )
                )
            ).scalar_one()
        assert rows == n, f"the record store holds {rows} rows, {n} were sent"
        assert requests == n, f"the minute buckets count {requests} requests, {n} were sent"
    finally:
        await service.stop()
    # a batch writes one file per deployment (all three in nearly every batch)
    print(
        f"  records_batch_max={settings.records_batch_max}, records_workers={settings.records_workers}: about"
        f" {n * len(DEPLOYMENTS) / files:.0f} records a batch; {first_count} stored before all workers were in"
        " the group (left out of the sustained rate)"
    )
    return (n - first_count) / (ended - first_at), n / (ended - started)


# -- drift -----------------------------------------------------------------------------------------------------------
def evidently_direct(current, reference, drift_settings) -> None:
    """Evidently's report on ready frames, as one would call it by hand: one ValueDrift per column, its JSON and its
    snapshot (compressed), which the HTML is rendered from when opened: what the service keeps."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    from llmops_monitoring.drift import NUMERICAL, TEXT

    kinds = {c: "text" if c in TEXT else "numerical" if c in NUMERICAL else "categorical" for c in current.columns}
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numerical"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
        text_columns=[c for c, k in kinds.items() if k == "text"],
    )
    metrics = []
    for column, kind in kinds.items():
        method, threshold = drift_settings.test_of(column, kind)
        metrics.append(ValueDrift(column=column, method=method, threshold=threshold))
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    snapshot.json()
    gzip.compress(snapshot.dumps().encode(), 1, mtime=0)


async def drift_times(settings: MonitoringSettings, n: int, rounds: int) -> dict[str, list[float]]:
    service = MonitoringService(settings)  # not started: nothing of it reaches the shared topics
    db, store = service.runtime.db, service.store
    end = datetime.now(UTC).replace(microsecond=0)
    stable = traffic.records(n, seed=1, start=end - 2 * HOUR, minutes=59)
    shifted = traffic.records(n, seed=2, start=end - HOUR, minutes=59, shift=traffic.ALL_SHIFTS)
    for window in (stable, shifted):
        files = await record_store.stage(store, settings.records_prefix, window)
        async with db.transaction() as session:
            await record_store.register(session, files)
    read = dict(project="demo", deployment_id="dep-1")
    current = (await record_store.read_table(db, store, end - HOUR, end, **read)).to_pylist()
    reference = (await record_store.read_table(db, store, end - 2 * HOUR, end - HOUR, **read)).to_pylist()
    assert len(current) == len(reference) == n, (len(current), len(reference))
    request = drift_service.DriftRequest(
        "demo", "dep-1", end - HOUR, end, "request", "bench", reference_start=end - 2 * HOUR, reference_end=end - HOUR
    )
    await asyncio.to_thread(run_drift, current[:300], reference[:300], settings.drift)  # warm-up
    times: dict[str, list[float]] = {"service": [], "run_drift": [], "evidently": []}
    try:
        direct = await asyncio.to_thread(run_drift, current, reference, settings.drift, seed=0)

        async def service_report() -> None:
            nonlocal row
            row = await drift_service.run_report(service.runtime, store, settings, settings.drift, request)

        async def drift_direct() -> None:
            await asyncio.to_thread(run_drift, current, reference, settings.drift, seed=0)

        async def evidently() -> None:
            await asyncio.to_thread(evidently_direct, direct.current_frame, direct.reference_frame, settings.drift)

        row: dict = {}
        order = [("service", service_report), ("run_drift", drift_direct), ("evidently", evidently)]
        for r in range(rounds):
            # each takes its turn at going first (whoever follows a report pays for collecting its garbage)
            for name, work in order[r % 3 :] + order[: r % 3]:
                gc.collect()
                started = time.perf_counter()
                await work()
                times[name].append(time.perf_counter() - started)
            assert row["status"] == "done" and row["drifted"], row
            assert row["drifted_share"] == direct.drifted_share, (row["drifted_share"], direct.drifted_share)
    finally:
        await db.dispose()
    print(
        f"drift report: {row['current_rows']} of {n} vs {row['reference_rows']} of {n} records sampled, drifted share "
        f"{row['drifted_share']:.2f}, columns {len(row['columns'])}"
    )
    return times


# -- the run ---------------------------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def main(n: int, batch_maxes: list[int], drift_rows: int, rounds: int, profile_path: str | None) -> None:
    configure_logging("WARNING")
    run = uuid.uuid4().hex[:6]
    topic = f"llmops.bench.{run}.inference"
    profile = cProfile.Profile() if profile_path else None
    results = []
    try:
        if batch_maxes:
            values = inference_events(n)
            print(f"events: {n} (3 partitions), {sum(map(len, values)) / n:.0f} bytes each on average")
            await infra.ensure_topics(BOOTSTRAP, [topic], 3, 1)
            await publish(topic, values)
            del values
        for batch_max in batch_maxes:
            async with bench_settings(run, f"b{batch_max}", records_topics=[topic], records_batch_max=batch_max) as s:
                # raw consume swings by 2x from one read to the next on a shared machine: the median of three, one of
                # them after the service's run
                raws = [await raw_rate(topic, n), await raw_rate(topic, n)]
                platform = await platform_rate(s, topic, n)
                sustained, whole = await ingest_rate(s, n, profile)
                raws.append(await raw_rate(topic, n))
            results.append((batch_max, raws, platform, sustained, whole))
        if drift_rows:
            async with bench_settings(run, "drift") as s:
                times = await drift_times(s, drift_rows, rounds)
    finally:
        await infra.delete_topics(BOOTSTRAP, [topic])
        if profile:
            profile.dump_stats(profile_path)
    default = MonitoringSettings.model_fields["records_batch_max"].default
    for batch_max, raws, platform, sustained, whole in results:
        mark = " (default)" if batch_max == default else ""
        raw = statistics.median(raws)
        print(f"records_batch_max={batch_max}{mark}")
        print(
            f"  raw aiokafka consume, median of 3:              {raw:9.0f} events/s  "
            f"({', '.join(f'{r:.0f}' for r in raws)})"
        )
        print(f"  platform consumer, no work (decode, inbox):     {platform:9.0f} events/s  (one process)")
        print(
            f"  monitoring ingest (records + metrics, checked):  {sustained:9.0f} events/s  (target >= 5000: "
            f"{verdict(sustained >= 5000)}; from service start {whole:.0f})"
        )
        print(f"  ratio ingest/raw: {sustained / raw:.3f}  (target >= 0.5: {verdict(sustained / raw >= 0.5)})")
        print(f"  ratio ingest/platform consumer: {sustained / platform:.2f}  (no target: for comparison)")
    if drift_rows:
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"drift report, {drift_rows} vs {drift_rows} records, median of {rounds} rounds:")
        print(f"  through the service (read, Evidently, store):  {median['service']:7.2f} s")
        print(f"  drift.run_drift on the same records:           {median['run_drift']:7.2f} s")
        print(f"  Evidently on the sampled frames (+JSON, snap.):{median['evidently']:7.2f} s")
        for name in ("run_drift", "evidently"):
            ratio = median[name] / median["service"]
            print(f"  ratio {name}/service: {ratio:.2f}  (target >= 0.9: {verdict(ratio >= 0.9)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument(
        "--batch-max",
        type=int,
        nargs="*",
        default=[MonitoringSettings.model_fields["records_batch_max"].default],
        help="records_batch_max values to try (none: no ingest part)",
    )
    parser.add_argument("--drift-rows", type=int, default=10_000, help="records per drift window (0: no drift part)")
    parser.add_argument("--rounds", type=int, default=3, help="drift rounds (median)")
    parser.add_argument("--profile", help="cProfile the service's ingest into this file")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch_max, args.drift_rows, args.rounds, args.profile))
