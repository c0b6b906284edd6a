"""The training service's use cases: base models, jobs and the model registry. Errors are RFC 9457 problems."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops import artifacts
from llmops.bus import add_to_outbox
from llmops.errors import Problem
from llmops.runtime import Actor, Runtime, spool
from llmops_schemas import CloudEvent
from llmops_schemas.envelope import utcnow
from llmops_schemas.events import (
    BaseModelRegistered,
    ModelAliasMoved,
    ModelVersionRegistered,
    TrainingJobCancelled,
    TrainingJobCompleted,
    TrainingJobRequested,
)
from llmops_schemas.events.training import BaseModelRef, DatasetRef, PromptRef
from llmops_training import archives, repository
from llmops_training.examples import TRAINABLE_FORMATS
from llmops_training.leases import JobLost
from llmops_training.settings import TrainingSettings


def _unprocessable(detail: str, field: str) -> Problem:
    return Problem(
        422,
        detail,
        type_="urn:llmops:problem:validation",
        errors=[{"field": field, "location": "body", "message": detail, "type": "value_error"}],
    )


# -- base models -------------------------------------------------------------------------------------------------
async def _new_base_model(
    session: AsyncSession, runtime: Runtime, project: str, name: str, actor: Actor, **values: Any
) -> Row:
    if await repository.find_base_model(session, project, name) is not None:
        raise Problem(409, f"a base model named {name!r} already exists in project {project!r}")
    base_model_id = str(uuid.uuid4())
    await repository.insert_base_model(
        session, {"id": base_model_id, "project": project, "name": name, "created_by": actor.subject, **values}
    )
    payload = BaseModelRegistered(base_model_id=base_model_id, project=project, name=name, **values)
    await add_to_outbox(session, runtime.event(payload, subject=base_model_id, actor=actor, project=project))
    return await repository.get_base_model(session, base_model_id)


async def register_hub_model(
    session: AsyncSession, runtime: Runtime, *, project: str, name: str, hub_id: str, revision: str | None, actor: Actor
) -> Row:
    """A base model named by hub id: the worker resolves (and caches) it; its revision is recorded with each job."""
    return await _new_base_model(session, runtime, project, name, actor, source="hub", hub_id=hub_id, revision=revision)


async def register_uploaded_model(
    runtime: Runtime,
    settings: TrainingSettings,
    *,
    project: str,
    name: str,
    chunks: AsyncIterator[bytes],
    actor: Actor,
) -> Row:
    """A base model from a tar of its directory: every file content-addressed, named by its manifest's sha256."""
    async with runtime.db.transaction() as session:
        if await repository.find_base_model(session, project, name) is not None:
            raise Problem(409, f"a base model named {name!r} already exists in project {project!r}")
    if settings.work_dir is not None:
        await asyncio.to_thread(settings.work_dir.mkdir, parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="llmops-base-model-", dir=settings.work_dir))
    try:
        archive = workdir / "upload.tar"
        if await spool(chunks, archive, limit=settings.max_upload_bytes) == 0:
            raise Problem(422, "the upload is empty; send a tar archive of a model directory")
        root = await asyncio.to_thread(
            archives.extract,
            archive,
            workdir / "model",
            max_bytes=settings.max_base_model_bytes,
            max_members=settings.max_base_model_files,
        )
        archive.unlink()
        description = await asyncio.to_thread(archives.describe, root)
        assert runtime.store is not None
        manifest = await artifacts.put_directory(runtime.store, root)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    async with runtime.db.transaction() as session:
        return await _new_base_model(
            session,
            runtime,
            project,
            name,
            actor,
            source="upload",
            manifest_sha256=manifest.sha256,
            size_bytes=manifest.size_bytes,
            **description,
        )


async def get_base_model(session: AsyncSession, project: str, name: str) -> Row:
    row = await repository.find_base_model(session, project, name)
    if row is None:
        raise Problem(404, f"no base model named {name!r} in project {project!r}")
    return row


# -- jobs --------------------------------------------------------------------------------------------------------
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


async def request_job(
    session: AsyncSession,
    runtime: Runtime,
    settings: TrainingSettings,
    *,
    project: str,
    spec: dict[str, Any],
    actor: Actor,
    job_id: str | None = None,
    cause: CloudEvent | None = None,
) -> Row:
    """Check a job request against the registry and the projections, record it and publish it to its pool.

    ``spec`` is the validated request body: base_model, dataset {name, version, split}, prompt {name, version} or
    None, method, hyperparameters, pool, model_name. ``job_id`` (default: a new one) and ``cause``, the event the
    request reacts to, are an event-started job's.
    """
    pool = settings.pools.get(spec["pool"])
    if pool is None:
        raise _unprocessable(f"unknown pool {spec['pool']!r}; pools: {', '.join(sorted(settings.pools))}", "pool")
    if spec["method"] == "qlora" and not pool.cuda:
        raise _unprocessable(
            f"qlora needs CUDA (bitsandbytes 4-bit) and pool {spec['pool']!r} has none; use a GPU pool or lora",
            "method",
        )
    base = await repository.find_base_model(session, project, spec["base_model"])
    if base is None:
        raise _unprocessable(f"no base model named {spec['base_model']!r} in project {project!r}", "base_model")
    wanted = spec["dataset"]
    dataset = await repository.find_dataset_version(session, project, wanted["name"], wanted["version"])
    if dataset is None:
        raise _unprocessable(
            f"no dataset version {wanted['name']!r} v{wanted['version']} in project {project!r}", "dataset"
        )
    if dataset.deprecated:
        raise _unprocessable(
            f"dataset {dataset.name!r} v{dataset.version} is deprecated ({dataset.deprecated_reason}); "
            "new training refuses it",
            "dataset",
        )
    if dataset.format not in TRAINABLE_FORMATS:
        raise _unprocessable(
            f"dataset {dataset.name!r} has the {dataset.format!r} format, which cannot train a language model "
            f"(trainable: {', '.join(sorted(TRAINABLE_FORMATS))})",
            "dataset",
        )
    prompt = None
    if spec.get("prompt"):
        wanted_prompt = spec["prompt"]
        prompt = await repository.find_prompt_version(session, project, wanted_prompt["name"], wanted_prompt["version"])
        if prompt is None:
            raise _unprocessable(
                f"no prompt version {wanted_prompt['name']!r} v{wanted_prompt['version']} in project {project!r}",
                "prompt",
            )
    job_id = job_id or str(uuid.uuid4())
    hyperparameters = dict(spec["hyperparameters"])
    if hyperparameters.get("checkpoint_every") is None:
        hyperparameters["checkpoint_every"] = settings.checkpoint_every
    payload = TrainingJobRequested(
        job_id=job_id,
        project=project,
        pool=spec["pool"],
        model_name=spec.get("model_name") or f"{base.name}-{spec['method']}",
        method=spec["method"],
        hyperparameters=hyperparameters,
        base_model=BaseModelRef(
            base_model_id=base.id,
            name=base.name,
            source=base.source,
            manifest_sha256=base.manifest_sha256,
            hub_id=base.hub_id,
            revision=base.revision,
        ),
        dataset=DatasetRef(
            dataset_id=dataset.dataset_id,
            version_id=dataset.version_id,
            name=dataset.name,
            version=dataset.version,
            format=dataset.format,
            uri=dataset.uri,
            sha256=dataset.sha256,
            splits=dataset.splits,
            split=wanted.get("split", "train"),
        ),
        prompt=None
        if prompt is None
        else PromptRef(
            prompt_id=prompt.prompt_id,
            version_id=prompt.version_id,
            name=prompt.name,
            version=prompt.version,
            template=prompt.template,
            hash=prompt.hash,
        ),
        requested_by=actor.subject,
    )
    await repository.insert_job(
        session,
        {
            "id": job_id,
            "project": project,
            "model_name": payload.model_name,
            "status": "queued",
            "pool": payload.pool,
            "method": payload.method,
            "hyperparameters": hyperparameters,
            "base_model_id": base.id,
            "dataset_version_id": dataset.version_id,
            "prompt_version_id": None if prompt is None else prompt.version_id,
            "request": payload.model_dump(mode="json"),
            "requested_by": actor.subject,
        },
    )
    await repository.add_log(session, job_id, "info", f"queued for pool {payload.pool!r} by {actor.subject}")
    requested = runtime.event(payload, subject=job_id, actor=actor, project=project)
    causation = {} if cause is None else {"causationid": cause.id}  # the audit trail links the job to its cause
    await add_to_outbox(session, requested.model_copy(update=causation))
    return await repository.get_job(session, job_id)


async def get_job(session: AsyncSession, project: str, job_id: str) -> Row:
    row = await repository.find_job(session, project, job_id)
    if row is None:
        raise Problem(404, f"no training job {job_id} in project {project!r}")
    return row


async def cancel_job(session: AsyncSession, runtime: Runtime, *, project: str, job_id: str, actor: Actor) -> Row:
    """A queued job is cancelled at once; a running one at its worker's next step (the worker reports it)."""
    job = await get_job(session, project, job_id)
    job = await repository.get_job(session, job.id, for_update=True)
    if job.status in ("completed", "failed", "cancelled"):
        raise Problem(409, f"job {job_id} has already ended ({job.status})")
    if job.cancel_requested_by is not None:
        return job
    await repository.update_job(session, job_id, cancel_requested_by=actor.subject)
    await repository.add_log(session, job_id, "info", f"cancellation requested by {actor.subject}")
    if job.status == "queued":
        await repository.update_job(session, job_id, status="cancelled", finished_at=utcnow())
        payload = TrainingJobCancelled(job_id=job_id, project=project, at_step=None, cancelled_by=actor.subject)
        await add_to_outbox(session, runtime.event(payload, subject=job_id, actor=actor, project=project))
    return await repository.get_job(session, job_id)


# -- model registry ----------------------------------------------------------------------------------------------
async def get_model_version(session: AsyncSession, project: str, name: str, version: int | str) -> Row:
    """A version by number, or by alias (``candidate``)."""
    if isinstance(version, str) and not version.isdigit():
        alias = await repository.find_alias(session, project, name, version)
        if alias is None:
            raise Problem(404, f"model {name!r} has no alias {version!r} in project {project!r}")
        version = alias.version
    row = await repository.find_model_version(session, project, name, int(version))
    if row is None:
        raise Problem(404, f"no version {version} of model {name!r} in project {project!r}")
    return row


async def move_alias(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    alias: str,
    version: int,
    reason: str,
    actor: Actor,
) -> Row:
    target = await get_model_version(session, project, name, version)
    await repository.lock_model_name(session, project, name)
    current = await repository.find_alias(session, project, name, alias)
    from_version = None if current is None else current.version
    await repository.set_alias(
        session,
        {"project": project, "name": name, "alias": alias, "version": target.version, "updated_by": actor.subject},
    )
    await repository.add_alias_move(
        session,
        {
            "project": project,
            "name": name,
            "alias": alias,
            "from_version": from_version,
            "to_version": target.version,
            "moved_by": actor.subject,
            "reason": reason,
        },
    )
    payload = ModelAliasMoved(
        project=project, name=name, alias=alias, from_version=from_version, to_version=target.version, reason=reason
    )
    await add_to_outbox(session, runtime.event(payload, subject=f"{project}/{name}", actor=actor, project=project))
    return await repository.find_alias(session, project, name, alias)


async def lineage(session: AsyncSession, version: Row) -> dict[str, Any]:
    """A model version's lineage with what the registry knows of its parts today (e.g. a dataset deprecated since)."""
    dataset = await repository.get_dataset_version(session, version.lineage["dataset"]["version_id"])
    return {
        **version.lineage,
        "dataset_now": None
        if dataset is None
        else {"deprecated": dataset.deprecated, "deprecated_reason": dataset.deprecated_reason},
    }


async def artifact_files(runtime: Runtime, manifest_sha256: str) -> dict[str, Any]:
    """The files of a stored artifact directory (path -> sha256 and size)."""
    assert runtime.store is not None
    return (await artifacts.get_manifest(runtime.store, manifest_sha256)).files


# -- a finished job ------------------------------------------------------------------------------------------------
async def complete_job(
    session: AsyncSession,
    request: TrainingJobRequested,
    *,
    worker: str,
    manifest_sha256: str,
    merged_manifest_sha256: str | None,
    trained_metrics: dict[str, Any],
    seconds: float,
    base_lineage: dict[str, Any],
    stamp: Callable[[Any], Any],
) -> str:
    """Register the model version a job trained (its artifacts already stored) and complete the job, in the caller's
    transaction; the version's id. Only the worker holding the running job may (else :class:`JobLost`): under the
    job row's lock, that makes this the job's one registration. ``stamp`` makes the worker's event of a payload."""
    job = await repository.get_job(session, request.job_id, for_update=True)
    if job is None or job.worker != worker or job.status != "running":
        raise JobLost(request.job_id)
    # Every step's loss is in the job's metrics (GET .../metrics); events and the registry keep the summary.
    metrics = {k: v for k, v in trained_metrics.items() if k != "loss_history"} | {"wall_seconds": round(seconds, 3)}
    lineage = _lineage_of(request, base_lineage)
    kind = "full" if request.method == "full" else "adapter"
    await repository.lock_model_name(session, request.project, request.model_name)
    version_id = str(uuid.uuid4())
    version = await repository.next_model_version(session, request.project, request.model_name)
    registered = {
        "project": request.project,
        "name": request.model_name,
        "version": version,
        "job_id": request.job_id,
        "kind": kind,
        "manifest_sha256": manifest_sha256,
        "merged_manifest_sha256": merged_manifest_sha256,
        "lineage": lineage,
        "metrics": metrics,
    }
    await repository.insert_model_version(
        session, {"id": version_id, "base_model_id": request.base_model.base_model_id, **registered}
    )
    await repository.update_job(
        session,
        request.job_id,
        status="completed",
        finished_at=utcnow(),
        metrics=metrics,
        model_version_id=version_id,
        lease_until=None,
    )
    message = f"completed: model {request.model_name!r} v{version} registered (loss {metrics.get('final_loss')})"
    await repository.add_log(session, request.job_id, "info", message, worker)
    await add_to_outbox(session, stamp(ModelVersionRegistered(model_version_id=version_id, **registered)))
    completed = TrainingJobCompleted(
        job_id=request.job_id, project=request.project, model_version_id=version_id, metrics=metrics
    )
    await add_to_outbox(session, stamp(completed))
    return version_id


def _lineage_of(request: TrainingJobRequested, base_lineage: dict[str, Any]) -> dict[str, Any]:
    """Where a model version comes from: base model, data, prompt, method, settings, software."""
    dataset = request.dataset
    return {
        "base_model": base_lineage,
        "dataset": {
            "dataset_id": dataset.dataset_id,
            "version_id": dataset.version_id,
            "name": dataset.name,
            "version": dataset.version,
            "sha256": dataset.sha256,
            "uri": dataset.uri,
            "split": dataset.split,
            "splits": dataset.splits,
        },
        "prompt": None if request.prompt is None else request.prompt.model_dump(mode="json", exclude={"template"}),
        "method": request.method,
        "hyperparameters": request.hyperparameters,
        "job_id": request.job_id,
        "platform_version": _platform_version(),
        "libraries": _library_versions(),
    }


def _platform_version() -> str:
    from importlib.metadata import version

    return version("llmops-training")


def _library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "peft", "trl")}
