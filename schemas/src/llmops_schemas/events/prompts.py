"""Prompt events: prompts, their immutable versions, and label moves (which version is live)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload


class PromptCreated(EventPayload):
    """A prompt was created in a project. Subject: the prompt id."""

    event_type: ClassVar[str] = "prompt.created"
    topic: ClassVar[str] = topics.PROMPTS

    prompt_id: str
    project: str
    name: str
    description: str = ""


class PromptVersionCreated(EventPayload):
    """An immutable prompt version was committed. Subject: the prompt id."""

    event_type: ClassVar[str] = "prompt.version.created"
    topic: ClassVar[str] = topics.PROMPTS

    prompt_id: str
    version_id: str
    version: int = Field(ge=1)
    project: str
    name: str
    template: dict[str, Any] = Field(description="kind, text or messages, and the variables' JSON Schemas")
    parameters: dict[str, Any]
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of template and parameters")
    message: str


class PromptLabelMoved(EventPayload):
    """A label now points at another version (``from_version`` None when the label is new). Subject: the prompt id."""

    event_type: ClassVar[str] = "prompt.label.moved"
    topic: ClassVar[str] = topics.PROMPTS

    prompt_id: str
    project: str
    name: str
    label: str
    from_version: int | None
    to_version: int
    reason: str
    protected: bool
