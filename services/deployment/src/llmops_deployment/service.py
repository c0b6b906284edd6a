"""The deployment service's use cases: projections of model and evaluation events, deployments (with the evaluation
gate enforced, :mod:`llmops_deployment.gates`), and the lineage of an answered request. Errors are RFC 9457
problems; a 422 names the field it is about. A model (version or alias) that does not exist is a 422 naming
``model``: it is a field of the request, as an unknown pool is."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Forbidden, Problem, unprocessable
from llmops.outbound import OutboundURLError, check_outbound_url
from llmops.runtime import Actor, Runtime
from llmops.tracing import current_traceparent
from llmops_deployment import gates, queries, repository
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas import CloudEvent
from llmops_schemas.events import (
    EvaluationGateDecided,
    EvaluationGateOverridden,
    EvaluationSuiteCreated,
    InferenceCompleted,
    InferenceFailed,
    ModelVersionRegistered,
)
from llmops_schemas.events.deployments import (
    DeploymentGateOverridden,
    DeploymentRequested,
    DeploymentStopRequested,
    ExternalEndpoint,
    GateCheck,
    ServedModel,
)
from llmops_schemas.events.training import BaseModelRef

#: A deployment in these states is stopping or stopped already.
STOPPED = ("stopping", "stopped")


# -- projections of other services' events (any order, any number of times: each converges) -----------------------
async def project_model_version(session: AsyncSession, event: CloudEvent, v: ModelVersionRegistered) -> None:
    await repository.insert_model_version(
        session,
        {
            "model_version_id": v.model_version_id,
            "project": v.project,
            "name": v.name,
            "version": v.version,
            "kind": v.kind,
            "manifest_sha256": v.manifest_sha256,
            "merged_manifest_sha256": v.merged_manifest_sha256,
            "base_model": v.base_model_fields(),
            "lineage": v.lineage,
            "job_id": v.job_id,
            "registered_at": event.time,
        },
    )


async def project_suite(session: AsyncSession, v: EvaluationSuiteCreated) -> None:
    models = v.spec.get("models")
    await repository.upsert_suite(
        session,
        {
            "suite_id": v.suite_id,
            "project": v.project,
            "name": v.name,
            "version": v.version,
            "version_id": v.version_id,
            "models": sorted({m for m in models if isinstance(m, str)}) if isinstance(models, list) else [],
        },
    )


async def project_decision(session: AsyncSession, event: CloudEvent, v: EvaluationGateDecided) -> None:
    """A gate decision on a model version (decisions on base models or endpoints gate no deployment)."""
    if v.target.kind != "model_version" or v.target.model_version_id is None:
        return
    await repository.insert_gate_decision(
        session,
        {
            "decision_id": v.decision_id,
            "project": v.project,
            "model_version_id": v.target.model_version_id,
            "suite_id": v.suite.suite_id,
            "suite_name": v.suite.name,
            "suite_version": v.suite.version,
            "suite_version_id": v.suite.version_id,
            "run_id": v.run_id,
            "passed": v.passed,
            "rules": [rule.model_dump(mode="json") for rule in v.rules],
            "decided_at": event.time,
        },
    )


async def project_override(session: AsyncSession, event: CloudEvent, v: EvaluationGateOverridden) -> None:
    if v.target.kind != "model_version" or v.target.model_version_id is None:
        return
    await repository.insert_gate_override(
        session,
        {
            "override_id": v.override_id,
            "decision_id": v.decision_id,
            "project": v.project,
            "model_version_id": v.target.model_version_id,
            "passed": v.passed,
            "reason": v.reason,
            "actor": v.actor,
            "overridden_at": event.time,
        },
    )


async def record_inference(session: AsyncSession, event: CloudEvent, v: InferenceCompleted | InferenceFailed) -> None:
    """An ``inference.completed`` or ``inference.failed`` record (what lineage answers from)."""
    await repository.insert_inference(
        session,
        {
            "request_id": v.request_id,
            "project": v.project,
            "route": v.route,
            "status": "completed" if event.type == "inference.completed" else "failed",
            "shadow": v.shadow,
            "deployment_id": v.deployment_id,
            "model_version_id": v.model_version_id,
            "model_hash": v.model_hash,
            "prompt_version_id": v.prompt_version_id,
            "user": v.user,
            "key_id": v.key_id,
            "at": event.time,
            "event_id": event.id,
        },
    )


# -- deployments -------------------------------------------------------------------------------------------------
def check_external_url(settings: DeploymentSettings, url: str, field: str = "external.url") -> str:
    """An external backend's URL: http(s), no credentials in it, and a host the settings allow (when they list any)."""
    try:
        return check_outbound_url(
            url, settings.allowed_external_hosts, field, credentials_hint="name a secret_ref instead"
        )
    except OutboundURLError as exc:
        raise unprocessable(str(exc), field) from exc


def _check_placement(settings: DeploymentSettings, body: dict[str, Any]) -> None:
    pool = settings.pools.get(body["pool"])
    if pool is None:
        raise unprocessable(f"unknown pool {body['pool']!r}; pools: {', '.join(sorted(settings.pools))}", "pool")
    if body["backend"] not in pool.backends:
        gpu = " (a GPU backend: ask for a CUDA pool)" if body["backend"] in ("vllm", "tgi") and not pool.cuda else ""
        raise unprocessable(
            f"backend {body['backend']!r} does not run on pool {body['pool']!r}{gpu}; "
            f"it runs: {', '.join(pool.backends)}",
            "backend",
        )
    if body["replicas"] > settings.max_replicas:
        raise unprocessable(f"replicas must be at most {settings.max_replicas}", "replicas")
    max_tokens = (body.get("generation") or {}).get("max_tokens")
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        raise unprocessable(f"max_tokens must be at most {settings.max_tokens_limit}", "generation.max_tokens")
    external = body["backend"] == "external"
    if external and body.get("external") is None:
        raise unprocessable("an external backend needs external: {url, model, secret_ref}", "external")
    if external and body.get("model") is not None:
        raise unprocessable("an external backend serves no registered model: leave model out", "model")
    if not external and body.get("model") is None:
        raise unprocessable(f"a {body['backend']} backend needs model: {{name, version | alias}}", "model")
    if not external and body.get("external") is not None:
        raise unprocessable("external applies to the external backend only", "external")


async def resolve_model(session: AsyncSession, project: str, choice: dict[str, Any]) -> Row:
    """The model version a request names, by number or through an alias (422 naming ``model`` when there is none)."""
    name, version, alias = choice["name"], choice.get("version"), choice.get("alias")
    if (version is None) == (alias is None):
        raise unprocessable("name the model's version or its alias (one of them)", "model.version")
    if alias is not None:
        row = await repository.find_alias(session, project, name, alias)
        if row is None:
            raise unprocessable(f"model {name!r} has no alias {alias!r} in project {project!r}", "model.alias")
        version = row.version
    model = await repository.find_model_version(session, project, name, version)
    if model is None:
        raise unprocessable(f"no model version {name!r} v{version} in project {project!r}", "model")
    return model


def served_model(model: Row) -> ServedModel:
    try:
        base = BaseModelRef.model_validate(model.base_model)
    except ValidationError as exc:
        raise unprocessable(f"model {model.name!r} v{model.version} names no usable base model", "model") from exc
    return ServedModel(
        model_version_id=model.model_version_id,
        name=model.name,
        version=model.version,
        kind=model.kind,
        manifest_sha256=model.manifest_sha256,
        merged_manifest_sha256=model.merged_manifest_sha256,
        base_model=base,
    )


async def request_deployment(
    session: AsyncSession,
    runtime: Runtime,
    settings: DeploymentSettings,
    *,
    project: str,
    body: dict[str, Any],
    may_override: bool,
    actor: Actor,
) -> str:
    """Check a deployment request and its gates, record it with its replicas, and publish it to its pool's workers
    (with ``deployment.gate.overridden`` beside it when an admin deploys past missing or failed gates;
    ``may_override``: the caller holds the override permission)."""
    _check_placement(settings, body)
    reason = body.get("override_reason")
    if reason is not None and not may_override:
        raise Forbidden("gate_override", "only an admin may deploy with an override_reason")
    model: ServedModel | None = None
    external: ExternalEndpoint | None = None
    checks: list[GateCheck] = []
    if body.get("external") is not None:
        check_external_url(settings, body["external"]["url"])
        external = ExternalEndpoint.model_validate(body["external"])
    else:
        model = served_model(await resolve_model(session, project, body["model"]))
        checks = await gates.check(session, project, model.name, model.model_version_id)
    overridden = bool(gates.blocking(checks))
    if overridden and reason is None:
        assert model is not None
        raise gates.refused(f"{model.name} v{model.version}", checks)
    deployment_id = str(uuid.uuid4())
    requested = DeploymentRequested(
        deployment_id=deployment_id,
        project=project,
        name=body["name"],
        pool=body["pool"],
        backend=body["backend"],
        replicas=body["replicas"],
        model=model,
        external=external,
        generation=body.get("generation") or {},
        gates=checks,
        gate_override=overridden,
        requested_by=actor.subject,
    )
    await repository.insert_deployment(
        session,
        {
            "id": deployment_id,
            "project": project,
            "name": body["name"],
            "backend": body["backend"],
            "pool": body["pool"],
            "replicas": body["replicas"],
            "model_name": model.name if model else None,
            "model_version": model.version if model else None,
            "model_version_id": model.model_version_id if model else None,
            "model": model.model_dump(mode="json") if model else None,
            "external": external.model_dump(mode="json") if external else None,
            "generation": requested.generation,
            "gates": [c.model_dump(mode="json") for c in checks],
            "gate_override": overridden,
            "override_reason": reason if overridden else None,
            "status": "requested",
            "requested_by": actor.subject,
            "correlation_id": actor.correlation_id,
            "traceparent": current_traceparent(),
        },
    )
    if overridden:
        assert model is not None and reason is not None
        override = DeploymentGateOverridden(
            deployment_id=deployment_id,
            project=project,
            model_version_id=model.model_version_id,
            gates=gates.blocking(checks),
            reason=reason,
            actor=actor.subject,
        )
        await add_to_outbox(session, runtime.event(override, subject=deployment_id, actor=actor, project=project))
    await add_to_outbox(session, runtime.event(requested, subject=deployment_id, actor=actor, project=project))
    return deployment_id


async def get_deployment(session: AsyncSession, project: str, deployment_id: str) -> Row:
    row = await repository.find_deployment(session, project, deployment_id)
    if row is None:
        raise Problem(404, f"no deployment {deployment_id} in project {project!r}")
    return row


async def stop_deployment(
    session: AsyncSession, runtime: Runtime, *, project: str, deployment_id: str, reason: str, actor: Actor
) -> None:
    """Ask the workers to drain and stop a deployment (409 when it is stopping or stopped already)."""
    row = await repository.find_deployment(session, project, deployment_id, for_update=True)
    if row is None:
        raise Problem(404, f"no deployment {deployment_id} in project {project!r}")
    if row.status in STOPPED:
        raise Problem(409, f"deployment {deployment_id} is {row.status} already", type_="urn:llmops:problem:stopped")
    await repository.mark_stopping(session, deployment_id)
    payload = DeploymentStopRequested(
        deployment_id=deployment_id, project=project, requested_by=actor.subject, reason=reason
    )
    await add_to_outbox(session, runtime.event(payload, subject=deployment_id, actor=actor, project=project))


# -- lineage -----------------------------------------------------------------------------------------------------
async def lineage(session: AsyncSession, project: str, request_id: str) -> dict[str, Any]:
    """Where an answer came from: the request's record, the deployment that served it (with the gates that allowed
    it, or its override), and the model version with its training job, dataset version, base model and prompt."""
    record = await queries.find_inference(session, project, request_id)
    if record is None:
        raise Problem(404, f"no inference {request_id!r} recorded in project {project!r} (yet)")
    deployment = None
    if record.deployment_id is not None and _is_uuid(record.deployment_id):
        deployment = await repository.find_deployment(session, project, record.deployment_id)
    version_id = record.model_version_id or (deployment.model_version_id if deployment is not None else None)
    model = None if version_id is None else await queries.find_model_version_by_id(session, project, version_id)
    return {
        "request_id": record.request_id,
        "project": record.project,
        "route": record.route,
        "status": record.status,
        "shadow": record.shadow,
        "at": record.at,
        "prompt_version_id": record.prompt_version_id,
        "model_hash": record.model_hash,
        "deployment_id": record.deployment_id,
        "model_version_id": version_id,
        "deployment": None if deployment is None else _deployment_lineage(deployment),
        "model_version": None if model is None else _model_lineage(model),
    }


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _deployment_lineage(row: Row) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "backend": row.backend,
        "pool": row.pool,
        "status": row.status,
        "external": row.external,
        "gates": row.gates,
        "gate_override": row.gate_override,
        "override_reason": row.override_reason,
        "requested_by": row.requested_by,
        "created_at": row.created_at,
    }


def _model_lineage(row: Row) -> dict[str, Any]:
    lineage = row.lineage or {}
    base = lineage.get("base_model") if isinstance(lineage.get("base_model"), dict) else row.base_model
    return {
        "model_version_id": row.model_version_id,
        "name": row.name,
        "version": row.version,
        "kind": row.kind,
        "manifest_sha256": row.manifest_sha256,
        "merged_manifest_sha256": row.merged_manifest_sha256,
        "registered_at": row.registered_at,
        "training_job_id": row.job_id,
        "method": lineage.get("method"),
        "base_model": base,
        "dataset": lineage.get("dataset"),
        "prompt": lineage.get("prompt"),
    }
