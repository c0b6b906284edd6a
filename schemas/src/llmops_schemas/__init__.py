"""Event contracts of the LLMOps platform: the CloudEvents envelope, the topic registry and every payload model."""

from llmops_schemas import events, topics
from llmops_schemas.canonical import canonical_json
from llmops_schemas.envelope import (
    CLOUDEVENTS_CONTENT_TYPE,
    PAYLOADS,
    SENSITIVE,
    CloudEvent,
    EventPayload,
    MalformedEvent,
    new_event,
    new_event_id,
    parse_envelope,
    parse_event,
    parse_payload,
    upcaster,
)

__all__ = [
    "CLOUDEVENTS_CONTENT_TYPE",
    "PAYLOADS",
    "SENSITIVE",
    "CloudEvent",
    "EventPayload",
    "MalformedEvent",
    "canonical_json",
    "events",
    "new_event",
    "new_event_id",
    "parse_envelope",
    "parse_event",
    "parse_payload",
    "topics",
    "upcaster",
]
