"""An inference record as the monitoring service keeps it: one flat row per ``inference.completed`` or
``inference.failed`` event (ours or another system's), the same columns in the Parquet record store, in the metrics,
the anomaly flags and the drift frames.

The text is what the producer sent: already redacted or hashed (``text_mode``). ``flags`` are the unusual-output
kinds found in the record (``anomalies.flags_of``), set before the record is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

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
