"""Policies: what the platform does when monitoring sees something. A policy watches a deployment, or every deployment
of a model (by name, through the deployments projection), and on a drift, alert or anomaly event of it asks for an
action (re-evaluate with a suite, retrain with a dataset's newest version, notify) with ``monitoring.policy.triggered``.

Each (policy, cause) is one ``policy_actions`` row, so a redelivered cause acts once; a cause within the policy's
cool-down after its last trigger is recorded as ``cooling_down`` and asks for nothing. The cool-down is measured in
the causes' own times (event time), so replaying the same events decides the same way. The triggered event names its
cause (``causationid``) and carries the cause's correlation id (else the cause's id), so the audit trail reads cause →
action → result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem, unprocessable
from llmops.logging import get_logger
from llmops.runtime import Actor, Runtime
from llmops_monitoring.models import deployments, policies, policy_actions, waiting_causes
from llmops_schemas import CloudEvent, new_event
from llmops_schemas.events import (
    MonitoringAlertFired,
    MonitoringAnomalyDetected,
    MonitoringDriftDetected,
    MonitoringPolicySet,
    MonitoringPolicyTriggered,
)
from llmops_schemas.events.monitoring import PolicyTarget

log = get_logger(__name__)

ACTOR = Actor("monitoring")
#: The events a policy may be triggered by, and the trigger each is.
TRIGGERS: dict[str, str] = {
    MonitoringDriftDetected.event_type: "drift",
    MonitoringAlertFired.event_type: "alert",
    MonitoringAnomalyDetected.event_type: "anomaly",
}
#: What each action needs besides the target.
NEEDS: dict[str, str | None] = {"evaluate": "suite_id", "retrain": "dataset_id", "notify": None}


# --- what the API sets ---------------------------------------------------------------------------------------------


async def create_policy(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    actor: Actor,
    name: str,
    on: str,
    action: str,
    cool_down_seconds: int,
    deployment_id: str | None = None,
    model_name: str | None = None,
    suite_id: str | None = None,
    dataset_id: str | None = None,
) -> dict[str, Any]:
    """A new policy and its ``monitoring.policy.set`` event. 422 naming the field for a target that is not exactly
    one known deployment or model of the project, or an action without what it needs; 409 for a name in use."""
    if (deployment_id is None) == (model_name is None):
        raise unprocessable("a policy watches exactly one of deployment_id or model_name", "deployment_id")
    if cool_down_seconds < 0:
        raise unprocessable("cool_down_seconds must be 0 or more", "cool_down_seconds")
    needed = NEEDS[action]
    given = {"suite_id": suite_id, "dataset_id": dataset_id}
    if needed is not None and given[needed] is None:
        raise unprocessable(f"the action {action!r} needs {needed}", needed)
    for field, value in given.items():
        if value is not None and field != needed:
            raise unprocessable(f"the action {action!r} takes no {field}", field)
    await _check_target(session, project, deployment_id, model_name)
    values = {
        "id": str(uuid.uuid4()),
        "project": project,
        "name": name,
        "deployment_id": deployment_id,
        "model_name": model_name,
        "on": on,
        "action": action,
        "suite_id": suite_id,
        "dataset_id": dataset_id,
        "cool_down_seconds": cool_down_seconds,
        "created_by": actor.subject,
    }
    row = (
        await session.execute(insert(policies).values(values).on_conflict_do_nothing().returning(policies))
    ).one_or_none()
    if row is None:
        raise Problem(409, f"the project has a policy named {name!r}")
    policy = dict(row._mapping)
    await _announce_set(session, runtime, policy, actor, deleted=False)
    return policy


async def _check_target(session: AsyncSession, project: str, deployment_id: str | None, model_name: str | None) -> None:
    if deployment_id is not None:
        column, value, field = deployments.c.deployment_id, deployment_id, "deployment_id"
    else:
        column, value, field = deployments.c.model_name, model_name, "model_name"
    found = (
        await session.execute(select(column).where(deployments.c.project == project, column == value).limit(1))
    ).first()
    if found is None:
        what = "deployment" if field == "deployment_id" else "deployment of a model named"
        raise unprocessable(f"the project has no {what} {value!r}", field)


async def delete_policy(session: AsyncSession, runtime: Runtime, *, project: str, policy_id: str, actor: Actor) -> None:
    """Remove a policy (its actions stay, for the audit) and announce it."""
    row = (
        await session.execute(
            delete(policies).where(policies.c.project == project, policies.c.id == policy_id).returning(policies)
        )
    ).one_or_none()
    if row is None:
        raise Problem(404, "no such policy in this project")
    await _announce_set(session, runtime, dict(row._mapping), actor, deleted=True)


async def _announce_set(
    session: AsyncSession, runtime: Runtime, policy: Mapping[str, Any], actor: Actor, *, deleted: bool
) -> None:
    payload = MonitoringPolicySet(
        project=policy["project"],
        policy_id=policy["id"],
        name=policy["name"],
        target=PolicyTarget(deployment_id=policy["deployment_id"], model_name=policy["model_name"]),
        on=policy["on"],
        action=policy["action"],
        suite_id=policy["suite_id"],
        dataset_id=policy["dataset_id"],
        cool_down_seconds=policy["cool_down_seconds"],
        deleted=deleted,
        set_by=actor.subject,
    )
    event = runtime.event(payload, subject=policy["id"], actor=actor, project=policy["project"])
    await add_to_outbox(session, event)


async def get_policy(session: AsyncSession, project: str, policy_id: str) -> dict[str, Any]:
    row = (
        await session.execute(select(policies).where(policies.c.project == project, policies.c.id == policy_id))
    ).one_or_none()
    if row is None:
        raise Problem(404, "no such policy in this project")
    return dict(row._mapping)


async def list_policies(session: AsyncSession, project: str) -> list[dict[str, Any]]:
    rows = await session.execute(select(policies).where(policies.c.project == project).order_by(policies.c.name))
    return [dict(r._mapping) for r in rows]


async def list_actions(session: AsyncSession, project: str, policy_id: str, limit: int) -> list[dict[str, Any]]:
    """What a policy did, newest first (the policy may have been deleted since)."""
    rows = await session.execute(
        select(policy_actions)
        .where(policy_actions.c.project == project, policy_actions.c.policy_id == policy_id)
        .order_by(policy_actions.c.created_at.desc(), policy_actions.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


# --- closing the loop ----------------------------------------------------------------------------------------------


async def on_monitoring_event(session: AsyncSession, runtime: Runtime, event: CloudEvent) -> int:
    """Apply the policies a drift, alert or anomaly event triggers; returns how many actions were asked for.
    Runs in the caller's transaction (the consumer's, with its inbox row)."""
    trigger = TRIGGERS.get(event.type)
    if trigger is None:
        return 0
    data = event.data
    project = data["project"]
    deployment_id = data.get("deployment_id") or (data.get("filters") or {}).get("deployment_id")
    if not deployment_id:  # an alert on a whole project or route (a budget): no deployment for a policy to watch
        return 0
    await _lock(session, deployment_id)
    deployment = (
        await session.execute(select(deployments).where(deployments.c.deployment_id == deployment_id))
    ).one_or_none()
    if deployment is None or deployment.requested_at is None:  # its request is late: it waits for it
        await session.execute(
            insert(waiting_causes)
            .values(event_id=event.id, deployment_id=deployment_id, event=event.to_json_dict())
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        log.info("monitoring.policy.cause_waits", cause=event.id, deployment_id=deployment_id)
        return 0
    target = policies.c.deployment_id == deployment_id
    if deployment is not None and deployment.model_name:
        target = or_(target, policies.c.model_name == deployment.model_name)
    matched = (
        await session.execute(
            select(policies)
            .where(policies.c.project == project, policies.c.on == trigger, target)
            .order_by(policies.c.id)
            .with_for_update()  # causes of one policy take turns: the cool-down is decided once each
        )
    ).all()
    model_version_id = (
        data.get("model_version_id")
        or (data.get("filters") or {}).get("model_version_id")
        or (deployment.model_version_id if deployment is not None else None)
    )
    asked = 0
    for policy in matched:
        asked += await _apply(session, runtime, policy, event, trigger, deployment_id, model_version_id)
    return asked


async def deployment_known(session: AsyncSession, runtime: Runtime, deployment_id: str) -> int:
    """Apply the causes that waited for ``deployment_id``'s request (just stored, in this transaction), oldest
    first; returns how many actions they asked for."""
    await _lock(session, deployment_id)
    rows = (
        await session.execute(
            delete(waiting_causes).where(waiting_causes.c.deployment_id == deployment_id).returning(waiting_causes)
        )
    ).all()
    causes = sorted((CloudEvent.model_validate(row.event) for row in rows), key=lambda e: (e.time, e.id))
    return sum([await on_monitoring_event(session, runtime, cause) for cause in causes])


async def drop_waiting_causes(session: AsyncSession, before: datetime) -> int:
    """Forget the causes that waited since before ``before`` for a deployment that never became known."""
    dropped = len(
        (
            await session.execute(
                delete(waiting_causes).where(waiting_causes.c.received_at < before).returning(waiting_causes.c.event_id)
            )
        ).all()
    )
    if dropped:
        log.warning("monitoring.policy.causes_dropped", count=dropped, reason="their deployment never became known")
    return dropped


async def _lock(session: AsyncSession, deployment_id: str) -> None:
    """Serialise, per deployment, a cause's look-up with the arrival of the deployment's request (one of the two
    sees the other's committed row: a cause never waits for a request already stored)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"deployment:{deployment_id}"}
    )


async def _apply(
    session: AsyncSession,
    runtime: Runtime,
    policy: Any,
    cause: CloudEvent,
    trigger: str,
    deployment_id: str,
    model_version_id: str | None,
) -> int:
    cooling = policy.last_triggered_at is not None and cause.time < policy.last_triggered_at + timedelta(
        seconds=policy.cool_down_seconds
    )
    event = None if cooling else _triggered(runtime, policy, cause, trigger, deployment_id, model_version_id)
    recorded = (
        await session.execute(
            insert(policy_actions)
            .values(
                id=str(uuid.uuid4()),
                policy_id=policy.id,
                project=policy.project,
                cause_event_id=cause.id,
                cause_type=cause.type,
                outcome="cooling_down" if cooling else "triggered",
                event_id=event.id if event is not None else None,
            )
            .on_conflict_do_nothing(index_elements=["policy_id", "cause_event_id"])
            .returning(policy_actions.c.id)
        )
    ).first()
    if recorded is None:  # this cause was applied before (a redelivery)
        return 0
    log.info("monitoring.policy.applied", policy_id=policy.id, cause=cause.id, cooling_down=cooling)
    if event is None:
        return 0
    await session.execute(update(policies).where(policies.c.id == policy.id).values(last_triggered_at=cause.time))
    await add_to_outbox(session, event)
    return 1


def _triggered(
    runtime: Runtime,
    policy: Any,
    cause: CloudEvent,
    trigger: str,
    deployment_id: str,
    model_version_id: str | None,
) -> CloudEvent:
    payload = MonitoringPolicyTriggered(
        project=policy.project,
        policy_id=policy.id,
        policy=policy.name,
        on=trigger,
        action=policy.action,
        cause_event_id=cause.id,
        cause_type=cause.type,
        deployment_id=deployment_id,
        model_version_id=model_version_id,
        suite_id=policy.suite_id,
        dataset_id=policy.dataset_id,
        requested_by=policy.created_by,
    )
    # Runtime.event takes its correlation id from a request's actor; this event's comes from its cause.
    return new_event(
        payload,
        subject=policy.id,
        source=runtime.source,
        actor=ACTOR.subject,
        project=policy.project,
        correlation_id=cause.correlationid or cause.id,
        causation_id=cause.id,
    )
