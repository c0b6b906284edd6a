"""Every SQL statement of the audit service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_audit.chain import Entry
from llmops_audit.models import audit_log, chain_head, checkpoints

ENTRY_COLUMNS = (
    audit_log.c.seq,
    audit_log.c.event_id,
    audit_log.c.type,
    audit_log.c.source,
    audit_log.c.subject,
    audit_log.c.actor,
    audit_log.c.project,
    audit_log.c.correlation_id,
    audit_log.c.causation_id,
    audit_log.c.time,
    audit_log.c.recorded_at,
    audit_log.c.event,
    audit_log.c.prev_hash,
    audit_log.c.hash,
)


_MAX_SEQ = 2**63 - 1  # bigint's largest: "no upper bound" in one prepared statement


@dataclass(frozen=True)
class AuditFilter:
    """What a query, an export or a history selects; ``projects`` limits results to a caller's project scope."""

    from_time: datetime | None = None
    to_time: datetime | None = None
    actor: str | None = None
    type: str | None = None
    subject: str | None = None
    project: str | None = None
    correlation_id: str | None = None
    from_seq: int | None = None
    to_seq: int | None = None
    projects: frozenset[str] | None = None

    @property
    def is_range_only(self) -> bool:
        """True when only a sequence range is selected: the result is a contiguous piece of the chain."""
        narrowing = (
            self.from_time,
            self.to_time,
            self.actor,
            self.type,
            self.subject,
            self.project,
            self.correlation_id,
            self.projects,
        )
        return all(value is None for value in narrowing)

    def conditions(self) -> list[Any]:
        c = audit_log.c
        conditions = []
        for value, column in (
            (self.actor, c.actor),
            (self.type, c.type),
            (self.subject, c.subject),
            (self.project, c.project),
            (self.correlation_id, c.correlation_id),
        ):
            if value is not None:
                conditions.append(column == value)
        if self.from_time is not None:
            conditions.append(c.time >= self.from_time)
        if self.to_time is not None:
            conditions.append(c.time < self.to_time)
        if self.from_seq is not None:
            conditions.append(c.seq >= self.from_seq)
        if self.to_seq is not None:
            conditions.append(c.seq <= self.to_seq)
        if self.projects is not None:
            conditions.append(c.project.in_(sorted(self.projects)))
        return conditions


# -- appending ---------------------------------------------------------------------------------------------------
async def lock_head(session: AsyncSession) -> tuple[int, str]:
    """The chain head, locked until the transaction ends: appenders take turns, so sequence numbers are gapless."""
    row = (
        await session.execute(select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1).with_for_update())
    ).one()
    return row.seq, row.hash


async def read_head(session: AsyncSession) -> tuple[int, str]:
    row = (await session.execute(select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1))).one()
    return row.seq, row.hash


_INSERT_ENTRIES = text(
    "INSERT INTO audit_log (seq, event_id, type, source, subject, actor, project, correlation_id, causation_id, "
    "time, event, prev_hash, hash) SELECT * FROM unnest(CAST(:seq AS bigint[]), CAST(:event_id AS uuid[]), "
    "CAST(:type AS text[]), CAST(:source AS text[]), CAST(:subject AS text[]), CAST(:actor AS text[]), "
    "CAST(:project AS text[]), CAST(:correlation_id AS text[]), CAST(:causation_id AS text[]), "
    "CAST(:time AS timestamptz[]), CAST(:event AS text[]), CAST(:prev_hash AS text[]), CAST(:hash AS text[]))"
)


async def insert_entries(session: AsyncSession, columns: dict[str, list[Any]]) -> None:
    """Insert entries given column-wise (one list per column, same order as the chain), in one statement."""
    await session.execute(_INSERT_ENTRIES, columns)


async def move_head(session: AsyncSession, seq: int, chain_hash: str) -> None:
    await session.execute(update(chain_head).where(chain_head.c.id == 1).values(seq=seq, hash=chain_hash))


# -- reading -----------------------------------------------------------------------------------------------------
async def find_entries(session: AsyncSession, where: AuditFilter, *, after_seq: int | None, limit: int) -> list[Row]:
    conditions = where.conditions()
    if after_seq is not None:
        conditions.append(audit_log.c.seq > after_seq)
    query = select(*ENTRY_COLUMNS).where(and_(True, *conditions)).order_by(audit_log.c.seq).limit(limit)
    return list((await session.execute(query)).all())


async def history(session: AsyncSession, subject: str, *, projects: frozenset[str] | None, limit: int) -> list[Row]:
    """Every entry about ``subject``, and every entry linked to those by causation (causes and effects, to any
    depth), in chain order."""
    scope = "" if projects is None else " AND a.project = ANY(CAST(:projects AS text[]))"
    statement = text(
        f"""
        WITH RECURSIVE linked(event_id, causation_id) AS (
            SELECT a.event_id::text, a.causation_id FROM audit_log a WHERE a.subject = :subject{scope}
          UNION
            SELECT a.event_id::text, a.causation_id FROM audit_log a JOIN linked l
              ON a.causation_id = l.event_id OR a.event_id::text = l.causation_id
            WHERE TRUE{scope}
        )
        SELECT a.seq FROM audit_log a WHERE a.event_id::text IN (SELECT event_id FROM linked)
        ORDER BY a.seq LIMIT :limit
        """  # noqa: S608 (no user input in the f-string: only a fixed clause)
    )
    params: dict[str, Any] = {"subject": subject, "limit": limit}
    if projects is not None:
        params["projects"] = sorted(projects)
    seqs = [row.seq for row in (await session.execute(statement, params)).all()]
    if not seqs:
        return []
    query = select(*ENTRY_COLUMNS).where(audit_log.c.seq.in_(seqs)).order_by(audit_log.c.seq)
    return list((await session.execute(query)).all())


# The event's columns in EVENT_COLUMNS order, after the chain's own.
_CHAIN_PAGE = (
    "SELECT seq, prev_hash, hash, event, event_id::text, type, source, subject, actor, project, correlation_id, "
    "causation_id, time FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
)


async def chain_entries(session: AsyncSession, *, after_seq: int, to_seq: int | None, limit: int) -> list[Entry]:
    """The next ``limit`` entries after ``after_seq`` (keyset paging for verification), with their columns."""
    # Read through asyncpg itself: SQLAlchemy's handling of each row cost as much as checking its columns.
    connection = (await (await session.connection()).get_raw_connection()).driver_connection
    rows = await connection.fetch(_CHAIN_PAGE, after_seq, _MAX_SEQ if to_seq is None else to_seq, limit)
    return [Entry(r[0], r[1], r[2], r[3].encode(), r[4:]) for r in rows]


async def seq_bounds(session: AsyncSession) -> tuple[int | None, int | None]:
    row = (await session.execute(select(func.min(audit_log.c.seq), func.max(audit_log.c.seq)))).one()
    return row[0], row[1]


# -- checkpoints -------------------------------------------------------------------------------------------------
async def insert_checkpoint(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(checkpoints.insert().values(**values))


async def last_checkpoint_seq(session: AsyncSession) -> int:
    return (await session.scalar(select(func.max(checkpoints.c.seq)))) or 0


async def entries_since(session: AsyncSession, seq: int, *, excluding_type: str) -> int:
    """How many entries after ``seq`` are of another type than ``excluding_type``."""
    query = select(func.count()).where(audit_log.c.seq > seq, audit_log.c.type != excluding_type)
    return await session.scalar(query)


async def list_checkpoints(
    session: AsyncSession, *, from_seq: int | None = None, to_seq: int | None = None
) -> Sequence[Row]:
    conditions = []
    if from_seq is not None:
        conditions.append(checkpoints.c.seq >= from_seq)
    if to_seq is not None:
        conditions.append(checkpoints.c.seq <= to_seq)
    query = (
        select(
            checkpoints.c.seq,
            checkpoints.c.hash,
            checkpoints.c.signed_at,
            checkpoints.c.key_id,
            checkpoints.c.public_key,
            checkpoints.c.signature,
        )
        .where(and_(True, *conditions))
        .order_by(checkpoints.c.seq, checkpoints.c.id)
    )
    return (await session.execute(query)).all()
