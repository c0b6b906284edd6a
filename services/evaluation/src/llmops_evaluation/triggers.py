"""The events that can start a suite's run by themselves (a suite names them among its ``triggers``), and for each,
what it is about: the target the run evaluates. ``model.version.registered`` is the first; a later event type (e.g.
``monitoring.drift.detected`` for a deployment's model version) is added here with its own resolver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.logging import get_logger
from llmops_evaluation import repository
from llmops_schemas import CloudEvent
from llmops_schemas.events.evaluation import Target
from llmops_schemas.events.training import BaseModelRef

log = get_logger(__name__)

#: event type -> the target a run it starts evaluates (None: the event names nothing to evaluate).
TargetOf = Callable[[AsyncSession, CloudEvent], Awaitable[Target | None]]


async def _registered_version(session: AsyncSession, event: CloudEvent) -> Target | None:
    data = event.data
    model = await repository.find_model_version(session, data["project"], data["name"], data["version"])
    if model is None:
        return None
    try:
        return target_of_model_version(model)
    except NoBaseModel as exc:
        log.warning("evaluation.trigger.skipped", event_id=event.id, reason=str(exc))
        return None


class NoBaseModel(ValueError):
    """A model version whose lineage names no usable base model: it cannot be evaluated by a worker."""


def target_of_model_version(model: Row) -> Target:
    """A run's target from a row of the model versions' projection."""
    try:
        base = BaseModelRef.model_validate(model.base_model)
    except ValidationError as exc:
        raise NoBaseModel(f"model {model.name!r} v{model.version} names no usable base model in its lineage") from exc
    return Target(
        kind="model_version",
        model_name=model.name,
        model_version=model.version,
        model_version_id=model.model_version_id,
        artifact_kind=model.kind,
        manifest_sha256=model.manifest_sha256,
        base_model=base,
    )


TRIGGERS: dict[str, TargetOf] = {"model.version.registered": _registered_version}
