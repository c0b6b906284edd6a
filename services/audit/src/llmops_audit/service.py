"""The audit service's use cases: append events to the chain, sign checkpoints, query, trace, export, verify."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Delivery, add_to_outbox
from llmops.db import Database
from llmops.logging import get_logger
from llmops_audit import queries, repository
from llmops_audit.chain import GENESIS, ChainVerifier, Report, Signer, entry_hash, redacted
from llmops_schemas import canonical_json, new_event
from llmops_schemas.events.audit import CheckpointSigned

log = get_logger(__name__)

PAGE = 2000  # entries read per round trip when verifying


async def append(session: AsyncSession, deliveries: Sequence[Delivery]) -> int:
    """Append events to the chain in delivery order (the consumer's transaction holds the inbox rows too)."""
    seq, prev = await repository.lock_head(session)
    columns: dict[str, list] = {
        name: []
        for name in (
            "seq",
            "event_id",
            "type",
            "source",
            "subject",
            "actor",
            "project",
            "correlation_id",
            "causation_id",
            "time",
            "event",
            "prev_hash",
            "hash",
        )
    }
    for delivery in deliveries:
        event = delivery.event
        canonical = canonical_json(redacted(event))
        seq += 1
        chain_hash = entry_hash(seq, prev, canonical)
        for name, value in (
            ("seq", seq),
            ("event_id", event.id),
            ("type", event.type),
            ("source", event.source),
            ("subject", event.subject),
            ("actor", event.actor),
            ("project", event.project),
            ("correlation_id", event.correlationid),
            ("causation_id", event.causationid),
            ("time", event.time),
            ("event", canonical.decode()),
            ("prev_hash", prev),
            ("hash", chain_hash),
        ):
            columns[name].append(value)
        prev = chain_hash
    await repository.insert_entries(session, columns)
    await repository.move_head(session, seq, prev)
    return len(deliveries)


async def sign_checkpoint(session: AsyncSession, signer: Signer, *, source: str, force: bool = False):
    """Sign the current head and publish it (outbox); None when nothing was appended since the last checkpoint."""
    seq, chain_hash = await repository.read_head(session)
    if seq == 0:
        return None
    if not force:
        # Nothing new, or only the log's own checkpoint events since the last one: signing again would only
        # record another checkpoint event, and so on forever.
        last = await repository.last_checkpoint_seq(session)
        if last >= seq or not await repository.entries_since(session, last, excluding_type=CheckpointSigned.event_type):
            return None
    checkpoint = signer.sign(seq, chain_hash, datetime.now(UTC))
    await repository.insert_checkpoint(session, checkpoint.model_dump())
    await add_to_outbox(session, new_event(checkpoint, subject="audit-log", source=source, actor="audit"))
    log.info("audit.checkpoint.signed", seq=seq, hash=chain_hash)
    return checkpoint


async def verify(db: Database, public_key: bytes, *, from_seq: int | None = None, to_seq: int | None = None) -> Report:
    """Recompute the chain over [from_seq, to_seq] (default: all of it), check each entry's columns against its hashed
    event, and check the chain against the signed checkpoints and the head. Reads the database page by page; memory
    stays flat whatever the log's size."""
    async with db.sessions() as session:
        head_seq, head_hash = await repository.read_head(session)
        signed = await queries.checkpoints(session, from_seq=from_seq, to_seq=to_seq)
    start = from_seq or 1
    end = head_seq if to_seq is None else min(to_seq, head_seq)  # the last entry that must exist
    verifier = ChainVerifier(expected_prev=None if start > 1 else GENESIS)
    keep = {c.seq for c in signed} | {head_seq}
    after = start - 1
    while True:
        async with db.sessions() as session:
            entries = await repository.chain_entries(session, after_seq=after, to_seq=to_seq, limit=PAGE)
        if after == start - 1 and entries and entries[0].seq != start and start <= end:
            verifier.report.fail(
                start, "missing_sequence", f"entries {start}..{entries[0].seq - 1} are missing (deleted?)"
            )
        verifier.feed(entries, keep_hashes_for=keep)
        if len(entries) < PAGE:
            break
        after = entries[-1].seq
    verifier.check_checkpoints(signed, public_key)
    report = verifier.report
    last = report.last_seq if report.last_seq is not None else start - 1
    if last < end:
        report.fail(last + 1, "missing_sequence", f"entries {last + 1}..{end} are missing (the head is at {head_seq})")
    elif end == head_seq and verifier.recomputed.get(head_seq) not in (None, head_hash):
        report.fail(head_seq, "head_mismatch", "the chain head does not match the last entry")
    log.info("audit.verified", ok=report.ok, checked=report.checked, first_broken_seq=report.first_broken_seq)
    return report
