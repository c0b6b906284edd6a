"""The log records every event once, in order, on real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select

from llmops.testing import caught_up, read_to_end
from llmops_audit import service
from llmops_audit.models import audit_log

from .conftest import probes, publish, wait_for_head

pytestmark = pytest.mark.integration


class TestIngest:
    async def test_10000_events_from_several_producers_are_recorded_once_in_order_and_verify(self, audit, topics):
        events = probes(10_000)
        # Three producers at once, each on its own topic, each owning a third of the subjects (as a service owns
        # its aggregates): the order to keep is each subject's order of production.
        shares = [[e for e in events if int(e.subject.split("-")[1]) % 3 == i] for i in range(3)]
        await asyncio.gather(*(publish(topic, share) for topic, share in zip(topics, shares, strict=True)))
        await wait_for_head(audit.runtime.db, 10_000)

        async with audit.runtime.db.sessions() as session:
            total, distinct = (
                await session.execute(select(func.count(), func.count(audit_log.c.event_id.distinct())))
            ).one()
            rows = await session.execute(select(audit_log.c.subject, audit_log.c.event).order_by(audit_log.c.seq))
            order: dict[str, list[int]] = {}
            for subject, event in rows:
                order.setdefault(subject, []).append(json.loads(event)["data"]["sequence"])
        assert (total, distinct) == (10_000, 10_000)
        assert {e.id for e in events} == await _recorded_ids(audit)
        for subject, sequence in order.items():
            assert sequence == list(range(len(sequence))), f"{subject}'s events are out of order"

        report = await service.verify(audit.runtime.db, audit.signer.public_key)
        assert report.ok, report.as_dict()
        assert report.checked == 10_000

        # Redelivering 1,000 of them adds nothing.
        await publish(topics[0], events[:1000])
        await caught_up(audit.settings.consumer_group, topics)
        async with audit.runtime.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(audit_log)) == 10_000
        assert (await service.verify(audit.runtime.db, audit.signer.public_key)).ok

    async def test_sensitive_payload_fields_are_stored_as_hashes_never_raw(self, audit, topics):
        from typing import ClassVar

        from pydantic import Field

        from llmops_schemas import SENSITIVE, EventPayload, new_event

        class PromptLogged(EventPayload):
            event_type: ClassVar[str] = "tests.prompt.logged"
            topic: ClassVar[str] = "llmops.inference"
            prompt: str = Field(json_schema_extra=SENSITIVE)
            tokens: int

        secret = "my card is 4111 1111 1111 1111"
        event = new_event(PromptLogged(prompt=secret, tokens=7), subject="req-1", source="/tests")
        await publish(topics[0], [event])
        await wait_for_head(audit.runtime.db, 1)
        async with audit.runtime.db.sessions() as session:
            stored = await session.scalar(select(audit_log.c.event))
        assert secret not in stored
        data = json.loads(stored)["data"]
        assert data["tokens"] == 7
        assert data["prompt"]["redacted"] == "sha256" and len(data["prompt"]["sha256"]) == 64


async def _recorded_ids(audit) -> set[str]:
    async with audit.runtime.db.sessions() as session:
        return {str(i) for i in (await session.execute(select(audit_log.c.event_id))).scalars()}


class TestMalformedInput:
    async def test_a_malformed_record_goes_to_the_dead_letter_topic_and_the_log_carries_on(self, audit, topics):
        from aiokafka import AIOKafkaProducer

        from llmops.bus import dlq
        from llmops_schemas.topics import DEAD_LETTER

        from .conftest import BOOTSTRAP

        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        await producer.send_and_wait(topics[1], b"{not an event", key=b"broken")
        await producer.stop()
        good = probes(1)
        await publish(topics[1], good)
        await wait_for_head(audit.runtime.db, 1)
        assert await _recorded_ids(audit) == {good[0].id}

        dead = await _dead_letters(DEAD_LETTER, audit.settings.consumer_group)
        assert [(r.value, dict(r.headers)[dlq.REASON]) for r in dead] == [(b"{not an event", b"not_json")]

    @pytest.mark.parametrize("attribute", ["id", "specversion"])
    async def test_an_event_without_an_attribute_cloudevents_requires_is_dead_lettered_not_recorded(
        self, audit, topics, attribute
    ):
        from aiokafka import AIOKafkaProducer

        from llmops.bus import dlq
        from llmops_schemas import canonical_json
        from llmops_schemas.topics import DEAD_LETTER

        from .conftest import BOOTSTRAP

        incomplete = probes(1)[0].to_json_dict()
        del incomplete[attribute]
        raw = canonical_json(incomplete)
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        try:
            await producer.send_and_wait(topics[0], raw, key=b"thing-0")
        finally:
            await producer.stop()
        good = probes(1, start=1)
        await publish(topics[0], good)
        await wait_for_head(audit.runtime.db, 1)
        await caught_up(audit.settings.consumer_group, topics)  # offsets are committed after the dead letter's ack
        assert await _recorded_ids(audit) == {good[0].id}

        dead = await _dead_letters(DEAD_LETTER, audit.settings.consumer_group)
        assert [r.value for r in dead] == [raw]
        headers = dict(dead[0].headers)
        assert headers[dlq.REASON] == b"invalid_envelope"
        assert headers[dlq.ERROR].decode().startswith(f"{attribute}: ")


async def _dead_letters(topic: str, consumer: str) -> list:
    return [r for r in await read_to_end(topic) if dict(r.headers).get("x-dlq-consumer") == consumer.encode()]
