"""The events that can start a suite's run by themselves (a suite names them among its ``triggers``), and for each,
what it is about: the target the run evaluates. ``model.version.registered`` is the first; a later event type (e.g.
``monitoring.drift.detected`` for a deployment's model version) is added here with its own resolver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_evaluation import repository
from llmops_schemas import CloudEvent
from llmops_schemas.events.evaluation import Target
from llmops_schemas.events.training import BaseModelRef

#: event type -> the target a run it starts evaluates (None: the event names nothing to evaluate).
TargetOf = Callable[[AsyncSession, CloudEvent], Awaitable[Target | None]]


async def _registered_version(session: AsyncSession, event: CloudEvent) -> Target | None:
    data = event.data
    model = await repository.find_model_version(session, data["project"], data["name"], data["version"])
    return None if model is None else target_of_model_version(model)


def target_of_model_version(model: Row) -> Target:
    """A run's target from a row of the model versions' projection."""
    return Target(
        kind="model_version",
        model_name=model.name,
        model_version=model.version,
        model_version_id=model.model_version_id,
        artifact_kind=model.kind,
        manifest_sha256=model.manifest_sha256,
        base_model=BaseModelRef.model_validate(model.base_model),
    )


TRIGGERS: dict[str, TargetOf] = {"model.version.registered": _registered_version}
