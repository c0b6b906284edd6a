"""Platform events that belong to no domain: probes that show the event path works end to end."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload


class ProbeSent(EventPayload):
    """A probe sent through outbox, Kafka and consumers (by `make demo`, health checks and benchmarks)."""

    event_type: ClassVar[str] = "platform.probe.sent"
    topic: ClassVar[str] = topics.PLATFORM

    message: str = Field(max_length=4096)
    sequence: int = Field(default=0, ge=0)
