"""The records consumer's decoder: the fast path's columns hold, row by row, what ``record_of`` makes of the same
events through pydantic (completed and failed ones mixed, nulls where a type has no such field), and its rows,
records and ids stay aligned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import ConsumerRecord

from llmops_monitoring.records import DECODED, RecordRows, record_of
from llmops_schemas import parse_event

from . import events, traffic


def consumer_records(values: list[bytes | None]) -> list[ConsumerRecord]:
    return [
        ConsumerRecord("t", 0, n, 0, 0, None, v, None, 0, 0 if v is None else len(v), []) for n, v in enumerate(values)
    ]


def expected(value: bytes) -> dict:
    row = record_of(*parse_event(value))
    del row["flags"]
    return row


def test_mixed_traffic_decodes_to_the_rows_record_of_makes():
    start = datetime.now(UTC) - timedelta(minutes=5)
    sent = [
        events.from_record(r, deployment_id=f"d{n % 3}").model_copy(update={"source": f"/gateway/{n % 7}"})
        for n, r in enumerate(traffic.records(400, seed=3, start=start))
    ]
    sent += [events.failed(status=503), events.completed(deployment_id=None, user=None, source="/elsewhere")]
    values = [event.to_bytes() for event in sent]
    assert {e.type for e in sent} == {"inference.completed", "inference.failed"}
    records = consumer_records(values)

    rows, rest = RecordRows().fast(records)

    assert rest == []
    assert rows.table.schema == DECODED and len(rows) == len(values)
    table = rows.table.to_pylist()
    for record, event_id, row in zip(rows.records, rows.ids, table, strict=True):
        assert row == expected(record.value)
        assert event_id == row["event_id"]
    assert sorted(r.offset for r in rows.records) == list(range(len(values)))


def test_what_the_fast_path_does_not_vouch_for_is_left_over_and_the_rest_still_aligns():
    good = [events.completed(), events.failed(), events.completed(output="")]
    odd = events.completed().model_dump(mode="json")
    odd["data"]["tokens_in"] = "12"  # pydantic coerces it: the usual decoding's to take
    values = [good[0].to_bytes(), orjson.dumps(odd), None, good[1].to_bytes(), b"not json", good[2].to_bytes()]

    rows, rest = RecordRows().fast(consumer_records(values))

    assert [r.offset for r in rest] == [1, 2, 4]
    assert sorted(r.offset for r in rows.records) == [0, 3, 5]
    for record, row in zip(rows.records, rows.table.to_pylist(), strict=True):
        assert row == expected(record.value)


def test_a_batch_of_nothing_it_vouches_for_is_an_empty_table():
    rows, rest = RecordRows().fast(consumer_records([b"{}", None]))
    assert len(rows) == 0 and rows.table.schema == DECODED and len(rest) == 2
