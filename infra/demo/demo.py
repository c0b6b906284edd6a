"""`make demo`: the platform's event path end to end on the local infrastructure, ending with the audit trail.

The audit service starts (migrations, consumer, API). A small HTTP app built with the platform's app factory then
accepts a probe from an ml-engineer (its text stored in the S3 store; state and outbox row in one transaction),
refuses a viewer (403) and an anonymous caller (401). The outbox relay publishes the probe and both denials to
Kafka; the audit service appends all three to its hash chain; an auditor reads the trail of this run through the
audit API, a checkpoint is signed, and the whole chain is verified.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

import httpx
import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from llmops.auth import Permission, Principal, Role, issue_token, requires
from llmops.bus import BUS_METADATA, add_to_outbox, make_broker
from llmops.db import Database, create_database
from llmops.http import CurrentRuntime, Runtime, Session, correlation_id, create_app
from llmops.logging import configure_logging
from llmops.prompt_client import PromptClient
from llmops.settings import ServiceSettings
from llmops.storage import ObjectStore
from llmops_audit.app import AuditService
from llmops_audit.app import migrate as migrate_audit
from llmops_datasets.app import DatasetsService
from llmops_datasets.app import migrate as migrate_datasets
from llmops_prompts.app import PromptsService
from llmops_prompts.app import migrate as migrate_prompts
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent

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


def auth(role: Role | None, subject: str) -> dict[str, str]:
    return {} if role is None else {"authorization": f"Bearer {issue_token(subject, [role], ['*'])}"}


async def main() -> None:
    configure_logging("WARNING")
    console.rule("[bold]LLMOps platform demo")
    await asyncio.to_thread(migrate_audit)
    await asyncio.to_thread(migrate_datasets)
    await asyncio.to_thread(migrate_prompts)
    audit = AuditService()
    await audit.start()
    datasets = DatasetsService()
    await datasets.start()
    prompts = PromptsService()
    await prompts.start()
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

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=datasets.app), base_url="http://ds") as api:
            await _dataset_step(api, run)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=prompts.app), base_url="http://pr") as api:
            await _prompt_step(api, run, httpx.ASGITransport(app=prompts.app))

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit.app), base_url="http://audit") as api:
            auditor = auth(Role.AUDITOR, "olivia")
            trail = await _wait_for_trail(api, auditor, run, expected=EXPECTED_EVENTS)
            table = Table(
                "seq",
                "event",
                "subject",
                "actor / outcome",
                "chain hash",
                title="4. the audit trail of this run (outbox -> Kafka -> audit log)",
            )
            for entry in trail:
                data = entry["event"]["data"]
                outcome = entry["actor"] or f"{data.get('status')} {data.get('reason')} ({data.get('principal')})"
                table.add_row(str(entry["seq"]), entry["type"], entry["subject"], outcome, entry["hash"][:16] + "…")
            console.print(table)
            checkpoint = (await api.post("/audit/checkpoints", headers=auditor)).json()
            console.print(
                f"5. checkpoint signed: head {checkpoint['seq']} hash {checkpoint['hash'][:16]}… "
                f"key {checkpoint['key_id']}"
            )
            report = (await api.get("/audit/verify", headers=auditor)).json()
    finally:
        await runtime.stop()
        await datasets.stop()
        await prompts.stop()
        await audit.stop()

    if len(trail) < EXPECTED_EVENTS or not report["ok"]:
        console.print(
            f"[red]demo failed: {len(trail)} of {EXPECTED_EVENTS} events in the trail; verification {report}[/red]"
        )
        raise SystemExit(1)
    console.print(
        f"6. [green]chain verified[/green]: {report['checked']} entries, "
        f"{report['checkpoints_checked']} signed checkpoint(s) match"
    )


# the probe, two denials, dataset.created, dataset.version.created, prompt.created, prompt.version.created,
# prompt.label.moved
EXPECTED_EVENTS = 8


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


async def _dataset_step(api: httpx.AsyncClient, run: str) -> None:
    steward = {**auth(Role.DATA_STEWARD, "sam"), "x-correlation-id": run}
    name = f"support-chats-{run[-8:]}"
    created = await api.post("/projects/demo/datasets", json={"name": name, "format": "chat"}, headers=steward)
    created.raise_for_status()
    response = await api.post(
        f"/projects/demo/datasets/{name}/versions",
        content=demo_rows(run),
        params={"redact_pii": "all"},
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


async def _wait_for_trail(api: httpx.AsyncClient, headers, correlation: str, *, expected: int) -> list[dict]:
    deadline = time.monotonic() + 60
    while True:
        response = await api.get("/audit/events", params={"correlation_id": correlation}, headers=headers)
        items = response.json()["items"]
        if len(items) >= expected or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
