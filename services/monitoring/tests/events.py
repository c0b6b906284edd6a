"""Inference events as a gateway (ours or another system's) publishes them: CloudEvents with the
``inference.completed`` / ``inference.failed`` payloads, built from plain values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from llmops_schemas import CloudEvent, new_event
from llmops_schemas.events import InferenceCompleted, InferenceFailed


def completed(
    *,
    project: str = "p1",
    deployment_id: str | None = "d1",
    route: str = "assistant",
    latency_ms: float = 120.0,
    tokens_in: int = 12,
    tokens_out: int = 20,
    output: str = "Sure, here is the answer you asked for.",
    finish_reason: str = "stop",
    time: datetime | None = None,
    user: str | None = "u1",
    source: str | None = None,
) -> CloudEvent:
    request_id = uuid.uuid4().hex
    event = new_event(
        InferenceCompleted(
            request_id=request_id,
            project=project,
            route=route,
            api="chat.completions",
            deployment_id=deployment_id,
            model_version_id="mv1" if deployment_id else None,
            user=user,
            latency_ms=latency_ms,
            time_to_first_token_ms=latency_ms / 4,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=0.0001 * (tokens_in + tokens_out),
            finish_reason=finish_reason,
            input="What is the capital of France?",
            output=output,
        ),
        subject=request_id,
        source=source or "/llmops/deployment-gateway",
        actor=user or "app",
        project=project,
    )
    return event.model_copy(update={"time": time}) if time is not None else event


def failed(*, project: str = "p1", deployment_id: str | None = "d1", status: int = 502) -> CloudEvent:
    request_id = uuid.uuid4().hex
    return new_event(
        InferenceFailed(
            request_id=request_id,
            project=project,
            route="assistant",
            api="chat.completions",
            deployment_id=deployment_id,
            latency_ms=30.0,
            status=status,
            error="backend unavailable",
        ),
        subject=request_id,
        source="/llmops/deployment-gateway",
        actor="app",
        project=project,
    )


def now() -> datetime:
    return datetime.now(UTC)


def from_record(record: dict, *, project: str = "p1", deployment_id: str | None = None) -> CloudEvent:
    """The event a gateway would have published for a synthetic record (``traffic.records``)."""
    fields = {
        "request_id": record["request_id"],
        "project": project,
        "route": record["route"],
        "api": record["api"] or "chat.completions",
        "stream": record["stream"],
        "deployment_id": deployment_id or record["deployment_id"],
        "model_version_id": record["model_version_id"],
        "user": record["user"],
        "latency_ms": record["latency_ms"],
        "input": record["input"],
        "input_sha256": record["input_sha256"],
        "text_mode": record["text_mode"],
    }
    if record["outcome"] == "failed":
        payload = InferenceFailed(**fields, status=record["status"] or 500, error=record["error"] or "failed")
    else:
        payload = InferenceCompleted(
            **fields,
            time_to_first_token_ms=record["time_to_first_token_ms"],
            tokens_in=record["tokens_in"],
            tokens_out=record["tokens_out"],
            usage_source=record["usage_source"] or "backend",
            cost=record["cost"] or 0.0,
            finish_reason=record["finish_reason"],
            output=record["output"],
            output_sha256=record["output_sha256"],
        )
    event = new_event(payload, subject=record["request_id"], source="/llmops/deployment-gateway", project=project)
    return event.model_copy(update={"time": record["time"]})
