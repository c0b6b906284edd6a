"""The bus under faults: outages told from faults, a dead-letter topic that refuses records, poison pills in the
outbox. Real Postgres and Kafka."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import sqlalchemy.exc
import urllib3.exceptions
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from sqlalchemy import func, insert, select

from llmops.bus import Consumer, EventTooLarge, OutboxRelay, add_to_outbox, make_broker, make_producer, outbox
from llmops.bus.faults import is_transient
from llmops.bus.outbox import PARKED
from llmops.settings import KafkaSettings
from llmops.testing import read_to_end
from llmops_schemas import new_event

from .conftest import RUN, TEST_TOPIC, ThingHappened, effects
from .test_bus import count_effects, dead_letters_of, recording_consumer, thing, wait_for

BOOTSTRAP = KafkaSettings().bootstrap_servers


class TestOutagesAreToldFromFaults:
    def test_an_unreachable_database_wrapped_by_sqlalchemy_is_an_outage(self) -> None:
        try:
            try:
                raise ConnectionRefusedError(111, "Connect call failed")
            except ConnectionRefusedError as cause:
                raise sqlalchemy.exc.OperationalError("SELECT 1", {}, cause) from cause
        except sqlalchemy.exc.OperationalError as error:
            assert is_transient(error)

    @pytest.mark.parametrize("sqlstate", ["57P01", "57P03", "08006", "53300", "40001"])
    def test_a_server_shutting_down_or_overloaded_is_an_outage(self, sqlstate: str) -> None:
        error = asyncpg.PostgresError.new({"C": sqlstate, "M": "the database system is shutting down"})
        assert is_transient(sqlalchemy.exc.DBAPIError("INSERT", {}, error))

    @pytest.mark.parametrize("sqlstate", ["23505", "22P02", "57014", "42P01"])
    def test_bad_data_a_cancelled_statement_or_a_bug_is_a_fault(self, sqlstate: str) -> None:
        error = asyncpg.PostgresError.new({"C": sqlstate, "M": "refused"})
        assert not is_transient(sqlalchemy.exc.DBAPIError("INSERT", {}, error))

    def test_the_object_store_unreachable_is_an_outage(self) -> None:
        refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")
        assert is_transient(urllib3.exceptions.MaxRetryError(None, "/bucket/key", reason=refused))
        assert is_transient(urllib3.exceptions.ProtocolError("Connection broken"))
        assert not is_transient(urllib3.exceptions.MaxRetryError(None, "/bucket/key", reason=None))

    def test_kafka_unreachable_is_an_outage_and_a_record_too_large_is_not(self) -> None:
        assert is_transient(KafkaConnectionError())
        assert not is_transient(MessageSizeTooLargeError())
        assert not is_transient(ValueError("a handler's bug"))


@pytest.mark.integration
class TestADeadLetterTopicThatRefuses:
    async def test_no_offset_passes_the_record_and_after_the_fix_it_is_processed_once(self, db, infra_up):
        topic, dead = f"{TEST_TOPIC}.refusing", f"{TEST_TOPIC}.refusing-dlq"
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            # The dead-letter topic takes no record over 200 bytes: every dead letter (headers alone are more) fails.
            await admin.create_topics(
                [
                    NewTopic(topic, 1, 1),
                    NewTopic(dead, 1, 1, topic_configs={"max.message.bytes": "200"}),
                ]
            )
            name = f"tests-{RUN}-refusing-dlq"
            first, second = thing(1, subject="s"), thing(2, subject="s")
            await _send(topic, [first.to_bytes(), b"not json, so a dead letter", second.to_bytes()])
            consumer = recording_consumer(name, db, [topic], max_backoff_seconds=0.2, dead_letter_topic=dead)
            await consumer.broker.start()
            try:

                async def rewound_thrice() -> bool:
                    return consumer.stalled_batches >= 3

                await wait_for(rewound_thrice, within=60, what="the refused dead letter to stall the batch")
                assert "MessageSizeTooLarge" in (consumer.stalled_by or "")
                assert consumer.readiness() != "ok"
                committed = (await admin.list_consumer_group_offsets(name)).get(TopicPartition(topic, 0))
                assert committed is None or committed.offset <= 1, "an offset passed the record not dead-lettered"

                # The fix: the dead-letter topic takes records of the usual size again.
                resource = ConfigResource(ConfigResourceType.TOPIC, dead, configs={"max.message.bytes": "1048588"})
                await admin.alter_configs([resource])

                async def processed() -> bool:
                    offsets = await admin.list_consumer_group_offsets(name)
                    return (
                        offsets.get(TopicPartition(topic, 0)) is not None
                        and offsets[TopicPartition(topic, 0)].offset == 3
                    )

                await wait_for(processed, within=60, what="the batch to be processed after the fix")
            finally:
                await consumer.broker.stop()
            assert consumer.readiness() == "ok"
            dead_letters = await dead_letters_of(dead, name)
            assert [r.value for r in dead_letters] == [b"not json, so a dead letter"]
            assert await count_effects(db, name) == (2, 2)
        finally:
            await admin.delete_topics([topic, dead])
            await admin.close()


async def _send(topic: str, values: list[bytes]) -> None:
    producer = make_producer(client_id="tests-send")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"s")
    finally:
        await producer.stop()


@pytest.mark.integration
class TestNoPoisonPillInTheOutbox:
    async def test_an_event_over_the_limit_is_refused_where_it_is_created(self, db) -> None:
        event = new_event(ThingHappened(sequence=1), subject="x" * 512, source="/tests" + "/x" * 500_000, actor="tests")
        async with db.sessions() as session:
            before = await session.scalar(select(func.count()).select_from(outbox))
        with pytest.raises(EventTooLarge, match="LLMOPS_KAFKA_MAX_EVENT_BYTES"):
            async with db.transaction() as session:
                await add_to_outbox(session, thing(2), event)
        async with db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(outbox)) == before

    async def test_a_row_that_can_never_be_sent_is_parked_and_later_rows_are_published(self, db) -> None:
        # Stored as an older version of the platform would have: no size check where it was created.
        from llmops import infra

        topic = f"{TEST_TOPIC}.parking"  # of this test alone: other tests read TEST_TOPIC from its start
        await infra.ensure_topics(BOOTSTRAP, [topic], 1, 1)
        poison = thing(3_000_000)
        later = [thing(3_000_001 + i) for i in range(20)]
        async with db.transaction() as session:
            await session.execute(
                insert(outbox).values(event_id=poison.id, topic=topic, key="poison", payload=b"x" * (2 * 1024 * 1024))
            )
            await add_to_outbox(session, *later, topic=topic)
        parked_before = PARKED.labels(topic, "MessageSizeTooLargeError")._value.get()
        producer = make_producer(client_id=f"tests-{uuid.uuid4().hex[:6]}")
        await producer.start()
        relay = OutboxRelay(db, producer, batch_size=10, poll_interval=0.05)
        task = asyncio.create_task(relay.run())
        try:

            async def settled() -> bool:
                async with db.sessions() as session:
                    pending = await session.scalar(
                        select(func.count()).where(
                            outbox.c.event_id.in_([poison.id, *(e.id for e in later)]),
                            outbox.c.published_at.is_(None),
                            outbox.c.parked_at.is_(None),
                        )
                    )
                return pending == 0

            await wait_for(settled, within=60, what="the relay to settle every row")
        finally:
            relay.stop()
            await task
            await producer.stop()
        async with db.sessions() as session:
            rows = {
                r.event_id: r
                for r in (
                    await session.execute(
                        select(
                            outbox.c.event_id, outbox.c.published_at, outbox.c.parked_at, outbox.c.park_reason
                        ).where(outbox.c.event_id.in_([poison.id, *(e.id for e in later)]))
                    )
                ).all()
            }
        assert rows[poison.id].published_at is None and rows[poison.id].parked_at is not None
        assert "MessageSizeTooLarge" in rows[poison.id].park_reason
        assert all(rows[e.id].published_at is not None for e in later)
        assert PARKED.labels(topic, "MessageSizeTooLargeError")._value.get() == parked_before + 1
        on_topic = {r.value for r in await read_to_end(topic)}
        assert {e.to_bytes() for e in later} <= on_topic
        await infra.delete_topics(BOOTSTRAP, [topic])


@pytest.mark.integration
class TestARewoundBatch:
    async def test_what_it_dead_lettered_is_not_dead_lettered_again_and_the_rest_applies_once(self, db, infra_up):
        topic, dead = f"{TEST_TOPIC}.rewound", f"{TEST_TOPIC}.rewound-dlq"
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1), NewTopic(dead, 1, 1)])
            name = f"tests-{RUN}-rewound"
            good = thing(7, subject="s")
            await _send(topic, [b"not json", good.to_bytes()])
            consumer = Consumer(
                name, db, make_broker(client_id=name), [topic], backoff_seconds=0.01, dead_letter_topic=dead
            )
            outages = []

            @consumer.on("tests.thing.happened")
            async def apply(session, event, payload: ThingHappened) -> None:
                if not outages:  # the database "goes away" once, after the dead letter was sent
                    outages.append(event.id)
                    raise ConnectionResetError("connection reset by peer")
                await session.execute(
                    insert(effects).values(event_id=event.id, sequence=payload.sequence, consumer=name)
                )

            consumer.subscribe()
            await consumer.broker.start()
            try:

                async def applied() -> bool:
                    return await count_effects(db, name) == (1, 1)

                await wait_for(applied, within=60, what="the good event after the outage")
            finally:
                await consumer.broker.stop()
            assert outages == [good.id]
            dead_letters = await dead_letters_of(dead, name)
            assert [r.value for r in dead_letters] == [b"not json"]
        finally:
            await admin.delete_topics([topic, dead])
            await admin.close()
