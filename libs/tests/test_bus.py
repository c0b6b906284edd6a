"""The event bus on real Postgres and Kafka: outbox, relay crash, idempotent consumer, dead-letter topic."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, insert, select

from llmops.bus import Consumer, PermanentError, Rows, add_to_outbox, make_broker, outbox
from llmops.bus import dlq as dlq_headers
from llmops.bus.fast_decode import FastDecoder
from llmops.settings import KafkaSettings
from llmops.testing import caught_up, read_to_end
from llmops_schemas import new_event
from llmops_schemas.topics import DEAD_LETTER

from .conftest import RUN, TEST_TOPIC, ThingHappened, effects

pytestmark = pytest.mark.integration
RELAY = Path(__file__).with_name("relay_process.py")
BOOTSTRAP = KafkaSettings().bootstrap_servers


def thing(sequence: int, *, fail: bool = False, subject: str | None = None):
    return new_event(
        ThingHappened(sequence=sequence, fail=fail),
        subject=subject or f"thing-{sequence % 7}",
        source="/tests",
    )


async def wait_for(predicate, *, within: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def count_effects(db, consumer: str) -> tuple[int, int]:
    async with db.sessions() as s:
        row = (
            await s.execute(
                select(func.count(), func.count(effects.c.event_id.distinct())).where(effects.c.consumer == consumer)
            )
        ).one()
    return row[0], row[1]


async def dead_letters_of(topic: str, consumer: str) -> list:
    """The dead letters ``consumer`` wrote to ``topic``, up to its end."""
    return [r for r in await read_to_end(topic) if dict(r.headers).get(dlq_headers.CONSUMER) == consumer.encode()]


def recording_consumer(name: str, db, topics, **options) -> Consumer:
    consumer = Consumer(name, db, make_broker(client_id=name), topics, **options)

    @consumer.on("tests.thing.happened")
    async def apply(session, event, payload: ThingHappened) -> None:
        if payload.fail:
            raise RuntimeError(f"handler refuses event {payload.sequence}")
        await session.execute(insert(effects).values(event_id=event.id, sequence=payload.sequence, consumer=name))

    consumer.subscribe()
    return consumer


def start_relay(url: str, batch: int, pause: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RELAY), url, str(batch), str(pause)], stdout=subprocess.PIPE, text=True
    )


class TestOutboxToConsumer:
    async def test_each_event_takes_effect_once_despite_a_killed_relay_and_redelivery(self, own_database_url, own_db):
        # a database of its own: the relays publish every unsent row of its outbox, and the counts below are exact
        database_url, db = own_database_url, own_db
        total, batch = 1000, 200
        events = [thing(i) for i in range(total)]
        async with db.transaction() as session:
            await add_to_outbox(session, *events)

        # The first relay publishes one batch, then is SIGKILLed before marking it sent.
        first = start_relay(database_url, batch, pause=60)
        line = await asyncio.wait_for(asyncio.to_thread(first.stdout.readline), 60)
        assert line.strip() == f"published {batch}"
        first.kill()
        first.wait()
        async with db.sessions() as s:
            unsent = await s.scalar(
                select(func.count()).where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
            )
        assert unsent == total, "the killed relay must not have marked its batch sent"

        second = start_relay(database_url, batch, pause=0)
        try:

            async def all_sent() -> bool:
                async with db.sessions() as s:
                    return (
                        await s.scalar(
                            select(func.count()).where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
                        )
                        == 0
                    )

            await wait_for(all_sent, what="the restarted relay to publish everything")
        finally:
            second.terminate()
            second.wait()

        # Kafka now holds the first batch twice; deliver the first 50 events a third time by hand.
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
        await producer.start()
        for event in events[:50]:
            await producer.send_and_wait(TEST_TOPIC, event.to_bytes(), key=event.subject.encode())
        await producer.stop()
        on_topic = await read_to_end(TEST_TOPIC)
        assert len(on_topic) >= total + batch + 50

        name = f"tests-{RUN}-exactly-once"
        consumer = recording_consumer(name, db, [TEST_TOPIC])
        await consumer.broker.start()
        try:
            await wait_for(lambda: _reached(db, name, total), what=f"{total} effects")
            await caught_up(name, [TEST_TOPIC])  # every copy on the topic, duplicates included, was processed
        finally:
            await consumer.broker.stop()
        assert await count_effects(db, name) == (total, total)

        # Events of one subject took effect in the order they were written.
        async with db.sessions() as s:
            rows = (
                (await s.execute(select(effects.c.sequence).where(effects.c.consumer == name).order_by(effects.c.id)))
                .scalars()
                .all()
            )
        for subject in range(7):
            of_subject = [seq for seq in rows if seq % 7 == subject]
            assert of_subject == sorted(of_subject)

    async def test_a_consumer_replaying_the_topic_applies_nothing_twice(self, db):
        name = f"tests-{RUN}-replay"
        events = [thing(10_000 + i) for i in range(100)]
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
        await producer.start()
        for event in events:
            await producer.send(TEST_TOPIC, event.to_bytes(), key=event.subject.encode())
        await producer.stop()

        first = recording_consumer(name, db, [TEST_TOPIC])
        await first.broker.start()
        await wait_for(lambda: _has(db, name, events), what="the first pass")
        await first.broker.stop()
        before = await count_effects(db, name)

        # Same inbox (consumer name), new Kafka group: every record is delivered again from the start.
        replay = recording_consumer(name, db, [TEST_TOPIC], group_id=f"{name}-replay")
        await replay.broker.start()
        try:
            await caught_up(f"{name}-replay", [TEST_TOPIC])  # the replay really read (and committed) every record
        finally:
            await replay.broker.stop()
        assert await count_effects(db, name) == before
        assert before[0] == before[1]


async def _reached(db, consumer: str, total: int) -> bool:
    return (await count_effects(db, consumer))[0] >= total


async def _has(db, consumer: str, events) -> bool:
    async with db.sessions() as s:
        found = await s.scalar(
            select(func.count()).where(effects.c.consumer == consumer, effects.c.event_id.in_([e.id for e in events]))
        )
    return found == len(events)


class TestDeadLetters:
    async def test_malformed_and_failing_events_are_dead_lettered_and_the_next_is_processed(self, db, infra_up):
        from llmops import infra

        topic = f"{TEST_TOPIC}.dlq"
        await infra.ensure_topics(BOOTSTRAP, [topic], 1, 1)
        name = f"tests-{RUN}-dlq"
        failing, good = thing(1, fail=True, subject="s"), thing(2, subject="s")
        permanent = thing(3, subject="s")
        unknown = good.model_copy(update={"type": "nobody.knows.this", "id": thing(0).id})
        invalid = good.model_copy(update={"data": {"sequence": "not a number"}, "id": thing(0).id})
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        for value in (
            b"not json at all",
            unknown.to_bytes(),
            invalid.to_bytes(),
            failing.to_bytes(),
            permanent.to_bytes(),
            good.to_bytes(),
        ):
            await producer.send_and_wait(topic, value, key=b"s")
        await producer.stop()

        consumer = Consumer(name, db, make_broker(client_id=name), [topic], max_attempts=3, backoff_seconds=0.01)

        @consumer.on("tests.thing.happened")
        async def apply(session, event, payload: ThingHappened) -> None:
            if payload.fail:
                raise RuntimeError("this handler always fails")
            if payload.sequence == 3:
                raise PermanentError("this event can never succeed")
            await session.execute(insert(effects).values(event_id=event.id, sequence=payload.sequence, consumer=name))

        consumer.subscribe()
        await consumer.broker.start()
        try:
            await wait_for(lambda: _has(db, name, [good]), what="the good event after the bad ones")
        finally:
            await consumer.broker.stop()

        dead = await dead_letters_of(DEAD_LETTER, name)
        by_reason = {dict(r.headers)[dlq_headers.REASON].decode(): r for r in dead}
        assert set(by_reason) == {"not_json", "unknown_type", "invalid_data", "handler_failed"}
        assert by_reason["not_json"].value == b"not json at all"
        assert by_reason["unknown_type"].value == unknown.to_bytes()
        failed = [r for r in dead if dict(r.headers)[dlq_headers.REASON] == b"handler_failed"]
        attempts = sorted((dict(r.headers)[dlq_headers.ATTEMPTS], r.value) for r in failed)
        assert attempts == sorted([(b"1", permanent.to_bytes()), (b"3", failing.to_bytes())])
        errors = {dict(r.headers)[dlq_headers.ATTEMPTS]: dict(r.headers)[dlq_headers.ERROR] for r in failed}
        assert b"always fails" in errors[b"3"]
        assert b"can never succeed" in errors[b"1"]
        assert dict(by_reason["not_json"].headers)[dlq_headers.ORIGINAL_TOPIC] == topic.encode()
        assert await count_effects(db, name) == (1, 1)


async def _caught_up(group: str, topic: str) -> bool:
    try:
        await caught_up(group, [topic], within=1)
    except AssertionError:
        return False
    return True


class ThingRows:
    """A columnar consumer's decoder of test events: the fast decoder's rows, the usual decoding's for the rest."""

    event_types = frozenset({ThingHappened.event_type})

    def __init__(self) -> None:
        self.decoder = FastDecoder([ThingHappened])
        self.slow = 0

    def fast(self, records):
        decoded = self.decoder.decode([r.value for r in records])
        table = pa.table(
            {
                "event_id": decoded.ids,
                "sequence": [p.sequence for p in decoded.payloads],
                "fail": [p.fail for p in decoded.payloads],
            }
        )
        return Rows([records[i] for i in decoded.rows], decoded.ids, table), [records[i] for i in decoded.rest]

    def of(self, deliveries):
        self.slow += len(deliveries)
        table = pa.table(
            {
                "event_id": [d.event.id for d in deliveries],
                "sequence": pa.array([d.payload.sequence for d in deliveries], pa.int64()),
                "fail": pa.array([d.payload.fail for d in deliveries], pa.bool_()),
            }
        )
        return Rows([d.record for d in deliveries], [d.event.id for d in deliveries], table)


class TestRowsConsumer:
    async def test_a_table_of_each_batch_once_each_with_bad_events_dead_lettered(self, db, infra_up):
        from llmops import infra

        topic = f"{TEST_TOPIC}.rows"
        await infra.ensure_topics(BOOTSTRAP, [topic], 1, 1)
        name = f"tests-{RUN}-rows"
        goods = [thing(i, subject="s") for i in range(10, 20)]
        failing = thing(1, fail=True, subject="s")
        coerced = goods[0].model_copy(update={"data": {"sequence": "7"}, "id": thing(0).id})  # pydantic's to take
        invalid = goods[0].model_copy(update={"data": {"sequence": "seven"}, "id": thing(0).id})
        values = [
            b"not json at all",
            invalid.to_bytes(),
            *(g.to_bytes() for g in goods[:5]),
            failing.to_bytes(),
            goods[0].to_bytes(),  # the same event again in the batch: applied once
            coerced.to_bytes(),
            *(g.to_bytes() for g in goods[5:]),
        ]
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        for value in values:
            await producer.send_and_wait(topic, value, key=b"s")
        await producer.stop()

        async def run_consumer(until, group_id: str | None = None) -> ThingRows:
            decoder = ThingRows()
            consumer = Consumer(
                name, db, make_broker(client_id=name), [topic], max_attempts=2, backoff_seconds=0.01, group_id=group_id
            )

            async def apply(session, rows: Rows) -> None:
                if any(rows.table["fail"].to_pylist()):
                    raise RuntimeError("this handler refuses a batch holding a failing event")
                await session.execute(
                    insert(effects),
                    [
                        {"event_id": e, "sequence": s, "consumer": name}
                        for e, s in zip(rows.ids, rows.table["sequence"].to_pylist(), strict=True)
                    ],
                )

            consumer.on_rows(decoder, apply)
            consumer.subscribe()
            await consumer.broker.start()
            try:
                await wait_for(until, what="the consumer to apply the events")
            finally:
                await consumer.broker.stop()
            return decoder

        decoder = await run_consumer(lambda: _has(db, name, [*goods, coerced]))
        assert decoder.slow == 1, "only the value pydantic coerces went the usual way"
        assert await count_effects(db, name) == (11, 11)
        dead = await dead_letters_of(DEAD_LETTER, name)
        reasons = sorted((dict(r.headers)[dlq_headers.REASON].decode(), r.value) for r in dead)
        assert reasons == sorted(
            [
                ("not_json", b"not json at all"),
                ("invalid_data", invalid.to_bytes()),
                ("handler_failed", failing.to_bytes()),
            ]
        )

        # Redelivered from the start (another group, the same consumer and inbox): nothing is applied twice.
        await run_consumer(lambda: _caught_up(f"{name}-again", topic), group_id=f"{name}-again")
        assert await count_effects(db, name) == (11, 11)
