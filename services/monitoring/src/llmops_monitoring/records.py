"""An inference record as the monitoring service keeps it: one flat row per ``inference.completed`` or
``inference.failed`` event (ours or another system's), the same columns in the Parquet record store, in the metrics,
the anomaly flags and the drift frames.

The text is what the producer sent: already redacted or hashed (``text_mode``). ``flags`` are the unusual-output
kinds found in the record (``anomalies.flags_of``), set before the record is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from aiokafka import ConsumerRecord
from msgspec.structs import astuple

from llmops.bus import Delivery, Rows
from llmops.bus.fast_decode import FastDecoder
from llmops_schemas import CloudEvent
from llmops_schemas.events.inference import InferenceCompleted, InferenceFailed

#: The record store's schema (Parquet), in column order. Partition columns (date, deployment) are the file's path.
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("outcome", pa.string()),  # "completed" | "failed"
        ("source", pa.string()),  # the envelope's source: which system published it
        ("request_id", pa.string()),
        ("project", pa.string()),
        ("route", pa.string()),
        ("api", pa.string()),
        ("stream", pa.bool_()),
        ("shadow", pa.bool_()),
        ("deployment_id", pa.string()),
        ("model_version_id", pa.string()),
        ("prompt_version_id", pa.string()),
        ("user", pa.string()),
        ("key_id", pa.string()),
        ("attempts", pa.int32()),
        ("latency_ms", pa.float64()),
        ("time_to_first_token_ms", pa.float64()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("usage_source", pa.string()),
        ("cost", pa.float64()),
        ("finish_reason", pa.string()),
        ("status", pa.int32()),
        ("error", pa.string()),
        ("text_mode", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("input_sha256", pa.string()),
        ("output_sha256", pa.string()),
        ("flags", pa.list_(pa.string())),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)

#: The deployment partition of records that name none (an external publisher's, say).
NO_DEPLOYMENT = "none"


def record_of(event: CloudEvent, payload: InferenceCompleted | InferenceFailed) -> dict[str, Any]:
    """The flat record of one inference event (``flags`` empty: set by the anomaly detector)."""
    completed = isinstance(payload, InferenceCompleted)
    return {
        "event_id": event.id,
        "time": _utc(event.time),
        "outcome": "completed" if completed else "failed",
        "source": event.source,
        "request_id": payload.request_id,
        "project": payload.project,
        "route": payload.route,
        "api": payload.api,
        "stream": payload.stream,
        "shadow": payload.shadow,
        "deployment_id": payload.deployment_id,
        "model_version_id": payload.model_version_id,
        "prompt_version_id": payload.prompt_version_id,
        "user": payload.user,
        "key_id": payload.key_id,
        "attempts": payload.attempts,
        "latency_ms": payload.latency_ms,
        "time_to_first_token_ms": payload.time_to_first_token_ms if completed else None,
        "tokens_in": payload.tokens_in,
        "tokens_out": payload.tokens_out,
        "usage_source": payload.usage_source if completed else None,
        "cost": payload.cost,
        "finish_reason": payload.finish_reason if completed else None,
        "status": None if completed else payload.status,
        "error": None if completed else payload.error,
        "text_mode": payload.text_mode,
        "input": payload.input,
        "output": payload.output if completed else None,
        "input_sha256": payload.input_sha256,
        "output_sha256": payload.output_sha256 if completed else None,
        "flags": [],
    }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: The record store's columns but ``flags`` (set by the anomaly detector): what a batch decodes into.
DECODED = pa.schema([f for f in SCHEMA if f.name != "flags"])
_FAILED_ONLY = ("status", "error")
_COMPLETED_ONLY = ("time_to_first_token_ms", "usage_source", "finish_reason", "output", "output_sha256")


class RecordRows:
    """The records consumer's decoder (:class:`llmops.bus.RowsDecoder`): inference events straight into the record
    store's columns, the fast path (:class:`llmops.bus.fast_decode.FastDecoder`) for those it vouches for, the
    usual decoding's :func:`record_of` for the others."""

    event_types = frozenset({InferenceCompleted.event_type, InferenceFailed.event_type})

    def __init__(self) -> None:
        self._decoder = FastDecoder([InferenceCompleted, InferenceFailed])

    def fast(self, records: Sequence[ConsumerRecord]) -> tuple[Rows, list[ConsumerRecord]]:
        """The rows of what the fast path vouches for (grouped by event type: ``records``, ``ids`` and the table in
        the same order), and the records left for the usual decoding."""
        decoded = self._decoder.decode([r.value for r in records])
        by_type: dict[str, list[int]] = {}
        for n, envelope in enumerate(decoded.envelopes):
            by_type.setdefault(envelope.type, []).append(n)
        order = [n for indexes in by_type.values() for n in indexes]
        ids = [decoded.ids[n] for n in order]
        tables, start = [], 0
        for event_type, indexes in by_type.items():
            tables.append(
                _table(
                    event_type == InferenceCompleted.event_type,
                    [decoded.envelopes[n] for n in indexes],
                    [decoded.payloads[n] for n in indexes],
                    decoded.times.take(indexes),
                    ids[start : start + len(indexes)],  # this type's ids, in ``order``
                )
            )
            start += len(indexes)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables) if tables else DECODED.empty_table()
        return Rows([records[decoded.rows[n]] for n in order], ids, table), [records[i] for i in decoded.rest]

    def of(self, deliveries: Sequence[Delivery]) -> Rows:
        rows = [record_of(d.event, d.payload) for d in deliveries]
        for row in rows:
            del row["flags"]
        return Rows(
            [d.record for d in deliveries],
            [d.event.id for d in deliveries],
            pa.Table.from_pylist(rows, schema=DECODED),
        )


def _table(completed: bool, envelopes: list[Any], payloads: list[Any], times: pa.Array, ids: list[str]) -> pa.Table:
    """The decoded columns of events of one type: each payload struct a tuple, the tuples turned into columns (no
    attribute read per field and row); the other type's fields are nulls, as :func:`record_of` makes them."""
    n = len(payloads)
    values = dict(zip(payloads[0].__struct_fields__, zip(*map(astuple, payloads), strict=True), strict=True))
    absent = _FAILED_ONLY if completed else _COMPLETED_ONLY
    columns: dict[str, Any] = {
        "event_id": ids,
        "time": times,
        "outcome": ["completed" if completed else "failed"] * n,
        "source": [e.source for e in envelopes],
    }
    for field in list(DECODED)[4:]:
        columns[field.name] = (
            pa.nulls(n, field.type) if field.name in absent else pa.array(values[field.name], field.type)
        )
    return pa.table(columns, schema=DECODED)
