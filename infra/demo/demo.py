"""`make demo`: the platform's main job end to end, run as it is deployed, ending with the audit trail.

`llmops up` (:class:`llmops.stack.Stack`) starts the seven services, the gateway and a CPU worker each for training,
evaluation and serving, every one a process of its own; the demo talks to them over HTTP only, as a team would.

A small HTTP app built with the platform's app factory accepts a probe from an ml-engineer (its text stored in the
S3 store; state and outbox row in one transaction) and refuses a viewer (403) and an anonymous caller (401). A dataset
and a prompt are versioned; a tiny Llama is built offline and registered as a base model, a LoRA job is trained by the
training worker and registered with its lineage; the evaluation suite attached to the model runs by itself on it, the
base model is run by request, and the gate decides; the gated version is deployed and called through the gateway
(:mod:`deployment_step`); drift in the traffic triggers a re-evaluation and a retrain on the dataset's newer version
(:mod:`monitoring_step`). The audit trail of the run is read as an auditor, a checkpoint is signed and the whole chain
is verified. The processes the demo started are stopped at the end (``KEEP=1`` leaves them running).
"""

from __future__ import annotations

import asyncio
import os
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
from llmops.infra.base import InfraError
from llmops.logging import configure_logging
from llmops.prompt_client import PromptClient
from llmops.runtime import Runtime
from llmops.settings import ClientSettings, ServiceSettings
from llmops.stack import Stack
from llmops.storage import ObjectStore
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent
from llmops_training import repository as training_repository
from llmops_training import retraining
from llmops_training.cli import registry as models_cli
from llmops_training.cli import tables as training_tables
from llmops_training.cli import train as training_cli
from llmops_training.settings import TrainingSettings

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


async def main(*, keep: bool = False) -> None:
    configure_logging("WARNING")
    console.rule("[bold]LLMOps platform demo")
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="llmops-demo-"))
    # transformers resolves its names lazily, and two threads resolving them at once can fail ("cannot import name
    # LlamaConfig"): the names the tiny model needs are resolved here first. torch and the weights take seconds more:
    # the tiny base model is built in a thread while the platform starts.
    import transformers

    _ = (transformers.LlamaConfig, transformers.LlamaForCausalLM, transformers.PreTrainedTokenizerFast)
    tiny = asyncio.create_task(asyncio.to_thread(_build_tiny_model, scratch / "tiny-llama"))
    stack = Stack(env=DEMO_ENV)
    already = {part.name for part in await asyncio.to_thread(stack.status) if part.pid is not None}
    console.print(
        "0. the platform as deployed (`llmops up`): seven services, the gateway, and a CPU worker each for training, "
        "evaluation and serving, every one a process of its own"
        + (f"; already running: {', '.join(sorted(already))}" if already else "")
    )
    try:
        status = await asyncio.to_thread(stack.up, log=lambda line: console.print(f"   {line}", style="dim"))
    except InfraError as exc:
        console.print(f"[red]demo failed: the platform did not start: {exc}[/red]")
        raise SystemExit(1) from exc
    console.print(parts_table(status, time.monotonic() - began))
    urls = ClientSettings()
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
    engineer = {**auth(Role.ML_ENGINEER, "ada"), "x-correlation-id": run}
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

        async with (
            httpx.AsyncClient(base_url=urls.datasets_url, timeout=120) as datasets_api,
            httpx.AsyncClient(base_url=urls.prompts_url, timeout=120) as prompts_api,
            httpx.AsyncClient(base_url=urls.training_url, timeout=120) as api,
            httpx.AsyncClient(base_url=urls.evaluation_url, timeout=120) as evaluation_api,
            httpx.AsyncClient(base_url=urls.deployment_url, timeout=120) as deployment_api,
            httpx.AsyncClient(base_url=urls.monitoring_url, timeout=300) as monitoring_api,
        ):
            await _stop_earlier_deployments(deployment_api, engineer)
            dataset = await _dataset_step(datasets_api, run)
            await _prompt_step(prompts_api, run, urls.prompts_url)
            suite = await evaluation_step.create_suite(evaluation_api, engineer, dataset, MODEL_NAME)
            base_name, version = await _training_step(api, run, await tiny, dataset)
            await _evaluation_step(evaluation_api, engineer, suite, base_name, version)

            async def second_version() -> int:
                return await _train_again(api, run, base_name, dataset)

            _, served = await deployment_step.run(
                deployment_api,
                urls.gateway_url,
                console,
                engineer=engineer,
                admin={**auth(Role.ADMIN, "ava"), "x-correlation-id": run},
                model=MODEL_NAME,
                version=version,
                second_version=second_version,
                pool=POOL,
            )

            async def follow_run(run_id: str, label: str) -> dict:
                return await evaluation_step.follow(evaluation_api, engineer, run_id, console, label)

            await monitoring_step.run(
                monitoring_api,
                evaluation_api,
                console,
                engineer=engineer,
                deployment=served,
                suite=suite,
                scratch=scratch,
                follow_run=follow_run,
                retrain=Retrain(run, dataset, api, datasets_api),
            )

        async with httpx.AsyncClient(base_url=urls.audit_url, timeout=60) as api:
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
        tiny.cancel()
        await asyncio.gather(tiny, return_exceptions=True)
        await runtime.stop()
        await asyncio.to_thread(shutil.rmtree, scratch, True)
        mine = [part.name for part in stack.parts if part.name not in already]
        if keep:
            console.print(
                f"the platform keeps running (`llmops ps`; `llmops down` stops it); logs in {stack.paths.logs}"
            )
        elif mine:
            await asyncio.to_thread(stack.down, mine, log=lambda line: None)
            console.print(
                f"stopped what the demo started ({len(mine)} processes); `make demo KEEP=1` leaves it running"
            )

    missing = _missing(trail)
    if missing or not report["ok"]:
        console.print(f"[red]demo failed: events missing from the trail: {dict(missing)}; verification {report}[/red]")
        raise SystemExit(1)
    console.print(
        f"10. [green]chain verified[/green]: {report['checked']} entries, "
        f"{report['checkpoints_checked']} signed checkpoint(s) match; the demo took {time.monotonic() - began:.0f} s"
    )


async def _stop_earlier_deployments(api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Stop what earlier demo runs left serving: the one CPU serving worker would otherwise take their replicas back
    before this run's."""
    listed = await api.get("/projects/demo/deployments", headers=headers)
    listed.raise_for_status()
    for deployment in listed.json():
        if deployment["status"] not in ("stopped", "failed", "stopping"):
            stopped = await api.post(
                f"/projects/demo/deployments/{deployment['id']}/stop",
                json={"reason": "an earlier demo run's"},
                headers=headers,
            )
            if stopped.status_code not in (200, 409):
                stopped.raise_for_status()


def parts_table(status: list, seconds: float) -> Table:
    """What `llmops ps` prints: each process, where it answers and its log."""
    table = Table("part", "pid", "ready", "where", "log", title=f"the platform is up ({seconds:.0f} s)")
    for part in status:
        table.add_row(part.name, str(part.pid), "yes" if part.ready else "no", part.where, str(part.log_file))
    return table


#: What this run leaves in the audit trail, by event type (at least this many of each): the probe and two denials,
#: the dataset (two versions) and the prompt, the training step's base model, jobs (progress at least once) and
#: models (the first, the canary, the policy's retrain), the evaluation step's suite and its runs, the deployments
#: and routes, and the monitoring step's two policies, the drift and what it triggered.
EXPECTED_EVENTS = Counter(
    {
        "platform.probe.sent": 1,
        "security.access.denied": 2,
        "dataset.created": 1,
        "dataset.version.created": 2,
        "prompt.created": 1,
        "prompt.version.created": 1,
        "prompt.label.moved": 1,
        "base_model.registered": 1,
        "training.job.requested": 3,
        "training.job.started": 3,
        "training.job.progress": 1,
        "training.job.completed": 3,
        "model.version.registered": 3,
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
        "monitoring.policy.set": 2,
        "monitoring.drift.detected": 1,
        "monitoring.policy.triggered": 2,
    }
)
#: The pool of the CPU workers `llmops up` starts (training, evaluation, serving).
POOL = "cpu"
#: Settings the demo gives the processes it starts, so that its steps show within seconds: progress every second,
#: the gateway's routes re-read every second, anomalies assessed every 2 s, no scheduled drift reports (the demo
#: asks for one). A platform already running keeps its own settings; the demo waits longer then.
DEMO_ENV = {
    "LLMOPS_TRAINING_PROGRESS_INTERVAL_SECONDS": "1",
    "LLMOPS_EVALUATION_PROGRESS_INTERVAL_SECONDS": "0.5",
    "LLMOPS_DEPLOYMENT_GATEWAY_CACHE_SECONDS": "1",
    "LLMOPS_MONITORING_PUBLISH_INTERVAL_SECONDS": "0.5",
    "LLMOPS_MONITORING_ANOMALY_ASSESS_INTERVAL_SECONDS": "2",
    "LLMOPS_MONITORING_DRIFT_INTERVAL_SECONDS": "0",
}
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
    return {"id": created.json()["id"], "name": name, "version": version["version"]}


async def _prompt_step(api: httpx.AsyncClient, run: str, prompts_url: str) -> None:
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
    async with PromptClient("demo", base_url=prompts_url, token=token) as client:
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
        "pool": POOL,
        "model_name": MODEL_NAME,
        "hyperparameters": DEMO_HYPERPARAMETERS,
    }
    job = await _request_job(api, engineer, body)
    console.print(
        f"4. base model {base_name} registered ({base['architecture']}, {base['parameters']:,} parameters, "
        f"sha256 {base['manifest_sha256'][:16]}…); LoRA job {job['id']} queued on pool {POOL!r}"
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
    base = await evaluation_step.request_base_run(api, engineer, base_name, POOL)
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
        "pool": POOL,
        "model_name": MODEL_NAME,
        "hyperparameters": {**DEMO_HYPERPARAMETERS, "seed": 8},
    }
    job = await _follow(api, engineer, (await _request_job(api, engineer, body))["id"])
    if job["status"] != "completed":
        console.print(f"[red]demo failed: the second training job ended {job['status']}: {job.get('error')}[/red]")
        raise SystemExit(1)
    model = (await api.get(f"/projects/demo/models/{MODEL_NAME}", headers=engineer)).json()
    return next(v for v in model["versions"] if v["id"] == job["model_version_id"])["version"]


class Retrain:
    """The monitoring step's retraining: a newer version of the dataset arrives (questions on the topic the traffic
    drifted to), and the job the ``retrain`` policy requested is followed to the model version it registers, whose
    lineage names that newer version."""

    def __init__(self, run: str, dataset: dict, training_api: httpx.AsyncClient, datasets_api: httpx.AsyncClient):
        self.run = run
        self.dataset = dataset
        self.api = training_api
        self.datasets = datasets_api
        self.engineer = {**auth(Role.ML_ENGINEER, "ada"), "x-correlation-id": run}

    async def new_data(self) -> dict:
        """Version 2 of the dataset: version 1's rows and recipe questions; once the training service has it."""
        steward = {**auth(Role.DATA_STEWARD, "sam"), "x-correlation-id": self.run}
        response = await self.datasets.post(
            f"/projects/demo/datasets/{self.dataset['name']}/versions",
            content=demo_rows(self.run) + recipe_rows(),
            params={"redact_pii": "all", "train": 0.7, "validation": 0.1, "test": 0.2},
            headers=steward | {"content-type": "application/jsonl"},
        )
        response.raise_for_status()
        version = response.json()
        # The training service learns of it from the datasets service's event (its projection, in its database):
        # read there, so that the drift does not overtake it.
        training = Database(TrainingSettings().db_url)
        try:
            deadline = time.monotonic() + 60
            while True:
                async with training.transaction() as session:
                    newest = await training_repository.newest_dataset_version(session, "demo", self.dataset["id"])
                if newest is not None and newest.version == version["version"]:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("demo failed: the training service did not see the new dataset version in 60 s")
                await asyncio.sleep(0.2)
        finally:
            await training.dispose()
        return {
            **self.dataset,
            "version": version["version"],
            "rows": version["row_count"],
            "sha256": version["sha256"],
        }

    async def follow(self, event_id: str, newer: dict) -> dict:
        """The job the policy event requested (its id derives from the event's) to its end; the new version."""
        job_id = retraining.job_id_of(event_id)
        deadline = time.monotonic() + 60
        while (
            response := await self.api.get(f"/projects/demo/training/jobs/{job_id}", headers=self.engineer)
        ).status_code == 404:
            if time.monotonic() > deadline:
                raise SystemExit(f"demo failed: the policy's retrain job {job_id} was not requested in 60 s")
            await asyncio.sleep(0.2)
        response.raise_for_status()
        job = await _follow(self.api, self.engineer, job_id)
        if job["status"] != "completed":
            raise SystemExit(f"demo failed: the retrain job ended {job['status']}: {job.get('error')}")
        model = (await self.api.get(f"/projects/demo/models/{MODEL_NAME}", headers=self.engineer)).json()
        version = next(v for v in model["versions"] if v["id"] == job["model_version_id"])
        lineage = await self.api.get(
            f"/projects/demo/models/{MODEL_NAME}/versions/{version['version']}/lineage", headers=self.engineer
        )
        lineage.raise_for_status()
        console.print(
            training_tables.lineage_table(MODEL_NAME, f"v{version['version']}", lineage.json(), version["metrics"])
        )
        data = lineage.json()["dataset"]
        if (data["dataset_id"], data["version"]) != (newer["id"], newer["version"]):
            raise SystemExit(f"demo failed: the retrained version's lineage names {data}, not {newer}")
        return version


def recipe_rows() -> bytes:
    """Support chats on what the traffic drifted to: recipe questions, answered."""
    dishes = ("pasta", "risotto", "bread", "custard", "roast chicken", "broth", "pizza dough", "saffron rice")
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"How long should the {dish} simmer or bake? Recipe {i} is unclear."},
                {"role": "assistant", "content": f"For the {dish}: follow step {i % 5 + 1}, then taste and adjust."},
            ]
        }
        for i, dish in enumerate(dishes * 3)
    ]
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


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
    asyncio.run(main(keep=os.environ.get("KEEP", "") not in ("", "0")))
