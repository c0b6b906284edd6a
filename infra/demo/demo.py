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
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from llmops.auth import Permission, Principal, Role, issue_token, requires
from llmops.bus import BUS_METADATA, add_to_outbox, make_broker
from llmops.db import Database, create_database
from llmops.http import CurrentRuntime, Runtime, Session, correlation_id, create_app
from llmops.logging import configure_logging
from llmops.settings import ServiceSettings
from llmops.storage import ObjectStore
from llmops_audit.app import AuditService, migrate
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
    await asyncio.to_thread(migrate)
    audit = AuditService()
    await audit.start()
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

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit.app), base_url="http://audit") as api:
            auditor = auth(Role.AUDITOR, "olivia")
            trail = await _wait_for_trail(api, auditor, run, expected=3)
            table = Table(
                "seq",
                "event",
                "subject",
                "actor / outcome",
                "chain hash",
                title="2. the audit trail of this run (outbox -> Kafka -> audit log)",
            )
            for entry in trail:
                data = entry["event"]["data"]
                outcome = entry["actor"] or f"{data.get('status')} {data.get('reason')} ({data.get('principal')})"
                table.add_row(str(entry["seq"]), entry["type"], entry["subject"], outcome, entry["hash"][:16] + "…")
            console.print(table)
            checkpoint = (await api.post("/audit/checkpoints", headers=auditor)).json()
            console.print(
                f"3. checkpoint signed: head {checkpoint['seq']} hash {checkpoint['hash'][:16]}… "
                f"key {checkpoint['key_id']}"
            )
            report = (await api.get("/audit/verify", headers=auditor)).json()
    finally:
        await runtime.stop()
        await audit.stop()

    if len(trail) < 3 or not report["ok"]:
        console.print(f"[red]demo failed: {len(trail)} of 3 events in the trail; verification {report}[/red]")
        raise SystemExit(1)
    console.print(
        f"4. [green]chain verified[/green]: {report['checked']} entries, "
        f"{report['checkpoints_checked']} signed checkpoint(s) match"
    )


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
