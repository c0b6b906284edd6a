"""Benchmark: sustained audit ingest (Kafka -> verified hash chain in Postgres) beside the raw consume rate.

N events (default 20,000) are published once to a fresh 3-partition topic. Then, in one run:
  raw:   an AIOKafkaConsumer reads them all, committing offsets after each batch;
  audit: the audit service's consumer appends them all to the chain (inbox, hash chain, head, commit after);
each rate is measured from the first event handled to the last (sustained, group joins excluded). The chain is then
verified. Target: at least 5,000 events/s of audit ingest on a 2-core machine.
Usage: python tests/bench/bench_audit.py [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llmops import infra
from llmops.db import Database, create_database, drop_database
from llmops.logging import configure_logging
from llmops.settings import KafkaSettings, PostgresSettings
from llmops_audit import repository, service
from llmops_audit.app import AuditService, migrate
from llmops_audit.settings import AuditSettings
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent

BOOTSTRAP = KafkaSettings().bootstrap_servers


async def publish(topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=5)
    await producer.start()
    pending = []
    for i in range(n):
        event = new_event(
            ProbeSent(message=f"audit bench {i}", sequence=i),
            subject=f"thing-{i % 500}",
            source="/llmops/bench",
            actor=f"user-{i % 7}",
            project="bench",
        )
        pending.append(await producer.send(topic, event.to_bytes(), key=event.subject.encode()))
    await asyncio.gather(*pending)
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


async def audit_rate(settings: AuditSettings, n: int) -> tuple[float, float]:
    audit = AuditService(settings)
    await audit.start()
    db = audit.runtime.db
    first_at = first_count = None
    while True:
        async with db.sessions() as session:
            seq, _ = await repository.read_head(session)
        if seq and first_at is None:
            first_at, first_count = time.perf_counter(), seq
        if seq >= n:
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - first_at
    await audit.stop()
    started = time.perf_counter()
    verify_db = Database(settings.db_url)
    report = await service.verify(verify_db, audit.signer.public_key)
    verify_elapsed = time.perf_counter() - started
    await verify_db.dispose()
    assert report.ok and report.checked == n, report.as_dict()
    return (n - first_count) / elapsed, n / verify_elapsed


async def main(n: int) -> None:
    configure_logging("WARNING")
    run = uuid.uuid4().hex[:6]
    topic = f"llmops.bench.{run}.audit"
    await infra.ensure_topics(BOOTSTRAP, [topic], 3, 1)
    await publish(topic, n)
    pg, name = PostgresSettings(), f"llmops_audit_bench_{run}"
    await create_database(name, owner="llmops_audit", connect=("llmops_audit_app",))
    settings = AuditSettings(
        database_url=pg.url(name, user="llmops_audit_app"),
        migrations_database_url=pg.url(name, user="llmops_audit"),
        topics=[topic],
        consumer_group=f"bench-audit-{run}",
        checkpoint_interval_seconds=3600,
    )
    try:
        await asyncio.to_thread(migrate, settings)
        raw = await raw_rate(topic, n)
        ingest, verify = await audit_rate(settings, n)
    finally:
        await drop_database(name)
        await infra.delete_topics(BOOTSTRAP, [topic])
    print(f"events: {n} (3 partitions)")
    print(f"raw aiokafka consume:                         {raw:9.0f} events/s")
    print(f"audit ingest (Kafka -> hash chain, verified): {ingest:9.0f} events/s  (target >= 5000)")
    print(f"ratio audit/raw: {ingest / raw:.2f}")
    print(f"chain verification:                           {verify:9.0f} events/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().events))
