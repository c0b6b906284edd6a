"""The evaluation service's use cases: projections of other services' events, runs and their triggers. Suites are
:mod:`llmops_evaluation.suites`'s, gates :mod:`llmops_evaluation.gating`'s. Errors are RFC 9457 problems; a 422 names
the field it is about."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem, unprocessable
from llmops.logging import get_logger
from llmops.runtime import Actor, Runtime
from llmops_evaluation import repository
from llmops_evaluation.settings import EvaluationSettings
from llmops_evaluation.suites import StoredSpec, check_endpoint
from llmops_evaluation.triggers import TRIGGERS, NoBaseModel, target_of_model_version
from llmops_schemas import CloudEvent
from llmops_schemas.events import EvaluationRunRequested, ModelVersionRegistered, MonitoringPolicyTriggered
from llmops_schemas.events.evaluation import SuiteRef, Target
from llmops_schemas.events.training import BaseModelRef, DatasetRef, PromptRef

log = get_logger(__name__)


# -- projections of other services' events (any order, any number of times: each converges) -----------------------
async def project_dataset_version(session: AsyncSession, values: dict[str, Any]) -> None:
    """A dataset version arrived (perhaps again, perhaps after its deprecation): stored once, its tombstone applied."""
    await repository.lock_dataset_version(session, values["version_id"])
    await repository.upsert_dataset_version(session, values)
    await repository.apply_deprecation(session, values["version_id"])


async def project_deprecation(
    session: AsyncSession, version_id: str, reason: str, deprecated_at: datetime, event_id: str
) -> None:
    """A deprecation arrived (perhaps before its version): kept as a tombstone, applied once the version is here."""
    await repository.lock_dataset_version(session, version_id)
    await repository.remember_deprecation(session, version_id, reason, deprecated_at, event_id)
    await repository.apply_deprecation(session, version_id)


def _base_model_ref(values: dict[str, Any]) -> BaseModelRef:
    return BaseModelRef(**{k: values.get(k) for k in BaseModelRef.model_fields})


async def project_model_version(
    session: AsyncSession, runtime: Runtime, settings: EvaluationSettings, event: CloudEvent, v: ModelVersionRegistered
) -> None:
    """A model version was registered: remember it, then run the suites it triggers (once per event)."""
    await repository.insert_model_version(
        session,
        {
            "model_version_id": v.model_version_id,
            "project": v.project,
            "name": v.name,
            "version": v.version,
            "kind": v.kind,
            "manifest_sha256": v.manifest_sha256,
            "base_model": v.base_model_fields(),
            "registered_at": event.time,
        },
    )
    await run_triggered(session, runtime, settings, event, project=v.project, model_name=v.name)


async def run_triggered(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    event: CloudEvent,
    *,
    project: str,
    model_name: str,
) -> list[str]:
    """Start a run of every suite (its latest version) that has ``model_name`` attached and ``event``'s type among
    its triggers, on the version :data:`TRIGGERS` says the event is about; keyed on the event id, so a redelivered
    event starts nothing new. Returns the runs started."""
    target_of = TRIGGERS.get(event.type)
    if target_of is None:
        return []
    suites = await repository.latest_suite_versions_triggered_by(session, project, model_name, event.type)
    target = await target_of(session, event) if suites else None
    if target is None:
        return []
    started = []
    for suite in suites:
        run = await _record_run(
            session,
            runtime,
            settings,
            suite,
            target,
            project=project,
            pool=settings.default_pool,
            trigger=event.type,
            trigger_key=f"event:{event.id}",
            actor=Actor(subject=f"trigger:{event.type}", correlation_id=event.correlationid),
            cause=event,
        )
        if run is not None:
            started.append(run)
    return started


async def run_for_policy(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    event: CloudEvent,
    v: MonitoringPolicyTriggered,
) -> str | None:
    """A monitoring policy asked for a re-evaluation (action ``evaluate``; the others are not this service's): a run
    of suite ``suite_id``'s latest version on model version ``model_version_id``, keyed on the policy event's id (a
    redelivery starts nothing new), its request caused by that event. Returns the run started, if any.

    A suite or model version unknown here in the event's project is logged and skipped, no event: a later delivery of
    the same event could not do better, and a dead-letter replay hours later would evaluate at an unrelated time (the
    policy fires again after its cool-down)."""
    if v.action != "evaluate":
        return None
    suite = None
    if v.suite_id is not None and _is_uuid(v.suite_id):
        suite = await repository.latest_version_of_suite(session, v.project, v.suite_id)
    if suite is None:
        return _policy_skipped(event, v, f"no suite {v.suite_id!r} in project {v.project!r}")
    model = None if v.model_version_id is None else await repository.get_model_version(session, v.model_version_id)
    if model is None or model.project != v.project:
        return _policy_skipped(event, v, f"no model version {v.model_version_id!r} in project {v.project!r}")
    try:
        target = target_of_model_version(model)
    except NoBaseModel as exc:
        return _policy_skipped(event, v, str(exc))
    return await _record_run(
        session,
        runtime,
        settings,
        suite,
        target,
        project=v.project,
        pool=settings.default_pool,
        trigger=event.type,
        trigger_key=f"event:{event.id}",
        actor=Actor(subject=v.requested_by, correlation_id=event.correlationid),
        cause=event,
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _policy_skipped(event: CloudEvent, v: MonitoringPolicyTriggered, reason: str) -> None:
    log.warning("evaluation.policy_action.skipped", event_id=event.id, policy_id=v.policy_id, reason=reason)


# -- runs --------------------------------------------------------------------------------------------------------
async def request_run(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    *,
    project: str,
    body: dict[str, Any],
    actor: Actor,
) -> Row:
    """Check a run request, record it and publish it to its pool."""
    if body["pool"] not in settings.pools:
        raise unprocessable(f"unknown pool {body['pool']!r}; pools: {', '.join(sorted(settings.pools))}", "pool")
    suite = await repository.find_suite_version(session, project, body["suite"], body.get("suite_version"))
    if suite is None:
        which = "" if body.get("suite_version") is None else f" v{body.get('suite_version')}"
        raise unprocessable(f"no suite {body['suite']!r}{which} in project {project!r}", "suite")
    target = await resolve_target(session, settings, project, body)
    run_id = await _record_run(
        session,
        runtime,
        settings,
        suite,
        target,
        project=project,
        pool=body["pool"],
        trigger="api",
        trigger_key=f"request:{uuid.uuid4()}",
        actor=actor,
    )
    assert run_id is not None  # a fresh key never collides
    return await repository.get_run(session, run_id)


async def resolve_target(
    session: AsyncSession, settings: EvaluationSettings, project: str, body: dict[str, Any]
) -> Target:
    chosen = [name for name in ("model", "base_model", "endpoint") if body.get(name) is not None]
    if len(chosen) != 1:
        raise unprocessable("name exactly one of model, base_model and endpoint", "model")
    if body.get("endpoint") is not None:
        url = check_endpoint(settings, body["endpoint"]["url"], "endpoint.url")
        return Target(kind="endpoint", endpoint=url, endpoint_model=body["endpoint"].get("model"))
    if body.get("base_model") is not None:
        base = await repository.find_base_model(session, project, body["base_model"])
        if base is None:
            raise unprocessable(f"no base model named {body['base_model']!r} in project {project!r}", "base_model")
        return Target(kind="base_model", model_name=base.name, base_model=_base_model_ref(base._asdict()))
    assert body.get("model") is not None
    return await model_version_target(
        session, project, body["model"]["name"], body["model"].get("version"), body["model"].get("alias")
    )


async def model_version_target(
    session: AsyncSession, project: str, name: str, version: int | None, alias: str | None
) -> Target:
    if (version is None) == (alias is None):
        raise unprocessable("name the model's version or its alias (one of them)", "model.version")
    if alias is not None:
        row = await repository.find_alias(session, project, name, alias)
        if row is None:
            raise unprocessable(f"model {name!r} has no alias {alias!r} in project {project!r}", "model.alias")
        version = row.version
    assert version is not None
    model = await repository.find_model_version(session, project, name, version)
    if model is None:
        raise unprocessable(f"no model version {name!r} v{version} in project {project!r}", "model")
    try:
        return target_of_model_version(model)
    except NoBaseModel as exc:
        raise unprocessable(str(exc), "model") from exc


async def _record_run(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    suite: Row,
    target: Target,
    *,
    project: str,
    pool: str,
    trigger: str,
    trigger_key: str,
    actor: Actor,
    cause: CloudEvent | None = None,
) -> str | None:
    """Record a run of ``suite`` (a suite version row) and publish its request, caused by ``cause`` when an event
    started it; None when the suite version already has a run for ``trigger_key``."""
    spec = StoredSpec.model_validate(suite.spec)
    run_id = str(uuid.uuid4())
    payload = EvaluationRunRequested(
        run_id=run_id,
        project=project,
        pool=pool,
        suite=SuiteRef(suite_id=suite.suite_id, version_id=suite.id, name=suite.name, version=suite.version),
        dataset=DatasetRef.model_validate(spec.dataset),
        prompt=None if spec.prompt is None else PromptRef.model_validate(spec.prompt),
        generation=spec.generation,
        scorers=spec.scorers,
        target=target,
        trigger=trigger,
        requested_by=actor.subject,
    )
    recorded = await repository.insert_run(
        session,
        {
            "id": run_id,
            "project": project,
            "suite_version_id": suite.id,
            "status": "queued",
            "pool": pool,
            "target": target.model_dump(mode="json"),
            "model_name": target.model_name if target.kind == "model_version" else None,
            "model_version": target.model_version,
            "model_version_id": target.model_version_id,
            "trigger": trigger,
            "trigger_key": trigger_key,
            "request": payload.model_dump(mode="json"),
            "requested_by": actor.subject,
        },
    )
    if not recorded:
        return None
    requested = runtime.event(payload, subject=run_id, actor=actor, project=project)
    if cause is not None:  # the audit trail links the run to what started it
        requested = requested.model_copy(update={"causationid": cause.id})
    await add_to_outbox(session, requested)
    return run_id


async def get_run(session: AsyncSession, project: str, run_id: str) -> Row:
    run = await repository.find_run(session, project, run_id)
    if run is None:
        raise Problem(404, f"no run {run_id} in project {project!r}")
    return run
