"""Other services' events for the control plane's tests (model versions, aliases, suites, gate decisions and
overrides, inference records), and the projections they leave, written through the service's own handlers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import select

from llmops.bus import outbox
from llmops_deployment import repository, service
from llmops_schemas import CloudEvent, new_event
from llmops_schemas.events import (
    EvaluationGateDecided,
    EvaluationGateOverridden,
    EvaluationSuiteCreated,
    InferenceCompleted,
    ModelAliasMoved,
    ModelVersionRegistered,
)
from llmops_schemas.events.evaluation import GateRuleResult, SuiteRef, Target
from llmops_schemas.events.training import BaseModelRef

BASE = {
    "base_model_id": "base-1",
    "name": "tiny",
    "source": "upload",
    "manifest_sha256": "b" * 64,
    "hub_id": None,
    "revision": None,
    "resolved_revision": "b" * 64,
}


def registered(project: str = "p1", name: str = "tiny-lora", version: int = 1) -> ModelVersionRegistered:
    job_id = str(uuid.uuid4())
    return ModelVersionRegistered(
        model_version_id=str(uuid.uuid4()),
        project=project,
        name=name,
        version=version,
        job_id=job_id,
        kind="adapter",
        manifest_sha256="a" * 64,
        lineage={
            "base_model": BASE,
            "dataset": {"dataset_id": "d1", "version_id": "dv1", "name": "qa", "version": 3, "sha256": "d" * 64},
            "prompt": {"prompt_id": "pr1", "version_id": "pv1", "name": "fmt", "version": 2, "hash": "e" * 64},
            "method": "lora",
            "job_id": job_id,
        },
        metrics={},
    )


def suite_created(
    project: str = "p1", name: str = "quality", models: tuple[str, ...] = ("tiny-lora",), version: int = 1, **ids
) -> EvaluationSuiteCreated:
    return EvaluationSuiteCreated(
        suite_id=ids.get("suite_id", str(uuid.uuid4())),
        version_id=str(uuid.uuid4()),
        project=project,
        name=name,
        version=version,
        spec={"models": list(models), "gates": ["bleu >= 20"]},
        created_by="eve",
    )


def target_of(model: ModelVersionRegistered) -> Target:
    return Target(
        kind="model_version",
        model_name=model.name,
        model_version=model.version,
        model_version_id=model.model_version_id,
        artifact_kind=model.kind,
        manifest_sha256=model.manifest_sha256,
        base_model=BaseModelRef(**{k: BASE[k] for k in BaseModelRef.model_fields}),
    )


def decided(suite: EvaluationSuiteCreated, model: ModelVersionRegistered, passed: bool) -> EvaluationGateDecided:
    rule = GateRuleResult(rule="bleu >= 20", passed=passed, value=25.0 if passed else 10.0, bound=20.0, reason="r")
    return EvaluationGateDecided(
        decision_id=str(uuid.uuid4()),
        run_id=str(uuid.uuid4()),
        project=suite.project,
        suite=SuiteRef(suite_id=suite.suite_id, version_id=suite.version_id, name=suite.name, version=suite.version),
        target=target_of(model),
        passed=passed,
        rules=[rule],
    )


def overridden(decision: EvaluationGateDecided, passed: bool) -> EvaluationGateOverridden:
    return EvaluationGateOverridden(
        override_id=str(uuid.uuid4()),
        decision_id=decision.decision_id,
        run_id=decision.run_id,
        project=decision.project,
        suite=decision.suite,
        target=decision.target,
        passed=passed,
        reason="judged by hand",
        actor="ada",
    )


def completed(project: str = "p1", *, deployment_id: str | None = None, model_version_id: str | None = None):
    return InferenceCompleted(
        request_id=f"req-{uuid.uuid4().hex[:12]}",
        project=project,
        route="chat",
        api="chat.completions",
        deployment_id=deployment_id,
        model_version_id=model_version_id,
        model_hash="f" * 64,
        prompt_version_id="pv-9",
        latency_ms=12.5,
        tokens_in=3,
        tokens_out=4,
        cost=0.0,
    )


def event_of(payload, subject: str, *, at: datetime | None = None) -> CloudEvent:
    event = new_event(payload, subject=subject, source="/tests", project=getattr(payload, "project", None))
    return event if at is None else event.model_copy(update={"time": at})


_HANDLERS = {
    ModelVersionRegistered: lambda s, e, v: service.project_model_version(s, e, v),
    EvaluationSuiteCreated: lambda s, e, v: service.project_suite(s, v),
    EvaluationGateDecided: lambda s, e, v: service.project_decision(s, e, v),
    EvaluationGateOverridden: lambda s, e, v: service.project_override(s, e, v),
    InferenceCompleted: lambda s, e, v: service.record_inference(s, e, v),
}


async def project(running, *payloads, at: datetime | None = None) -> None:
    """Apply the events as the consumers would (one second apart from ``at``, so their order is their time)."""
    start = at or datetime.now(UTC)
    async with running.runtime.db.transaction() as session:
        for i, payload in enumerate(payloads):
            event = event_of(payload, "s", at=start + timedelta(seconds=i))
            if isinstance(payload, ModelAliasMoved):
                await repository.move_alias(
                    session,
                    {
                        "project": payload.project,
                        "name": payload.name,
                        "alias": payload.alias,
                        "version": payload.to_version,
                        "event_time": event.time,
                    },
                )
            else:
                await _HANDLERS[type(payload)](session, event, payload)


async def outbox_events(running) -> list[dict]:
    """Every event the service has written to its outbox, in order."""
    async with running.runtime.db.sessions() as session:
        rows = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        return [orjson.loads(p) for p in rows]
