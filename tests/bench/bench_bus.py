"""Benchmark: events per second through outbox, Kafka and the idempotent consumer, beside raw aiokafka.

Both paths move the same N CloudEvents through a fresh 3-partition topic, in one run, each with a producing process
and a consuming process (as deployed: the relay runs in the producing service, the consumer in another service):
  raw:      an AIOKafkaProducer (idempotent, acks=all) sends the events' bytes; an AIOKafkaConsumer reads them,
            committing offsets after each batch.
  platform: the producing process writes the events to its outbox, 1,000 per transaction, while its OutboxRelay
            publishes them; the consuming process's Consumer applies each once (inbox row in its transaction,
            offsets committed after it) and dead-letters nothing.
Each path is warmed up with one event (connections made, partitions assigned) before the clock starts; the clock
stops when the consumer has the N-th event. The ratio platform/raw is the figure of merit (target >= 0.5).
Usage: python tests/bench/bench_bus.py [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select

from llmops import infra
from llmops.bus import BUS_METADATA, Consumer, OutboxRelay, add_to_outbox, inbox, make_broker, make_producer
from llmops.db import Database, create_database, drop_database
from llmops.logging import configure_logging
from llmops.settings import KafkaSettings
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent

BOOTSTRAP = KafkaSettings().bootstrap_servers


def make_events(n: int) -> list:
    return [
        new_event(ProbeSent(message="benchmark event", sequence=i), subject=f"probe-{i % 64}", source="/llmops/bench")
        for i in range(n)
    ]


# -- raw aiokafka ------------------------------------------------------------------------------------------------
async def raw_producer(topic: str, n: int, warm: mp.Event, go: mp.Event, started: mp.Value) -> None:
    payloads = [(e.subject.encode(), e.to_bytes()) for e in make_events(n + 1)]
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=5)
    await producer.start()
    await producer.send_and_wait(topic, payloads[0][1], key=payloads[0][0])
    warm.set()
    await asyncio.to_thread(go.wait)
    started.value = time.monotonic()
    pending = [await producer.send(topic, value, key=key) for key, value in payloads[1:]]
    await asyncio.gather(*pending)
    await producer.stop()


async def raw_consumer(topic: str, n: int, ready: mp.Event, finished: mp.Value) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=1000,
    )
    await consumer.start()
    seen = 0
    while seen < n + 1:
        batch = await consumer.getmany(timeout_ms=1000)
        seen += sum(len(records) for records in batch.values())
        if batch:
            await consumer.commit()
        if seen >= 1:
            ready.set()
    finished.value = time.monotonic()
    await consumer.stop()


# -- the platform's path -----------------------------------------------------------------------------------------
async def platform_producer(topic: str, n: int, url: str, warm: mp.Event, go: mp.Event, started: mp.Value) -> None:
    events = make_events(n + 1)
    db = Database(url, pool_size=4)
    producer = make_producer(client_id="bench-relay")
    await producer.start()
    relay = OutboxRelay(db, producer, batch_size=1000, poll_interval=0.01)
    relay_task = asyncio.create_task(relay.run())
    async with db.transaction() as session:
        await add_to_outbox(session, events[0], topic=topic)
    warm.set()
    await asyncio.to_thread(go.wait)
    started.value = time.monotonic()
    for i in range(1, n + 1, 1000):
        async with db.transaction() as session:
            await add_to_outbox(session, *events[i : i + 1000], topic=topic)
    await relay_task  # relays until the parent, once the consumer has everything, terminates this process


async def platform_consumer(topic: str, n: int, url: str, ready: mp.Event, finished: mp.Value) -> None:
    db = Database(url, pool_size=4)
    consumer = Consumer(
        f"bench-{uuid.uuid4().hex[:6]}", db, make_broker(client_id="bench-consumer"), [topic], max_records=1000
    )
    applied = 0
    done = asyncio.Event()

    @consumer.on("platform.probe.sent")
    async def apply(session, event, payload) -> None:
        nonlocal applied
        applied += 1
        ready.set()
        if applied == n + 1:
            finished.value = time.monotonic()
            done.set()

    consumer.subscribe()
    await consumer.broker.start()
    await done.wait()
    await consumer.broker.stop()
    async with db.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(inbox).where(inbox.c.consumer == consumer.name))
    assert rows == n + 1, f"{rows} inbox rows for {n + 1} events"


def _run(coroutine_function, *args) -> None:
    configure_logging("WARNING")
    asyncio.run(coroutine_function(*args))


def measure(producer_fn, consumer_fn, topic: str, n: int, *extra) -> float:
    ctx = mp.get_context("spawn")
    warm, go, ready = ctx.Event(), ctx.Event(), ctx.Event()
    started, finished = ctx.Value("d", 0.0), ctx.Value("d", 0.0)
    consuming = ctx.Process(target=_run, args=(consumer_fn, topic, n, *extra, ready, finished))
    producing = ctx.Process(target=_run, args=(producer_fn, topic, n, *extra, warm, go, started))
    consuming.start()
    producing.start()
    if not (warm.wait(120) and ready.wait(120)):
        raise RuntimeError("the warm-up event did not get through")
    go.set()
    consuming.join(600)
    producing.terminate()
    producing.join()
    if consuming.exitcode != 0:
        raise RuntimeError(f"the consuming process failed ({consuming.exitcode})")
    return finished.value - started.value


async def prepare(name: str, topics: list[str]) -> str:
    await infra.ensure_topics(BOOTSTRAP, topics, 3, 1)
    url = await create_database(name)
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(BUS_METADATA.create_all)
    await db.dispose()
    return url


def main(n: int) -> None:
    configure_logging("WARNING")
    run = uuid.uuid4().hex[:6]
    raw_topic, platform_topic = f"llmops.bench.{run}.raw", f"llmops.bench.{run}.platform"
    name = f"llmops_bench_{run}"
    url = asyncio.run(prepare(name, [raw_topic, platform_topic]))
    try:
        raw = measure(raw_producer, raw_consumer, raw_topic, n)
        platform = measure(platform_producer, platform_consumer, platform_topic, n, url)
    finally:
        asyncio.run(drop_database(name))
        asyncio.run(infra.delete_topics(BOOTSTRAP, [raw_topic, platform_topic]))
    raw_rate, platform_rate = n / raw, n / platform
    print(f"events: {n} (3 partitions; a producing and a consuming process per path)")
    print(f"raw aiokafka produce -> consume:                  {raw_rate:9.0f} events/s  ({raw:.2f} s)")
    print(f"outbox -> relay -> Kafka -> idempotent consumer:  {platform_rate:9.0f} events/s  ({platform:.2f} s)")
    print(f"ratio platform/raw: {platform_rate / raw_rate:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    main(parser.parse_args().events)
