"""A producer given records while its broker is down (a private one-node Kafka of the test's own, stopped and started
again): it asks for metadata at a measured pace instead of spinning, and once the broker is back every record is
delivered, once."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llmops.bus import client_options, make_producer
from llmops.infra.private import private_kafka

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOPIC = "paced"
WINDOW = 2.0  # seconds over which the metadata updates of a waiting producer are counted


@pytest.fixture
async def kafka(tmp_path):
    part, settings = private_kafka(tmp_path / "kafka", [TOPIC])
    await asyncio.to_thread(part.start)
    yield part, settings
    await asyncio.to_thread(part.close)


def counted_updates(producer: AIOKafkaProducer) -> list[int]:
    """A one-item list counting the metadata updates ``producer``'s client tries (each one a round of connection
    attempts to the brokers it knows)."""
    client, calls = producer.client, [0]
    update = client._metadata_update

    async def counting(*args, **kwargs):
        calls[0] += 1
        return await update(*args, **kwargs)

    client._metadata_update = counting
    return calls


async def values_on(settings, topic: str, expected: int, within: float = 60) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, **client_options(settings, client_id="tests-paced-reader"), auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + within
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [record.value for record in records]
    finally:
        await consumer.stop()
    return values


async def test_a_producer_fed_while_its_broker_is_down_paces_its_retries_and_delivers_all_once_it_returns(kafka):
    part, settings = kafka
    paced = make_producer(settings, client_id="tests-paced")
    bare = AIOKafkaProducer(**client_options(settings, client_id="tests-bare"), enable_idempotence=True, acks="all")
    await paced.start()
    await bare.start()
    sent: list[asyncio.Future] = []
    feeding = asyncio.Event()

    async def feed() -> None:  # records keep coming, as requests keep coming to a gateway
        i = 0
        while feeding.is_set():
            sent.append(await paced.send(TOPIC, f"paced-{i}".encode()))
            sent.append(await bare.send(TOPIC, f"bare-{i}".encode()))
            i += 1
            await asyncio.sleep(0.03)

    try:
        await (await paced.send(TOPIC, b"before"))
        await (await bare.send(TOPIC, b"before"))
        feeding.set()
        feeder = asyncio.create_task(feed())
        await asyncio.to_thread(part.stop)
        paced_calls, bare_calls = counted_updates(paced), counted_updates(bare)
        started = time.monotonic()
        await asyncio.sleep(WINDOW)  # a window to count in, not a wait for a condition
        elapsed = time.monotonic() - started
        paced_rate, bare_rate = paced_calls[0] / elapsed, bare_calls[0] / elapsed
        print(f"metadata updates a second with the broker down: paced {paced_rate:.0f}, aiokafka alone {bare_rate:.0f}")
        assert paced_rate <= 6, paced_rate  # one each 0.25 s, and then some
        assert bare_rate > 20 * max(paced_rate, 1), (paced_rate, bare_rate)  # what it paces: aio-libs/aiokafka#496
        await asyncio.to_thread(part.start)
        feeding.clear()
        await feeder
        await asyncio.wait_for(asyncio.gather(*sent), 60)
    finally:
        feeding.clear()
        await paced.stop()
        await bare.stop()
    expected = [f"paced-{i}".encode() for i in range(len(sent) // 2)]
    values = await values_on(settings, TOPIC, 2 + len(sent))
    assert sorted(v for v in values if v.startswith(b"paced-")) == sorted(expected)  # every one, once
    assert values.count(b"before") == 2
