"""Inference records: one event per request the gateway answered (or failed to), with what served it.

The gateway publishes these straight to Kafka (idempotent, batched, off the response path), not through an outbox:
they are the data plane's records. Input and output are redacted with the platform's PII rules, or only hashed, by
the gateway's setting; the audit log keeps hashes of them, never the text. Other systems (their own gateways) may
publish the same events. Subject: the request id.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import SENSITIVE, EventPayload

SHA256 = r"^[0-9a-f]{64}$"

#: The longest text (input or output) a record carries, in characters; longer text is cut (and marked so).
MAX_RECORD_TEXT = 32_000
#: The longest a request may have taken, in milliseconds (a week: a batch API's window, with room to spare). Bounded,
#: like the cost, so that the sums a consumer keeps of many records stay finite numbers.
MAX_LATENCY_MS = 7 * 24 * 3600 * 1000.0
#: The most one request may cost, in the platform's currency unit.
MAX_COST = 1e9
#: The most tokens one request may count, in or out (a thousand times the longest context windows of 2026).
MAX_TOKENS = 10**9


class _InferenceRecord(EventPayload):
    request_id: str = Field(min_length=1, max_length=128)
    project: str
    route: str
    api: Literal["chat.completions", "completions"]
    stream: bool = False
    shadow: bool = Field(default=False, description="a shadow copy: its answer was recorded, never returned")
    deployment_id: str | None = None
    model_version_id: str | None = None
    model_hash: str | None = Field(default=None, pattern=SHA256)
    prompt_version_id: str | None = None
    user: str | None = None
    key_id: str | None = None
    attempts: int = Field(default=1, ge=1, description="deployments tried (fallbacks count)")
    latency_ms: float = Field(ge=0, le=MAX_LATENCY_MS)
    input: str | None = Field(default=None, max_length=MAX_RECORD_TEXT, json_schema_extra=SENSITIVE)
    input_sha256: str | None = Field(default=None, pattern=SHA256)
    text_mode: Literal["redacted", "hashed"] = "redacted"


class InferenceCompleted(_InferenceRecord):
    """A request was answered. ``usage_source`` says where the token counts came from: the backend's ``usage``, the
    model's tokenizer when the backend sent none, or an estimate (four characters a token) when the model's tokenizer
    is not the platform's to read (an external server)."""

    event_type: ClassVar[str] = "inference.completed"
    topic: ClassVar[str] = topics.INFERENCE

    time_to_first_token_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    tokens_in: int = Field(ge=0, le=MAX_TOKENS)
    tokens_out: int = Field(ge=0, le=MAX_TOKENS)
    usage_source: Literal["backend", "tokenizer", "estimate"] = "backend"
    cost: float = Field(ge=0, le=MAX_COST)
    finish_reason: str | None = None
    output: str | None = Field(default=None, max_length=MAX_RECORD_TEXT, json_schema_extra=SENSITIVE)
    output_sha256: str | None = Field(default=None, pattern=SHA256)


class InferenceFailed(_InferenceRecord):
    """A request ended in error: ``status`` is what the client got, ``error`` why."""

    event_type: ClassVar[str] = "inference.failed"
    topic: ClassVar[str] = topics.INFERENCE

    status: int = Field(ge=400, le=599)
    error: str = Field(max_length=2000)
    tokens_in: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    tokens_out: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    cost: float = Field(default=0, ge=0, le=MAX_COST)
