"""Retraining asked for by a monitoring policy (``monitoring.policy.triggered`` with action ``retrain``): a new job
from the model version's own lineage (base model, method, hyperparameters, prompt, model name, the original job's
pool and split) on the newest non-deprecated version of the policy's dataset, requested through the same checks and
code path as ``POST /projects/{project}/training/jobs``, on behalf of whoever set the policy.

Once per policy event: the job's id is derived from the event's id (the consumer's inbox is the first guard, the
jobs' primary key the second), and its ``training.job.requested`` names that event as its cause. An action that
cannot be requested (a model version, dataset or base model unknown here or of another project, a lineage the job
checks refuse) is logged and skipped, with no event: a redelivery could not do better, and a dead-letter replay hours
later would train at an unrelated time (the policy fires again after its cool-down)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.errors import Problem
from llmops.logging import get_logger
from llmops.runtime import Actor, Runtime
from llmops_schemas import CloudEvent
from llmops_schemas.events import MonitoringPolicyTriggered
from llmops_training import repository, service
from llmops_training.settings import TrainingSettings

log = get_logger(__name__)

#: Namespace of the ids of jobs a policy event requested (uuid5 of the event id).
POLICY_JOBS = uuid.UUID("6f1d6a55-3c52-4c1e-9a57-8a51b0f4f3a1")


def job_id_of(event_id: str) -> str:
    """The id of the job a policy event requests: the same for every delivery of the event."""
    return str(uuid.uuid5(POLICY_JOBS, event_id))


class CannotRetrain(ValueError):
    """A retrain action that names something this service cannot train from."""


async def retrain_for_policy(
    session: AsyncSession,
    runtime: Runtime,
    settings: TrainingSettings,
    event: CloudEvent,
    v: MonitoringPolicyTriggered,
) -> Row | None:
    """Request the job a ``retrain`` action asks for (other actions are not this service's); the job, or None when
    the event asked for none, was seen before, or cannot be requested (logged)."""
    if v.action != "retrain":
        return None
    job_id = job_id_of(event.id)
    if await repository.get_job(session, job_id) is not None:
        return None
    try:
        spec = await _spec_from_lineage(session, v)
        job = await service.request_job(
            session,
            runtime,
            settings,
            project=v.project,
            spec=spec,
            actor=Actor(subject=v.requested_by, correlation_id=event.correlationid),
            job_id=job_id,
            cause=event,
        )
    except CannotRetrain as exc:
        return _skipped(event, v, str(exc))
    except Problem as exc:
        return _skipped(event, v, exc.detail)
    message = f"requested by monitoring policy {v.policy!r} ({v.policy_id}) after {v.cause_type} {v.cause_event_id}"
    await repository.add_log(session, job_id, "info", message)
    return job


async def _spec_from_lineage(session: AsyncSession, v: MonitoringPolicyTriggered) -> dict[str, Any]:
    """The job request of ``v``'s model version's lineage on the newest version of the dataset, validated as the
    API validates a request body."""
    from llmops_training.api import JobIn  # the API's request body: the same validation as a request

    model = (
        None if not _is_uuid(v.model_version_id) else await repository.get_model_version(session, v.model_version_id)
    )
    if model is None or model.project != v.project:
        raise CannotRetrain(f"no model version {v.model_version_id!r} in project {v.project!r}")
    original = await repository.get_job(session, model.job_id)
    base = await repository.get_base_model(session, model.base_model_id)
    if original is None or base is None:
        raise CannotRetrain(f"model version {model.id} has no job or base model in the registry")
    lineage = model.lineage
    dataset_id = v.dataset_id or lineage["dataset"]["dataset_id"]
    dataset = await repository.newest_dataset_version(session, v.project, dataset_id)
    if dataset is None:
        raise CannotRetrain(f"dataset {dataset_id!r} has no version to train on in project {v.project!r}")
    split = lineage["dataset"].get("split") or "train"
    if split not in dataset.splits:
        raise CannotRetrain(f"dataset {dataset.name!r} v{dataset.version} has no {split!r} split")
    prompt = lineage.get("prompt")
    body = {
        "base_model": base.name,
        "dataset": {"name": dataset.name, "version": dataset.version, "split": split},
        "prompt": None if prompt is None else {"name": prompt["name"], "version": prompt["version"]},
        "method": lineage["method"],
        "hyperparameters": lineage["hyperparameters"],
        "pool": original.pool,
        "model_name": model.name,
    }
    try:
        return JobIn.model_validate(body).model_dump(mode="json")
    except ValidationError as exc:
        raise CannotRetrain(f"model version {model.id}'s lineage is no valid job request: {exc}") from exc


def _is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True


def _skipped(event: CloudEvent, v: MonitoringPolicyTriggered, reason: str) -> None:
    log.warning("training.policy_action.skipped", event_id=event.id, policy_id=v.policy_id, reason=reason)
