"""Dataset events: datasets, their immutable versions (with lineage: content hash, parent, cleaning) and deprecation."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload

DatasetFormat = Literal["chat", "instruction", "text", "classification"]


class DatasetCreated(EventPayload):
    """A dataset was created in a project. Subject: the dataset id."""

    event_type: ClassVar[str] = "dataset.created"
    topic: ClassVar[str] = topics.DATASETS

    dataset_id: str
    project: str
    name: str
    format: DatasetFormat
    description: str = ""


class DatasetVersionCreated(EventPayload):
    """An immutable version was stored. Subject: the dataset id; ``sha256`` is the content address of the cleaned
    rows (canonical JSONL), ``uri`` where they are."""

    event_type: ClassVar[str] = "dataset.version.created"
    topic: ClassVar[str] = topics.DATASETS

    dataset_id: str
    version_id: str
    version: int = Field(ge=1)
    project: str
    name: str
    format: DatasetFormat
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    row_count: int = Field(ge=0)
    stats: dict[str, Any]
    splits: dict[str, Any]
    cleaning: dict[str, Any]
    parent_version_id: str | None = None
    diff: dict[str, int] | None = None
    invalid_rows_dropped: int = Field(default=0, ge=0)


class DatasetVersionDeprecated(EventPayload):
    """A version was deprecated: it stays readable, new training refuses it. Subject: the dataset id."""

    event_type: ClassVar[str] = "dataset.version.deprecated"
    topic: ClassVar[str] = topics.DATASETS

    dataset_id: str
    version_id: str
    version: int
    project: str
    reason: str
