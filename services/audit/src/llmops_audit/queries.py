"""What the audit service's routes read: entries by filter, a subject's history, the export stream, checkpoints.
The filters are built at the edge from the caller's token, so a read keeps to its projects."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.db import Database
from llmops_audit import repository
from llmops_audit.repository import AuditFilter
from llmops_schemas.events.audit import CheckpointSigned

PAGE = 2000  # entries read per round trip when exporting


async def checkpoints(session: AsyncSession, *, from_seq=None, to_seq=None) -> list[CheckpointSigned]:
    rows = await repository.list_checkpoints(session, from_seq=from_seq, to_seq=to_seq)
    return [CheckpointSigned.model_validate(row._asdict()) for row in rows]


async def query(session: AsyncSession, where: AuditFilter, *, after_seq: int | None, limit: int) -> list[Row]:
    return await repository.find_entries(session, where, after_seq=after_seq, limit=limit)


async def history(session: AsyncSession, subject: str, *, projects, limit: int) -> list[Row]:
    return await repository.history(session, subject, projects=projects, limit=limit)


async def export_rows(db: Database, where: AuditFilter) -> AsyncIterator[Row]:
    """Every entry the filter selects, in chain order, read page by page in short transactions."""
    after = (where.from_seq - 1) if where.from_seq else 0
    while True:
        async with db.sessions() as session:
            rows = await repository.find_entries(session, where, after_seq=after, limit=PAGE)
        for row in rows:
            yield row
        if len(rows) < PAGE:
            return
        after = rows[-1].seq
