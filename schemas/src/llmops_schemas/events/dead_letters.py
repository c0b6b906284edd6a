"""Dead-letter events: a replay of dead letters to their original topics is a fact the audit log keeps."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload

#: The most dead-letter ids one event names; a larger replay names its first ones and says so.
MAX_REPLAYED_IDS = 1000


class DeadLettersReplayed(EventPayload):
    """Dead letters were published again to their original topics (once their cause was fixed).

    Subject: the dead-letter topic. Each replayed record carries the header ``x-llmops-replay-of`` naming its dead
    letter (``<partition>:<offset>``), so the events it brings into the log can be traced to this replay.
    """

    event_type: ClassVar[str] = "platform.dead_letters.replayed"
    topic: ClassVar[str] = topics.PLATFORM

    count: int = Field(ge=1, description="how many dead letters were replayed")
    topics: dict[str, int] = Field(description="original topic -> dead letters replayed to it")
    ids: tuple[str, ...] = Field(
        max_length=MAX_REPLAYED_IDS, description="the replayed dead letters as <partition>-<offset> (the first 1000)"
    )
    ids_truncated: bool = Field(default=False, description="more dead letters were replayed than ids names")
    skipped: int = Field(default=0, ge=0, description="selected dead letters not replayed (no original topic)")
    selector: Literal["ids", "filter", "all"] = Field(description="how the dead letters were chosen")
    reason: str | None = Field(default=None, description="the filter's dead-letter reason")
    consumer: str | None = Field(default=None, description="the filter's consumer")
    original_topic: str | None = Field(default=None, description="the filter's original topic")
    from_time: datetime | None = Field(default=None, description="the filter's earliest dead-letter time")
    to_time: datetime | None = Field(default=None, description="the filter's end of dead-letter time (exclusive)")
