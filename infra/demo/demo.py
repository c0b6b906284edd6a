"""`make demo`: the platform's event path end to end on the local infrastructure, ending with the audit trail.

The audit service starts (migrations, consumer, API). A small HTTP app built with the platform's app factory then
accepts a probe from an ml-engineer (its text stored in the S3 store; state and outbox row in one transaction),
refuses a viewer (403) and an anonymous caller (401). The outbox relay publishes the probe and both denials to
Kafka; the audit service appends all three to its hash chain; an auditor reads the trail of this run through the
audit API, a checkpoint is signed, and the whole chain is verified.

Between the two, the datasets and prompts services version a support-chat dataset and a prompt, and the training
service fine-tunes a model on that dataset: a tiny Llama is built offline and registered as a base model, a LoRA job
is requested, an in-process training worker takes it from Kafka and trains it on the CPU (a few seconds), and the
registered model version is shown with its lineage (base model hash, dataset version and sha256, hyperparameters).
The evaluation service had a suite attached to that model: the registration starts its run by itself, the base model
is run on the same suite by request, an in-process evaluation worker generates and scores both, and the demo shows
their metrics with 95% intervals, their comparison example by example, and the gate's decision.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated

import deployment_step  # infra/demo, beside this script
import evaluation_step
import httpx
import monitoring_step
import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from llmops.auth import Permission, Principal, Role, issue_token, requires
from llmops.bus import BUS_METADATA, add_to_outbox, make_broker
from llmops.db import Database, create_database
from llmops.http import CurrentRuntime, Session, correlation_id, create_app
from llmops.logging import configure_logging
from llmops.prompt_client import PromptClient
from llmops.runtime import Runtime
from llmops.settings import ServiceSettings
from llmops.storage import ObjectStore
from llmops.testing import serve_in_thread
from llmops_audit.app import AuditService
from llmops_audit.app import migrate as migrate_audit
from llmops_datasets.app import DatasetsService
from llmops_datasets.app import migrate as migrate_datasets
from llmops_deployment.app import DeploymentService
from llmops_deployment.app import migrate as migrate_deployment
from llmops_deployment.gateway.app import build_gateway
from llmops_deployment.settings import DeploymentSettings
from llmops_deployment.settings import Pool as ServingPool
from llmops_deployment.worker import ServingWorker
from llmops_evaluation.app import EvaluationService
from llmops_evaluation.app import migrate as migrate_evaluation
from llmops_evaluation.settings import EvaluationSettings
from llmops_evaluation.settings import Pool as EvaluationPool
from llmops_evaluation.worker import EvaluationWorker
from llmops_monitoring.app import MonitoringService
from llmops_monitoring.app import migrate as migrate_monitoring
from llmops_monitoring.settings import MonitoringSettings
from llmops_prompts.app import PromptsService
from llmops_prompts.app import migrate as migrate_prompts
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent
from llmops_training.app import TrainingService
from llmops_training.app import migrate as migrate_training
from llmops_training.cli import registry as models_cli
from llmops_training.cli import tables as training_tables
from llmops_training.cli import train as training_cli
from llmops_training.settings import Pool, TrainingSettings
from llmops_training.worker import TrainingWorker

console = Console(width=140)
SEND_PROBE = Permission("platform.probe.send", {Role.ML_ENGINEER})
router = APIRouter()


class ProbeRequest(BaseModel):
    message: str = Field(min_length=1, max_length=4096)


@router.post("/probes", status_code=202)
async def send_probe(
    body: ProbeRequest,
    request: Request,
    session: Session,
    runtime: CurrentRuntime,
    principal: Annotated[Principal, Depends(requires(SEND_PROBE))],
) -> dict[str, str]:
    stored = await runtime.store.put_bytes(body.message.encode(), content_type="text/plain")
    event = new_event(
        ProbeSent(message=body.message),
        subject=stored.sha256[:16],
        source=runtime.source,
        actor=principal.subject,
        project="demo",
        correlation_id=correlation_id(request),
    )
    await add_to_outbox(session, event)
    return {"event_id": event.id, "object": stored.uri}


class DemoSettings(ServiceSettings):
    service: str = "demo"


async def _demo_database() -> str:
    url = await create_database("llmops_demo")
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(BUS_METADATA.create_all)
    await db.dispose()
    return url


def _build_tiny_model(directory: Path) -> Path:
    from llmops.tiny_model import build_tiny_model  # imports torch (seconds): started early, in a thread

    return build_tiny_model(directory)


def auth(role: Role | None, subject: str) -> dict[str, str]:
    return {} if role is None else {"authorization": f"Bearer {issue_token(subject, [role], ['*'])}"}


async def main() -> None:
    configure_logging("WARNING")
    console.rule("[bold]LLMOps platform demo")
    scratch = Path(tempfile.mkdtemp(prefix="llmops-demo-"))
    # transformers resolves its names lazily, and two threads resolving them at once can fail ("cannot import name
    # LlamaConfig"): the names the tiny model needs are resolved here first. torch and the weights take seconds more:
    # the tiny base model is built in a thread while the first steps run.
    import transformers

    _ = (transformers.LlamaConfig, transformers.LlamaForCausalLM, transformers.PreTrainedTokenizerFast)
    tiny = asyncio.create_task(asyncio.to_thread(_build_tiny_model, scratch / "tiny-llama"))
    await asyncio.to_thread(migrate_audit)
    await asyncio.to_thread(migrate_datasets)
    await asyncio.to_thread(migrate_prompts)
    await asyncio.to_thread(migrate_training)
    await asyncio.to_thread(migrate_evaluation)
    await asyncio.to_thread(migrate_deployment)
    await asyncio.to_thread(migrate_monitoring)
    audit = AuditService()
    await audit.start()
    datasets = DatasetsService()
    await datasets.start()
    prompts = PromptsService()
    await prompts.start()
    training_settings = TrainingSettings(
        pools={DEMO_POOL: Pool(description="the demo's in-process CPU worker")},
        pool=DEMO_POOL,
        progress_interval_seconds=1.0,
        work_dir=scratch / "training",
    )
    training = TrainingService(training_settings)
    await training.start()
    # Started now, so that it has joined its consumer group by the time the job is requested.
    worker = TrainingWorker(training_settings, name="demo-worker")
    worker_task = asyncio.create_task(worker.run())
    evaluation_settings = EvaluationSettings(
        pools={DEMO_POOL: EvaluationPool(description="the demo's in-process CPU worker")},
        pool=DEMO_POOL,
        default_pool=DEMO_POOL,
        progress_interval_seconds=0.5,
        work_dir=scratch / "evaluation",
    )
    evaluation = EvaluationService(evaluation_settings)
    await evaluation.start()
    evaluator = EvaluationWorker(evaluation_settings, name="demo-evaluator")
    evaluator_task = asyncio.create_task(evaluator.run())
    deployment_settings = DeploymentSettings(
        pools={DEMO_POOL: ServingPool(backends=["transformers"], description="the demo's in-process serving worker")},
        pool=DEMO_POOL,
        gateway_cache_seconds=1.0,
        work_dir=scratch / "serving",
        cache_dir=scratch / "serving-cache",
    )
    deployment = DeploymentService(deployment_settings)
    await deployment.start()
    server = ServingWorker(deployment_settings, name="demo-server")
    server_task = asyncio.create_task(server.run())
    # Consumer groups of this run, from the topics' ends: the monitoring service sees this run's deployments and
    # records, not every earlier run's (started now, it has joined its groups by the time they are published).
    groups = uuid.uuid4().hex[:8]
    monitoring = MonitoringService(
        MonitoringSettings(
            consumer_group=f"monitoring-demo-{groups}",
            records_group=f"monitoring-records-demo-{groups}",
            consumer_offset_reset="latest",
            records_offset_reset="latest",
            drift_interval_seconds=0,
            publish_interval_seconds=0.5,
        )
    )
    await monitoring.start()
    url = await _demo_database()
    runtime = Runtime(
        DemoSettings(database_url=url, outbox_poll_interval=0.05),
        Database(url),
        make_broker(client_id="demo"),
        ObjectStore(),
    )
    app = create_app(runtime, title="demo", routers=[router])
    await runtime.start()
    run = f"demo-{uuid.uuid4().hex[:8]}"
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as http:
            table = Table("request", "HTTP", "answer", title=f"1. requests (correlation id {run})")
            for label, role, subject in (
                ("ml-engineer sends a probe", Role.ML_ENGINEER, "ada"),
                ("viewer tries to send one", Role.VIEWER, "victor"),
                ("anonymous caller tries", None, "anonymous"),
            ):
                headers = {"x-correlation-id": run, **auth(role, subject)}
                response = await http.post("/probes", json={"message": f"hello from {run}"}, headers=headers)
                body = response.json()
                table.add_row(label, str(response.status_code), body.get("object") or body.get("detail", ""))
            console.print(table)
            # Anonymous 401s are counted per source and recorded once a minute: end this window now.
            await runtime.anonymous_denials.flush()

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=datasets.app), base_url="http://ds") as api:
            dataset = await _dataset_step(api, run)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=prompts.app), base_url="http://pr") as api:
            await _prompt_step(api, run, httpx.ASGITransport(app=prompts.app))

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=evaluation.app), base_url="http://ev", timeout=120
        ) as evaluation_api:
            engineer = {**auth(Role.ML_ENGINEER, "ada"), "x-correlation-id": run}
            suite = await evaluation_step.create_suite(evaluation_api, engineer, dataset, MODEL_NAME)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=training.app), base_url="http://tr", timeout=120
            ) as api:
                base_name, version = await _training_step(api, run, await tiny, dataset)
                await _evaluation_step(evaluation_api, engineer, suite, base_name, version)

                async def second_version() -> int:
                    return await _train_again(api, run, base_name, dataset)

                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=deployment.app), base_url="http://dp", timeout=120
                ) as deployment_api:
                    with serve_in_thread(build_gateway(deployment_settings)) as gateway_url:
                        _, served = await deployment_step.run(
                            deployment_api,
                            gateway_url,
                            console,
                            engineer=engineer,
                            admin={**auth(Role.ADMIN, "ava"), "x-correlation-id": run},
                            model=MODEL_NAME,
                            version=version,
                            second_version=second_version,
                            pool=DEMO_POOL,
                        )

                async def follow_run(run_id: str, label: str) -> dict:
                    return await evaluation_step.follow(evaluation_api, engineer, run_id, console, label)

                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=monitoring.app), base_url="http://mo", timeout=300
                ) as monitoring_api:
                    await monitoring_step.run(
                        monitoring_api,
                        evaluation_api,
                        monitoring,
                        console,
                        engineer=engineer,
                        deployment=served,
                        suite=suite,
                        scratch=scratch,
                        follow_run=follow_run,
                    )

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit.app), base_url="http://audit") as api:
            auditor = auth(Role.AUDITOR, "olivia")
            trail = await _wait_for_trail(api, auditor, run)
            table = Table(
                "seq",
                "event",
                "subject",
                "actor / outcome",
                "chain hash",
                title="8. the audit trail of this run (outbox -> Kafka -> audit log)",
            )
            for entry, repeated in _collapse_progress(trail):
                data = entry["event"]["data"]
                outcome = entry["actor"] or f"{data.get('status')} {data.get('reason')} ({data.get('principal')})"
                event = entry["type"] + (f" x{repeated}" if repeated > 1 else "")
                table.add_row(str(entry["seq"]), event, entry["subject"], outcome, entry["hash"][:16] + "…")
            console.print(table)
            checkpoint = (await api.post("/audit/checkpoints", headers=auditor)).json()
            console.print(
                f"9. checkpoint signed: head {checkpoint['seq']} hash {checkpoint['hash'][:16]}… "
                f"key {checkpoint['key_id']}"
            )
            report = (await api.get("/audit/verify", headers=auditor)).json()
    finally:
        worker.stop()
        evaluator.stop()
        server.stop()
        await asyncio.gather(worker_task, evaluator_task, server_task, return_exceptions=True)
        tiny.cancel()
        await asyncio.gather(tiny, return_exceptions=True)
        await runtime.stop()
        await training.stop()
        await evaluation.stop()
        await deployment.stop()
        await monitoring.stop()
        await datasets.stop()
        await prompts.stop()
        await audit.stop()
        await asyncio.to_thread(shutil.rmtree, scratch, True)

    missing = _missing(trail)
    if missing or not report["ok"]:
        console.print(f"[red]demo failed: events missing from the trail: {dict(missing)}; verification {report}[/red]")
        raise SystemExit(1)
    console.print(
        f"10. [green]chain verified[/green]: {report['checked']} entries, "
        f"{report['checkpoints_checked']} signed checkpoint(s) match"
    )


#: What this run leaves in the audit trail, by event type (at least this many of each): the probe and two denials,
#: the dataset and the prompt, then the training step's base model, job (its progress at least once) and model, and
#: the evaluation step's suite and its two runs (the one the registration triggered and the base model's).
EXPECTED_EVENTS = Counter(
    {
        "platform.probe.sent": 1,
        "security.access.denied": 2,
        "dataset.created": 1,
        "dataset.version.created": 1,
        "prompt.created": 1,
        "prompt.version.created": 1,
        "prompt.label.moved": 1,
        "base_model.registered": 1,
        "training.job.requested": 1,
        "training.job.started": 1,
        "training.job.progress": 1,
        "training.job.completed": 1,
        "model.version.registered": 1,
        "model.alias.moved": 1,
        "evaluation.suite.created": 1,
        "evaluation.run.requested": 3,
        "evaluation.run.started": 3,
        "evaluation.run.completed": 3,
        "evaluation.gate.decided": 2,
        "deployment.requested": 2,
        "deployment.ready": 2,
        "route.changed": 3,
        "api_key.created": 1,
        "monitoring.policy.set": 1,
        "monitoring.drift.detected": 1,
        "monitoring.policy.triggered": 1,
    }
)
#: The demo's worker pool: a consumer group of its own, so no other worker on the same Kafka (a test's, a compose
#: one) takes the demo's job, and the demo's worker takes no one else's.
DEMO_POOL = "demo"
#: The model the demo trains (and evaluates).
MODEL_NAME = "support-assistant"
#: A few dozen steps of the tiny model: seconds on two CPU cores, and the loss visibly falls.
DEMO_HYPERPARAMETERS = {"max_steps": 30, "batch_size": 4, "learning_rate": 5e-3, "max_seq_length": 128, "seed": 7}
TERMINAL = ("completed", "failed", "cancelled")


def demo_rows(run: str) -> bytes:
    """A small support-chat dataset with what cleaning is for: odd spacing, a duplicate, an empty row, PII."""
    rows = []
    for i in range(40):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"My order {1000 + i} has not arrived,   can you check?"},
                    {"role": "assistant", "content": f"Order {1000 + i} ships tomorrow; we will write to you."},
                ]
            }
        )
    rows[3]["messages"][0]["content"] = "Please answer at jane.doe@example.com or +1 415 555 0132."
    rows.append(rows[5])  # an exact duplicate
    rows.append({"messages": [{"role": "user", "content": "   "}]})  # empty after normalisation
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


async def _dataset_step(api: httpx.AsyncClient, run: str) -> dict:
    steward = {**auth(Role.DATA_STEWARD, "sam"), "x-correlation-id": run}
    name = f"support-chats-{run[-8:]}"
    created = await api.post("/projects/demo/datasets", json={"name": name, "format": "chat"}, headers=steward)
    created.raise_for_status()
    response = await api.post(
        f"/projects/demo/datasets/{name}/versions",
        content=demo_rows(run),
        # a fifth of the rows for the test split, which the evaluation step runs on
        params={"redact_pii": "all", "train": 0.7, "validation": 0.1, "test": 0.2},
        headers=steward | {"content-type": "application/jsonl"},
    )
    response.raise_for_status()
    version = response.json()
    cleaning = version["cleaning"]
    table = Table(
        "dataset",
        "version",
        "rows",
        "sha256",
        "splits (train/validation/test)",
        "cleaning",
        title="2. a dataset uploaded, cleaned and versioned",
    )
    splits = version["splits"]["counts"]
    table.add_row(
        name,
        str(version["version"]),
        f"{cleaning['rows_read']} read, {version['row_count']} kept",
        version["sha256"][:16] + "…",
        f"{splits['train']}/{splits['validation']}/{splits['test']}",
        f"{cleaning['duplicates_removed']} duplicate, {cleaning['empty_removed']} empty removed; "
        f"PII redacted: {cleaning['pii_redacted']}",
    )
    console.print(table)
    return {"name": name, "version": version["version"]}


async def _prompt_step(api: httpx.AsyncClient, run: str, transport) -> None:
    engineer = {**auth(Role.ML_ENGINEER, "ada"), "x-correlation-id": run}
    name = f"support-answer-{run[-8:]}"
    (await api.post("/projects/demo/prompts", json={"name": name}, headers=engineer)).raise_for_status()
    template = {
        "kind": "chat",
        "messages": [
            {"role": "system", "content": "You are {{ company }}'s support assistant. Answer in {{ language }}."},
            {"role": "user", "content": "{{ question }}"},
        ],
        "variables": {
            "company": {"type": "string"},
            "language": {"type": "string", "enum": ["English", "German"]},
            "question": {"type": "string", "maxLength": 2000},
        },
    }
    version = await api.post(
        f"/projects/demo/prompts/{name}/versions",
        headers=engineer,
        json={"template": template, "parameters": {"temperature": 0.2}, "message": "first cut"},
    )
    version.raise_for_status()
    label = await api.put(
        f"/projects/demo/prompts/{name}/labels/production",
        headers=engineer,
        json={"version": 1, "reason": "reviewed in the demo"},
    )
    label.raise_for_status()
    token = auth(Role.VIEWER, "app")["authorization"].split()[1]
    async with PromptClient("demo", base_url="http://pr", token=token, transport=transport) as client:
        rendered = await client.render(
            name, {"company": "ACME", "language": "English", "question": "Where is my order?"}, label="production"
        )
    table = Table(
        "prompt",
        "version",
        "label",
        "rendered locally by the client",
        title="3. a prompt versioned, labelled and rendered",
    )
    table.add_row(name, "1", "production", "\n".join(f"{m['role']}: {m['content']}" for m in rendered))
    console.print(table)


async def _training_step(api: httpx.AsyncClient, run: str, tiny_dir: Path, dataset: dict) -> tuple[str, int]:
    """Register the tiny base model, train the LoRA version and show its lineage; the base model's name and the
    version's number."""
    engineer = {**auth(Role.ML_ENGINEER, "ada"), "x-correlation-id": run}
    base_name = f"tiny-{run[-8:]}"
    archive = tiny_dir.parent / "tiny-llama.tar"
    await asyncio.to_thread(models_cli.pack, tiny_dir, archive)  # what `llmops models base register DIR` sends
    response = await api.post(
        f"/projects/demo/base-models/{base_name}/upload",
        content=archive.read_bytes(),
        headers=engineer | {"content-type": models_cli.TAR},
    )
    response.raise_for_status()
    base = response.json()
    body = {
        "base_model": base_name,
        "dataset": {"name": dataset["name"], "version": dataset["version"]},
        "method": "lora",
        "pool": DEMO_POOL,
        "model_name": MODEL_NAME,
        "hyperparameters": DEMO_HYPERPARAMETERS,
    }
    job = await _request_job(api, engineer, body)
    console.print(
        f"4. base model {base_name} registered ({base['architecture']}, {base['parameters']:,} parameters, "
        f"sha256 {base['manifest_sha256'][:16]}…); LoRA job {job['id']} queued on pool {DEMO_POOL!r}"
    )
    job = await _follow(api, engineer, job["id"])
    if job["status"] != "completed":
        console.print(f"[red]demo failed: the training job ended {job['status']}: {job.get('error')}[/red]")
        raise SystemExit(1)
    model = (await api.get("/projects/demo/models/support-assistant", headers=engineer)).json()
    version = next(v for v in model["versions"] if v["id"] == job["model_version_id"])
    moved = await api.put(
        "/projects/demo/models/support-assistant/aliases/candidate",
        json={"version": version["version"], "reason": f"trained by {run}"},
        headers=engineer,
    )
    moved.raise_for_status()
    lineage = await api.get("/projects/demo/models/support-assistant/versions/candidate/lineage", headers=engineer)
    lineage.raise_for_status()
    steps = (await api.get(f"/projects/demo/training/jobs/{job['id']}/metrics", headers=engineer)).json()
    curve = [step["loss"] for step in steps if step["loss"] is not None]
    loss = f"loss {curve[0]:.3f} -> {curve[-1]:.3f}" if curve else "no loss logged"
    console.print(
        f"   trained {job['step']} steps in {version['metrics']['wall_seconds']:.1f} s on {job['worker']}: "
        f"{loss}; registered [bold]support-assistant v{version['version']}[/bold] "
        f"({version['kind']}, sha256 {version['manifest_sha256'][:16]}…), alias candidate -> v{version['version']}"
    )
    lineage_table = training_tables.lineage_table(
        "support-assistant", f"v{version['version']}", lineage.json(), version["metrics"]
    )
    console.print(lineage_table)
    return base_name, version["version"]


async def _evaluation_step(
    api: httpx.AsyncClient, engineer: dict[str, str], suite: dict, base_name: str, version: int
) -> None:
    """The run the registration triggered and the base model's, followed to their end, compared, gated."""
    tuned = await evaluation_step.triggered_run(api, engineer, MODEL_NAME, version)
    base = await evaluation_step.request_base_run(api, engineer, base_name, DEMO_POOL)
    console.print(
        f"5. suite {suite['name']} v{suite['version']} ({len(suite['spec']['scorers'])} scorers, gate "
        f"{'; '.join(evaluation_step.GATES)}) is attached to {MODEL_NAME}: its registration started run "
        f"{tuned['id'][:8]}…; the base model's run {base['id'][:8]}… was requested"
    )
    tuned = await evaluation_step.follow(
        api, engineer, tuned["id"], console, f"{MODEL_NAME} v{tuned['target']['model_version']}"
    )
    base = await evaluation_step.follow(api, engineer, base["id"], console, f"base model {base_name}")
    await evaluation_step.show_results(api, engineer, base, tuned, console)


async def _train_again(api: httpx.AsyncClient, run: str, base_name: str, dataset: dict) -> int:
    """A second LoRA version of the model (another seed): the canary of the deployment step."""
    engineer = {**auth(Role.ML_ENGINEER, "ada"), "x-correlation-id": run}
    body = {
        "base_model": base_name,
        "dataset": {"name": dataset["name"], "version": dataset["version"]},
        "method": "lora",
        "pool": DEMO_POOL,
        "model_name": MODEL_NAME,
        "hyperparameters": {**DEMO_HYPERPARAMETERS, "seed": 8},
    }
    job = await _follow(api, engineer, (await _request_job(api, engineer, body))["id"])
    if job["status"] != "completed":
        console.print(f"[red]demo failed: the second training job ended {job['status']}: {job.get('error')}[/red]")
        raise SystemExit(1)
    model = (await api.get(f"/projects/demo/models/{MODEL_NAME}", headers=engineer)).json()
    return next(v for v in model["versions"] if v["id"] == job["model_version_id"])["version"]


async def _request_job(api: httpx.AsyncClient, headers: dict[str, str], body: dict) -> dict:
    """Request the job once the dataset version has reached the training service (its projection of the datasets
    service's events, fed through Kafka)."""
    deadline = time.monotonic() + 60
    while True:
        response = await api.post("/projects/demo/training/jobs", json=body, headers=headers)
        waiting = response.status_code == 422 and "no dataset version" in response.text
        if not waiting or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        await asyncio.sleep(0.2)


async def _follow(api: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> dict:
    """The job's progress bar until it ends (what `llmops train status --follow` shows)."""
    deadline = time.monotonic() + 600
    with training_cli.job_progress(console) as progress:
        task = progress.add_task("queued", total=None, loss="-", speed="-")
        while True:
            job = (await api.get(f"/projects/demo/training/jobs/{job_id}", headers=headers)).json()
            training_cli.show_job(progress, task, job)
            if job["status"] in TERMINAL or time.monotonic() > deadline:
                return job
            await asyncio.sleep(0.2)


def _missing(trail: list[dict]) -> Counter:
    return EXPECTED_EVENTS - Counter(entry["type"] for entry in trail)


def _collapse_progress(trail: list[dict]) -> list[tuple[dict, int]]:
    """The trail with each run of consecutive progress events as one row (the last of them) and their count."""
    rows: list[tuple[dict, int]] = []
    for entry in trail:
        if rows and entry["type"] == "training.job.progress" == rows[-1][0]["type"]:
            rows[-1] = (entry, rows[-1][1] + 1)
        else:
            rows.append((entry, 1))
    return rows


async def _wait_for_trail(api: httpx.AsyncClient, headers, correlation: str) -> list[dict]:
    deadline = time.monotonic() + 60
    while True:
        response = await api.get(
            "/audit/events", params={"correlation_id": correlation, "limit": 1000}, headers=headers
        )
        items = response.json()["items"]
        if not _missing(items) or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
