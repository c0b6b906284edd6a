"""The CloudEvents 1.0 envelope (structured JSON mode) every platform event travels in, and the payload registry.

A payload is a frozen pydantic model subclassing :class:`EventPayload`; subclassing registers it under its
``event_type`` and ``schema_version``. :func:`new_event` wraps a payload in an envelope; :func:`parse_event` turns
bytes back into an envelope and its typed payload, upcasting old schema versions, or raises :class:`MalformedEvent`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import uuid_utils
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops_schemas.canonical import canonical_json

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"

#: Field metadata marking a payload field whose raw value must never be stored in the audit log (only its hash).
SENSITIVE = {"x-sensitive": True}


def new_event_id() -> str:
    """A fresh UUIDv7: time-ordered, so ids sort roughly by creation time."""
    return str(uuid_utils.uuid7())


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


#: Attributes CloudEvents 1.0 requires that the model fills in when Python code builds an event (``id``,
#: ``specversion``): events read from bytes must carry them, or each redelivery would get a new id.
REQUIRED_ON_THE_WIRE = ("id", "specversion")
_REQUIRED_SET = frozenset(REQUIRED_ON_THE_WIRE)


def _wire_schema(schema: dict[str, Any]) -> None:
    # The exported schema is for publishers: what the wire requires, not what Python construction defaults.
    required = set(schema.get("required", ())) | set(REQUIRED_ON_THE_WIRE)
    schema["required"] = [name for name in schema["properties"] if name in required]


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope with the platform's extension attributes.

    ``subject`` is the aggregate id and the Kafka key. ``actor`` is who caused the event, ``project`` the
    project scope, ``correlationid`` ties together everything one request caused, ``causationid`` names the event
    this one reacts to, ``traceparent`` is the W3C trace context, ``schemaversion`` the payload's version.

    ``id`` and ``specversion`` are required on the wire, as CloudEvents 1.0 says; only an event built in Python
    gets them by default (a fresh UUIDv7 and "1.0").
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, json_schema_extra=_wire_schema)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_event_id, description="UUID (v7 when produced by the platform)")
    source: str = Field(min_length=1, description="URI-reference of the producer, e.g. /llmops/datasets")
    type: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    subject: str = Field(min_length=1, max_length=512)
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    actor: str | None = None
    project: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = Field(default=None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
    schemaversion: int = Field(default=1, ge=1)

    @field_validator("id")
    @classmethod
    def _id_is_uuid(cls, value: str) -> str:
        # A regex, not uuid.UUID(): this runs for every event every consumer reads.
        if _UUID.fullmatch(value) is None:
            raise ValueError("id must be a UUID in its canonical 8-4-4-4-12 hex form")
        return value.lower()

    @field_validator("time")
    @classmethod
    def _time_is_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone (RFC 3339)")
        return value.astimezone(UTC)

    def to_json_dict(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict, attributes that are None left out."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_bytes(self) -> bytes:
        """The canonical JSON bytes of the envelope, as published on Kafka."""
        return canonical_json(self.to_json_dict())


class EventPayload(BaseModel):
    """Base of every event payload. Subclasses set ``event_type``, ``topic`` and, when changed, ``schema_version``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    event_type: ClassVar[str]
    topic: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            register_payload(cls)

    @classmethod
    def sensitive_fields(cls) -> frozenset[str]:
        """Names of the fields marked :data:`SENSITIVE`: stored as hashes, never raw, in the audit log."""
        return frozenset(
            name
            for name, field in cls.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("x-sensitive")
        )


#: event type -> the payload model of its current schema version
PAYLOADS: dict[str, type[EventPayload]] = {}
#: (event type, from version) -> function turning that version's data into the next version's
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_payload(model: type[EventPayload]) -> type[EventPayload]:
    """Register ``model`` as the current payload of its event type (done on subclassing)."""
    existing = PAYLOADS.get(model.event_type)
    if existing is not None and existing.__qualname__ != model.__qualname__:
        raise ValueError(f"event type {model.event_type!r} is already registered by {existing.__qualname__}")
    PAYLOADS[model.event_type] = model
    return model


def upcaster(event_type: str, from_version: int):
    """Decorator registering a function that turns ``from_version`` data of ``event_type`` into the next version."""

    def register(
        fn: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def new_event(
    payload: EventPayload,
    *,
    subject: str,
    source: str,
    actor: str | None = None,
    project: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    traceparent: str | None = None,
) -> CloudEvent:
    """Wrap ``payload`` in a fresh envelope (new UUIDv7 id, current time)."""
    return CloudEvent(
        source=source,
        type=payload.event_type,
        subject=subject,
        data=payload.model_dump(mode="json"),
        actor=actor,
        project=project,
        correlationid=correlation_id,
        causationid=causation_id,
        traceparent=traceparent,
        schemaversion=payload.schema_version,
    )


class MalformedEvent(ValueError):
    """Bytes that are not a valid platform event; ``reason`` is one of: not_json, invalid_envelope,
    unknown_type, invalid_data, unsupported_version."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_envelope(raw: bytes | str) -> CloudEvent:
    """Decode and validate the envelope only (any type, data not checked).

    Raises :class:`MalformedEvent` (``invalid_envelope``) when ``id`` or ``specversion`` is missing: the model's
    defaults are for events built in Python, not for filling in what a publisher left out.
    """
    try:
        event = CloudEvent.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise MalformedEvent("not_json", first["msg"]) from exc
        if first["type"] == "model_type":
            raise MalformedEvent("invalid_envelope", "the event is not a JSON object") from exc
        raise MalformedEvent("invalid_envelope", _errors(exc)) from exc
    except UnicodeDecodeError as exc:
        raise MalformedEvent("not_json", str(exc)) from exc
    # Checked after validation, on the set pydantic already keeps: no second parse of every event.
    if not event.model_fields_set >= _REQUIRED_SET:
        missing = [name for name in REQUIRED_ON_THE_WIRE if name not in event.model_fields_set]
        raise MalformedEvent("invalid_envelope", "; ".join(f"{name}: required by CloudEvents 1.0" for name in missing))
    return event


def parse_payload(event: CloudEvent) -> EventPayload:
    """Validate ``event.data`` against its registered payload model, upcasting older schema versions."""
    model = PAYLOADS.get(event.type)
    if model is None:
        raise MalformedEvent("unknown_type", f"no payload is registered for event type {event.type!r}")
    data, version = dict(event.data), event.schemaversion
    if version > model.schema_version:
        raise MalformedEvent(
            "unsupported_version",
            f"{event.type} v{version} is newer than this reader (v{model.schema_version})",
        )
    while version < model.schema_version:
        step = UPCASTERS.get((event.type, version))
        if step is None:
            raise MalformedEvent("unsupported_version", f"no upcaster for {event.type} v{version}")
        data, version = step(data), version + 1
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MalformedEvent("invalid_data", _errors(exc)) from exc


def parse_event(raw: bytes | str) -> tuple[CloudEvent, EventPayload]:
    """Decode bytes into an envelope and its typed payload, or raise :class:`MalformedEvent`."""
    event = parse_envelope(raw)
    return event, parse_payload(event)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
