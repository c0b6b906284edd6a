"""`make demo`: the platform's event path end to end on the local infrastructure.

A small HTTP app built with the platform's app factory accepts a probe from an ml-engineer (state change and outbox
row in one transaction), refuses a viewer (403) and an anonymous caller (401); the outbox relay publishes the probe
and both denials to Kafka; an idempotent consumer receives all three; the probe's text is stored in the S3 store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from llmops.auth import Permission, Principal, Role, issue_token, requires
from llmops.bus import BUS_METADATA, Consumer, add_to_outbox, make_broker
from llmops.db import Database, create_database
from llmops.http import CurrentRuntime, Runtime, Session, create_app
from llmops.logging import configure_logging
from llmops.settings import ServiceSettings
from llmops.storage import ObjectStore
from llmops_schemas import new_event, topics
from llmops_schemas.events import ProbeSent

console = Console()
SEND_PROBE = Permission("platform.probe.send", {Role.ML_ENGINEER})
router = APIRouter()


class ProbeRequest(BaseModel):
    message: str = Field(min_length=1, max_length=4096)


@router.post("/probes", status_code=202)
async def send_probe(
    body: ProbeRequest,
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


async def main() -> None:
    configure_logging("WARNING")
    url = await _demo_database()
    runtime = Runtime(
        DemoSettings(database_url=url, outbox_poll_interval=0.05),
        Database(url),
        make_broker(client_id="demo"),
        ObjectStore(),
    )
    app = create_app(runtime, title="demo", routers=[router])

    received: list[tuple[float, object]] = []
    all_arrived = asyncio.Event()
    consumer = Consumer(
        "demo-printer",
        Database(url),
        make_broker(client_id="demo-printer"),
        [topics.PLATFORM, topics.SECURITY],
    )

    @consumer.on_any
    async def record(session, event, payload) -> None:
        received.append((time.perf_counter(), event))
        if len(received) == 3:
            all_arrived.set()

    consumer.subscribe(auto_offset_reset="latest")
    await runtime.start()
    await consumer.broker.start()
    await asyncio.sleep(2)  # let the consumer join its group before anything is sent
    sent: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as http:
            calls = [
                ("ml-engineer sends a probe", Role.ML_ENGINEER),
                ("viewer tries to send one", Role.VIEWER),
                ("anonymous caller tries", None),
            ]
            table = Table("request", "HTTP", "answer")
            for label, role in calls:
                headers = {"x-request-id": label}
                if role is not None:
                    headers["authorization"] = f"Bearer {issue_token(f'demo-{role}', [role], ['demo'])}"
                started = time.perf_counter()
                response = await http.post("/probes", json={"message": "hello, platform"}, headers=headers)
                sent[label] = started
                body = response.json()
                table.add_row(label, str(response.status_code), body.get("object") or body.get("detail", ""))
            console.print(table)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived.wait(), 30)
    finally:
        await consumer.broker.stop()
        await runtime.stop()

    table = Table("event received by the consumer", "subject", "actor / reason", "id")
    for _, event in received:
        detail = event.actor or f"{event.data.get('status')} {event.data.get('reason')}"
        table.add_row(event.type, event.subject, detail, event.id)
    console.print(table)
    if len(received) < len(calls):
        console.print(f"[red]only {len(received)} of {len(calls)} events arrived[/red]")
        raise SystemExit(1)
    console.print("[green]outbox -> Kafka -> idempotent consumer: every event arrived once[/green]")


if __name__ == "__main__":
    asyncio.run(main())
