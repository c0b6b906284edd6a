"""Dataset events: datasets, their immutable versions (with lineage: content hash, parent, cleaning), deprecation, and
requests to import a version from the object store."""

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
    #: The ``import_id`` of the :class:`DatasetImportRequested` this answers; None for an upload. An import whose
    #: content already was a version answers with that version re-announced (same ``version_id``) and its import_id.
    import_id: str | None = None


class DatasetVersionDeprecated(EventPayload):
    """A version was deprecated: it stays readable, new training refuses it. Subject: the dataset id."""

    event_type: ClassVar[str] = "dataset.version.deprecated"
    topic: ClassVar[str] = topics.DATASETS

    dataset_id: str
    version_id: str
    version: int
    project: str
    reason: str


FileType = Literal["jsonl", "csv", "parquet"]


class DatasetImportRequested(EventPayload):
    """A request to import a version from an object already in the platform's object store, cleaned as an upload.
    Subject: the dataset name (unique in ``project``; the dataset may not exist yet, so it has no id).

    ``import_id`` is the idempotency key: the same import_id again makes no second version and publishes nothing.
    ``uri`` must be ``s3://<the platform's bucket>/sha256/<xx>/<sha256>``, a content address of the store; any other
    URI is refused with :class:`DatasetImportFailed`. ``options`` are the upload's query parameters as an object
    (``normalize``, ``drop_empty``, ``dedupe``, ``min_chars``, ``max_chars``, ``redact_pii``, ``pii_locales``,
    ``train``, ``validation``, ``test``, ``seed``, ``keep_valid``, ``delimiter``), validated as the upload's are.
    ``format`` (and ``description``) create the dataset when it does not exist; an existing dataset of another format
    is refused. ``parent`` is the version number to record as the parent (default: the latest version).
    The answer: ``dataset.version.created`` carrying the import_id, or :class:`DatasetImportFailed`."""

    event_type: ClassVar[str] = "dataset.import.requested"
    topic: ClassVar[str] = topics.DATASETS

    import_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    project: str = Field(min_length=1, max_length=200)
    dataset: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$")
    format: DatasetFormat
    uri: str = Field(max_length=2000)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    file_type: FileType = "jsonl"
    options: dict[str, Any] = Field(default_factory=dict)
    parent: int | None = Field(default=None, ge=1, le=2**31 - 1)
    description: str = Field(default="", max_length=4000)
    requested_by: str = Field(min_length=1, max_length=200)


class DatasetImportFailed(EventPayload):
    """A :class:`DatasetImportRequested` was refused or its file was invalid; nothing was stored. Subject: the
    dataset name, as the request's. ``reason`` says why (the URI refused, the object missing, the rows invalid)."""

    event_type: ClassVar[str] = "dataset.import.failed"
    topic: ClassVar[str] = topics.DATASETS

    import_id: str
    project: str
    dataset: str
    reason: str
