"""The model registry's side of a finished job: its artifacts stored, its lineage recorded, its version registered in
the transaction that completes the job (a resumed job registers once: the job id is unique among versions)."""

from __future__ import annotations

import shutil
import uuid
from typing import TYPE_CHECKING

from llmops.bus import add_to_outbox
from llmops_schemas.envelope import utcnow
from llmops_schemas.events import ModelVersionRegistered, TrainingJobCompleted, TrainingJobRequested
from llmops_training import artifacts, repository
from llmops_training.leases import JobLost

if TYPE_CHECKING:
    from llmops_training.job_runner import JobRunner


async def register(
    runner: JobRunner, request: TrainingJobRequested, event, result, base_lineage, seconds: float
) -> None:
    """Store the artifacts, then register the model version and complete the job in one transaction (once per job)."""
    merged_dir = result.artifacts_dir / "merged"
    merged_manifest = None
    if merged_dir.is_dir():
        merged_target = result.artifacts_dir.parent / "merged"
        shutil.move(merged_dir, merged_target)
        merged_manifest = (await artifacts.put_directory(runner.store, merged_target)).sha256
    manifest = await artifacts.put_directory(runner.store, result.artifacts_dir)
    # Every step's loss is in the job's metrics (GET .../metrics); events and the registry keep the summary.
    metrics = {k: v for k, v in result.metrics.items() if k != "loss_history"} | {"wall_seconds": round(seconds, 3)}
    dataset = request.dataset
    lineage = {
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
    kind = "full" if request.method == "full" else "adapter"
    async with runner.runtime.db.transaction() as session:
        job = await repository.get_job(session, request.job_id, for_update=True)
        if job.worker != runner.name or job.status != "running":
            raise JobLost(request.job_id)
        await repository.lock_model_name(session, request.project, request.model_name)
        version_id = str(uuid.uuid4())
        version = await repository.next_model_version(session, request.project, request.model_name)
        inserted = await repository.insert_model_version(
            session,
            {
                "id": version_id,
                "project": request.project,
                "name": request.model_name,
                "version": version,
                "job_id": request.job_id,
                "kind": kind,
                "base_model_id": request.base_model.base_model_id,
                "manifest_sha256": manifest.sha256,
                "merged_manifest_sha256": merged_manifest,
                "lineage": lineage,
                "metrics": metrics,
            },
        )
        if not inserted:
            registered = await repository.model_version_of_job(session, request.job_id)
            version_id = registered.id
        await repository.update_job(
            session,
            request.job_id,
            status="completed",
            finished_at=utcnow(),
            metrics=metrics,
            model_version_id=version_id,
            lease_until=None,
        )
        await repository.add_log(
            session,
            request.job_id,
            "info",
            f"completed: model {request.model_name!r} v{version} registered (loss {metrics.get('final_loss')})",
            runner.name,
        )
        if inserted:
            registered_event = ModelVersionRegistered(
                model_version_id=version_id,
                project=request.project,
                name=request.model_name,
                version=version,
                job_id=request.job_id,
                kind=kind,
                manifest_sha256=manifest.sha256,
                merged_manifest_sha256=merged_manifest,
                lineage=lineage,
                metrics=metrics,
            )
            await add_to_outbox(session, runner.event(registered_event, request, event))
        completed = TrainingJobCompleted(
            job_id=request.job_id, project=request.project, model_version_id=version_id, metrics=metrics
        )
        await add_to_outbox(session, runner.event(completed, request, event))


def _platform_version() -> str:
    from importlib.metadata import version

    return version("llmops-training")


def _library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "peft", "trl")}
