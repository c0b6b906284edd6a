"""Dead letters read back and replayed: ids, headers and selection without Kafka; bounded reads and replays on it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from llmops.bus import DeadLetterPublisher, make_broker, make_consumer
from llmops.bus import dlq as headers
from llmops.bus.dead_letters import (
    REPLAY_OF,
    REPLAYED_AT,
    DeadLetter,
    DeadLetterReader,
    ReplayFailed,
    Selection,
    parse_id,
    replay,
)
from llmops_schemas.topics import DEAD_LETTER

from .conftest import RUN

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(topic: str, offset: int, *, key: bytes | None = b"k", value: bytes = b"{}", extra=(), partition: int = 0):
    """A record as a consumer hands it over (what a DeadLetterPublisher is given)."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(NOW.timestamp() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value),
        headers=list(extra),
    )


def dead_letter(*, reason="handler_failed", consumer="c", topic="t", at: datetime = NOW, extra=None) -> DeadLetter:
    values = {
        headers.REASON: reason,
        headers.ERROR: "ConnectionRefusedError(111)",
        headers.CONSUMER: consumer,
        headers.ORIGINAL_TOPIC: topic,
        headers.ORIGINAL_PARTITION: "2",
        headers.ORIGINAL_OFFSET: "41",
        headers.ATTEMPTS: "3",
        **(extra or {}),
    }
    return DeadLetter(partition=1, offset=7, time=at, key=b"k", value=b"{}", headers=values)


class TestIds:
    def test_an_id_is_the_partition_and_offset_on_the_dead_letter_topic(self):
        assert parse_id("1-7") == (1, 7)
        assert dead_letter().id == "1-7"

    @pytest.mark.parametrize("bad", ["", "1", "1:7", "-1-7", "a-b", "1-7-8", "1-" + "9" * 20])
    def test_anything_else_is_refused(self, bad):
        with pytest.raises(ValueError, match="not a dead letter id"):
            parse_id(bad)


class TestDeadLetter:
    def test_reads_the_reason_and_origin_from_the_headers(self):
        letter = dead_letter()
        assert (letter.reason, letter.consumer, letter.topic) == ("handler_failed", "c", "t")
        assert (letter.original_partition, letter.original_offset, letter.attempts) == (2, 41, 3)
        assert letter.error == "ConnectionRefusedError(111)"

    def test_is_built_from_a_record_of_the_dead_letter_topic(self):
        raw = record(DEAD_LETTER, 9, extra=[(headers.REASON, b"not_json"), ("x-dlq-original-a", b"\xff")])
        letter = DeadLetter.of(raw)
        assert (letter.id, letter.time, letter.key, letter.value) == ("0-9", NOW, b"k", b"{}")
        assert letter.reason == "not_json"
        assert letter.original_headers == {"a": "\ufffd"}

    def test_a_record_without_an_origin_has_no_topic_to_go_back_to(self):
        letter = DeadLetter.of(record(DEAD_LETTER, 9))
        assert (letter.topic, letter.reason, letter.attempts) == (None, None, None)


class TestReplayHeaders:
    def test_keep_the_original_headers_and_name_the_dead_letter_and_the_time(self):
        letter = dead_letter(extra={"x-dlq-original-traceparent": "00-abc", "x-dlq-original-kind": "probe"})
        assert letter.replay_headers(NOW) == [
            ("traceparent", b"00-abc"),
            ("kind", b"probe"),
            (REPLAY_OF, b"1:7"),
            (REPLAYED_AT, NOW.isoformat().encode()),
        ]

    def test_an_earlier_replay_mark_is_replaced(self):
        letter = dead_letter(extra={f"x-dlq-original-{REPLAY_OF}": "0:3", f"x-dlq-original-{REPLAYED_AT}": "then"})
        assert dict(letter.replay_headers(NOW)) == {REPLAY_OF: b"1:7", REPLAYED_AT: NOW.isoformat().encode()}


class TestSelection:
    def test_an_empty_selection_selects_everything(self):
        assert Selection().matches(dead_letter())

    @pytest.mark.parametrize(
        ("selection", "selected"),
        [
            pytest.param(Selection(reason="handler_failed"), True, id="reason"),
            pytest.param(Selection(reason="not_json"), False, id="other-reason"),
            pytest.param(Selection(consumer="c", topic="t"), True, id="consumer-and-topic"),
            pytest.param(Selection(consumer="c", topic="u"), False, id="other-topic"),
            pytest.param(Selection(from_time=NOW), True, id="from-time-is-inclusive"),
            pytest.param(Selection(to_time=NOW), False, id="to-time-is-exclusive"),
            pytest.param(Selection(from_time=NOW + timedelta(seconds=1)), False, id="before-from-time"),
        ],
    )
    def test_selects_by_each_field(self, selection, selected):
        assert selection.matches(dead_letter()) is selected


# -- on Kafka -----------------------------------------------------------------------------------------------------
@pytest.fixture
async def origin(infra_up):
    """A topic of this test alone, standing in for the topic the dead letters came from."""
    from llmops import infra

    name = f"llmops.test.{RUN}.{uuid.uuid4().hex[:6]}.origin"
    await infra.ensure_topics(infra_up.bootstrap_servers, [name], 1, 1)
    yield name
    await infra.delete_topics(infra_up.bootstrap_servers, [name])


@pytest.fixture
async def dead_lettered(origin):
    """Dead-letters records of ``origin`` as a consumer named for this test does; returns that consumer's name."""
    consumer = f"tests-{RUN}-{uuid.uuid4().hex[:6]}"
    broker = make_broker(client_id=consumer)
    await broker.start()
    publisher = DeadLetterPublisher(broker, consumer=consumer)

    async def publish(offsets, *, reason="handler_failed") -> str:
        for offset in offsets:
            trace = [("traceparent", f"00-{offset}".encode())]
            raw = record(origin, offset, key=f"key-{offset}".encode(), value=f"value {offset}".encode(), extra=trace)
            await publisher.publish(raw, reason=reason, error=f"ConnectionRefusedError({offset})", attempts=3)
        return consumer

    yield publish
    await broker.stop()


async def letters_of(consumer: str, **selection) -> list[DeadLetter]:
    async with DeadLetterReader() as reader:
        return [letter async for letter in reader.scan(Selection(consumer=consumer, **selection))]


async def read_all(topic: str) -> list[ConsumerRecord]:
    """Every record of a one-partition topic, up to its end offset now."""
    consumer = make_consumer(client_id="tests-dlq", group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        records = []
        while len(records) < end:
            records += (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        return records
    finally:
        await consumer.stop()


@pytest.mark.integration
class TestReading:
    async def test_a_scan_selects_by_consumer_and_reason(self, dead_lettered, origin):
        consumer = await dead_lettered(range(3))
        await dead_lettered([3], reason="not_json")
        letters = await letters_of(consumer, reason="handler_failed")
        assert sorted(letter.value for letter in letters) == [b"value 0", b"value 1", b"value 2"]
        assert {(letter.topic, letter.attempts) for letter in letters} == {(origin, 3)}
        assert [letter.value for letter in await letters_of(consumer, reason="not_json")] == [b"value 3"]

    async def test_pages_after_a_cursor_add_up_to_the_whole_selection(self, dead_lettered):
        consumer = await dead_lettered(range(5))
        pages, after = [], None
        async with DeadLetterReader() as reader:
            while page := [letter async for letter in reader.scan(Selection(consumer=consumer), after=after, limit=2)]:
                pages.append([letter.value for letter in page])
                after = page[-1].id
        assert [len(page) for page in pages] == [2, 2, 1]
        assert sorted(value for page in pages for value in page) == [f"value {i}".encode() for i in range(5)]

    async def test_a_time_range_selects_by_when_they_were_dead_lettered(self, dead_lettered):
        consumer = await dead_lettered([0])
        # Reading the first back takes far longer than a millisecond, so the second is dead-lettered past this.
        boundary = (await letters_of(consumer))[0].time + timedelta(milliseconds=1)
        await dead_lettered([1])
        assert [letter.value for letter in await letters_of(consumer, from_time=boundary)] == [b"value 1"]
        assert [letter.value for letter in await letters_of(consumer, to_time=boundary)] == [b"value 0"]

    async def test_one_is_found_by_its_id_and_an_id_past_the_end_is_none(self, dead_lettered):
        consumer = await dead_lettered([0])
        (letter,) = await letters_of(consumer)
        async with DeadLetterReader() as reader:
            assert await reader.get(letter.id) == letter
            assert await reader.get(f"{letter.partition}-{10**15}") is None
            assert await reader.get("999-0") is None


@pytest.mark.integration
class TestReplay:
    async def test_publishes_the_original_key_value_and_headers_marked_as_a_replay(self, dead_lettered, origin):
        consumer = await dead_lettered(range(2))
        async with DeadLetterReader() as reader:
            report = await replay(reader.scan(Selection(consumer=consumer)), existing_topics=reader.topics)
        assert (report.count, dict(report.topics), report.skipped) == (2, {origin: 2}, {})
        replayed = await read_all(origin)
        assert sorted((r.key, r.value) for r in replayed) == [(b"key-0", b"value 0"), (b"key-1", b"value 1")]
        marks = [dict(r.headers) for r in replayed]
        assert sorted(m["traceparent"] for m in marks) == [b"00-0", b"00-1"]
        assert [m[REPLAY_OF].decode() for m in marks] == [letter_id.replace("-", ":") for letter_id in report.ids]
        assert all(datetime.fromisoformat(m[REPLAYED_AT].decode()) <= datetime.now(UTC) for m in marks)

    async def test_a_dry_run_counts_and_publishes_nothing(self, dead_lettered, origin):
        consumer = await dead_lettered(range(3))
        async with DeadLetterReader() as reader:
            report = await replay(
                reader.scan(Selection(consumer=consumer)), existing_topics=reader.topics, dry_run=True
            )
        assert (report.count, report.dry_run) == (3, True)
        assert await read_all(origin) == []

    async def test_a_replay_that_stops_part_way_reports_what_was_acknowledged(self, origin):
        fits = DeadLetter(0, 1, NOW, b"k", b"small", {headers.ORIGINAL_TOPIC: origin})
        too_big = DeadLetter(0, 2, NOW, b"k", b"x" * 2_000_000, {headers.ORIGINAL_TOPIC: origin})
        with pytest.raises(ReplayFailed) as failed:
            await replay([fits, too_big, fits], existing_topics={origin})
        assert (failed.value.report.ids, dict(failed.value.report.topics)) == (["0-1"], {origin: 1})
        assert [r.value for r in await read_all(origin)] == [b"small"]

    async def test_a_letter_whose_topic_is_gone_is_skipped(self, dead_lettered, origin):
        consumer = await dead_lettered([0])
        async with DeadLetterReader() as reader:
            letters = [letter async for letter in reader.scan(Selection(consumer=consumer))]
        report = await replay(letters, existing_topics={"some.other.topic"})
        assert (report.count, report.skipped) == (0, {letters[0].id: "topic_missing"})
        assert await read_all(origin) == []
