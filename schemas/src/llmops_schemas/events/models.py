"""Model registry events: base models, model versions with their lineage, and aliases on versions."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload
from llmops_schemas.events.training import BaseModelRef

SHA256 = r"^[0-9a-f]{64}$"


class BaseModelRegistered(EventPayload):
    """A base model was registered: uploaded (content-addressed manifest of its files) or named by hub id.
    Subject: the base model id."""

    event_type: ClassVar[str] = "base_model.registered"
    topic: ClassVar[str] = topics.MODELS

    base_model_id: str
    project: str
    name: str
    source: Literal["upload", "hub"]
    manifest_sha256: str | None = Field(default=None, pattern=SHA256)
    size_bytes: int | None = Field(default=None, ge=0)
    hub_id: str | None = None
    revision: str | None = None
    architecture: str | None = None
    parameters: int | None = Field(default=None, ge=0)


class ModelVersionRegistered(EventPayload):
    """A model version was registered by a completed training job. ``lineage`` names everything it came from:
    base model (hash, revision), dataset version (sha256), prompt version, method, hyperparameters, platform version.
    Subject: the model version id."""

    event_type: ClassVar[str] = "model.version.registered"
    topic: ClassVar[str] = topics.MODELS

    model_version_id: str
    project: str
    name: str
    version: int = Field(ge=1)
    job_id: str
    kind: Literal["adapter", "full"]
    manifest_sha256: str = Field(pattern=SHA256, description="manifest of the artifact files in the object store")
    merged_manifest_sha256: str | None = Field(default=None, pattern=SHA256)
    lineage: dict[str, Any]
    metrics: dict[str, Any]

    def base_model_fields(self) -> dict[str, Any]:
        """The base model reference the lineage holds (``BaseModelRef``'s fields; empty when it holds none). Not
        validated here: a projection keeps what was published, and whoever needs the base checks it then."""
        base = self.lineage.get("base_model")
        return {k: base.get(k) for k in BaseModelRef.model_fields} if isinstance(base, dict) else {}


class ModelAliasMoved(EventPayload):
    """An alias (e.g. ``candidate``) now points at another version of a model. Subject: the model name."""

    event_type: ClassVar[str] = "model.alias.moved"
    topic: ClassVar[str] = topics.MODELS

    project: str
    name: str
    alias: str
    from_version: int | None
    to_version: int
    reason: str
