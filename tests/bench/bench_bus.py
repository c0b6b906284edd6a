"""Benchmark: events per second through outbox, Kafka and the idempotent consumer, beside raw aiokafka.

Both paths move the same N canonical CloudEvents through fresh 3-partition topics, in one process and one run:
  raw:      AIOKafkaProducer (idempotent, acks=all) sends N events; an AIOKafkaConsumer reads them,
            committing per batch.
  platform: N events are written to the outbox in transactions, the OutboxRelay publishes them, and a Consumer applies
            each once (inbox row per event in the consumer's transaction, offsets committed after it).
The ratio platform/raw is the figure of merit (target >= 0.5). Usage: python tests/bench/bench_bus.py [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select

from llmops import infra
from llmops.bus import BUS_METADATA, Consumer, OutboxRelay, add_to_outbox, inbox, make_broker, make_producer
from llmops.db import Database
from llmops.logging import configure_logging
from llmops.settings import KafkaSettings, PostgresSettings
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent


async def raw_path(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    await producer.start()
    await consumer.start()
    started = time.perf_counter()

    async def produce() -> None:
        pending = [await producer.send(topic, value, key=key) for key, value in payloads]
        await asyncio.gather(*pending)

    async def consume() -> None:
        seen = 0
        while seen < len(payloads):
            batch = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(records) for records in batch.values())
            if batch:
                await consumer.commit()

    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    return elapsed


async def platform_path(db: Database, topic: str, events: list) -> float:
    relay_producer = make_producer(client_id="bench-relay")
    consumer_broker = make_broker(client_id="bench-consumer")
    consumer = Consumer(f"bench-{uuid.uuid4().hex[:6]}", db, consumer_broker, [topic], max_records=1000)
    applied = 0
    done = asyncio.Event()

    @consumer.on("platform.probe.sent")
    async def apply(session, event, payload) -> None:
        nonlocal applied
        applied += 1
        if applied == len(events):
            done.set()

    consumer.subscribe()
    await relay_producer.start()
    await consumer_broker.start()
    relay = OutboxRelay(db, relay_producer, batch_size=1000, poll_interval=0.01)
    started = time.perf_counter()
    relay_task = asyncio.create_task(relay.run())
    for i in range(0, len(events), 1000):
        async with db.transaction() as session:
            await add_to_outbox(session, *events[i : i + 1000], topic=topic)
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    relay.stop()
    await relay_task
    await consumer_broker.stop()
    await relay_producer.stop()
    async with db.sessions() as session:
        in_inbox = await session.scalar(
            select(func.count()).select_from(inbox).where(inbox.c.consumer == consumer.name)
        )
    assert in_inbox == len(events), f"{in_inbox} inbox rows for {len(events)} events"
    return elapsed


async def main(n: int) -> None:
    configure_logging("WARNING")
    kafka, pg = KafkaSettings(), PostgresSettings()
    run = uuid.uuid4().hex[:6]
    raw_topic, platform_topic = f"llmops.bench.{run}.raw", f"llmops.bench.{run}.platform"
    await infra.ensure_topics(kafka.bootstrap_servers, [raw_topic, platform_topic], 3, 1)

    events = [
        new_event(
            ProbeSent(message="benchmark event", sequence=i),
            subject=f"probe-{i % 64}",
            source="/llmops/bench",
        )
        for i in range(n)
    ]
    name = f"llmops_bench_{run}"
    admin = await asyncpg.connect(pg.superuser_url().replace("postgresql+asyncpg", "postgresql"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    db = Database(pg.url(name, user=pg.superuser, password=pg.superuser_password.get_secret_value()), pool_size=4)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(BUS_METADATA.create_all)
        raw = await raw_path(kafka.bootstrap_servers, raw_topic, [(e.subject.encode(), e.to_bytes()) for e in events])
        platform = await platform_path(db, platform_topic, events)
    finally:
        await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    raw_rate, platform_rate = n / raw, n / platform
    print(f"events:                                   {n}")
    print(f"raw aiokafka produce+consume:             {raw_rate:10.0f} events/s  ({raw:.2f} s)")
    print(f"outbox -> relay -> Kafka -> idempotent consumer: {platform_rate:10.0f} events/s  ({platform:.2f} s)")
    print(f"ratio platform/raw:                       {platform_rate / raw_rate:10.2f}  (target >= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().events))
