"""Human feedback: any system (a chat front end, a labelling tool, the platform's own API) publishes
``feedback.submitted`` on ``llmops.feedback`` as a plain CloudEvent; the evaluation service counts each event id once.

A feedback is a rating (1 to 5), a thumb (up or down) and/or a free-text correction, about one of: a served response
(``inference_id``), a model version, or an example of an evaluation run (``run_id`` and ``example_index``). A
correction with its ``input`` becomes data: the evaluation service exports corrected pairs as a dataset version.
Free text is sensitive: the audit log keeps its hash, never the text.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from llmops_schemas import topics
from llmops_schemas.envelope import SENSITIVE, EventPayload

#: The longest free text (correction, comment, input, output) a feedback may carry, in characters.
MAX_TEXT = 32_768


class FeedbackSubmitted(EventPayload):
    """Someone judged an output. Subject: what it is about (the inference id, model version id or run id)."""

    event_type: ClassVar[str] = "feedback.submitted"
    topic: ClassVar[str] = topics.FEEDBACK

    project: str = Field(min_length=1, max_length=128)
    rating: int | None = Field(default=None, ge=1, le=5, description="1 (bad) to 5 (good)")
    thumb: Literal["up", "down"] | None = None
    correction: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT,
        description="what the output should have been",
        json_schema_extra=SENSITIVE,
    )
    comment: str | None = Field(default=None, max_length=MAX_TEXT, json_schema_extra=SENSITIVE)
    inference_id: str | None = Field(default=None, min_length=1, max_length=256)
    model_version_id: str | None = Field(default=None, min_length=1, max_length=256)
    run_id: str | None = Field(default=None, min_length=1, max_length=256)
    example_index: int | None = Field(default=None, ge=0)
    input: str | None = Field(default=None, max_length=MAX_TEXT, json_schema_extra=SENSITIVE)
    output: str | None = Field(default=None, max_length=MAX_TEXT, json_schema_extra=SENSITIVE)
    source: str | None = Field(default=None, max_length=256, description="the system or person that gave it")

    @model_validator(mode="after")
    def _says_something_about_something(self) -> FeedbackSubmitted:
        if self.rating is None and self.thumb is None and self.correction is None:
            raise ValueError("a feedback needs a rating, a thumb or a correction")
        if self.inference_id is None and self.model_version_id is None and self.run_id is None:
            raise ValueError("a feedback is about an inference_id, a model_version_id or a run_id (with example_index)")
        if (self.run_id is None) != (self.example_index is None):
            raise ValueError("run_id and example_index go together")
        return self
