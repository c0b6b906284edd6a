"""What the routes, keys and budgets tests share: deployments inserted as rows (the deployments API is another
module's), and the events the service put in its outbox."""

from __future__ import annotations

import uuid

import orjson
from sqlalchemy import insert, select, update

from llmops.bus import outbox
from llmops_deployment.models import deployments


async def add_deployment(service, *, project: str = "p1", name: str | None = None, status: str = "ready") -> str:
    """An external deployment's row in ``status``; its id."""
    deployment_id = str(uuid.uuid4())
    async with service.runtime.db.transaction() as session:
        await session.execute(
            insert(deployments).values(
                id=deployment_id,
                project=project,
                name=name or f"dep-{deployment_id[:8]}",
                backend="external",
                pool="cpu",
                replicas=1,
                external={"url": "http://127.0.0.1:9/v1", "model": "stub"},
                status=status,
                requested_by="eve",
            )
        )
    return deployment_id


async def set_status(service, deployment_id: str, status: str) -> None:
    async with service.runtime.db.transaction() as session:
        await session.execute(update(deployments).where(deployments.c.id == deployment_id).values(status=status))


async def outbox_events(service, event_type: str) -> list[dict]:
    async with service.runtime.db.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        return [event for p in payloads if (event := orjson.loads(p))["type"] == event_type]


async def outbox_text(service) -> str:
    """Every event in the outbox, as one text (to look for what must never be in an event)."""
    async with service.runtime.db.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload))).scalars()
        return "\n".join(p.decode() if isinstance(p, bytes) else str(p) for p in payloads)
