"""Tampering with the log: refused to the service's own roles, detected by verify when a superuser does it."""

from __future__ import annotations

import json

import asyncpg
import pytest

from llmops.bus import Delivery
from llmops.db import Database
from llmops.settings import PostgresSettings
from llmops_audit import export, queries, service
from llmops_audit.chain import GENESIS, Signer, entry_hash
from llmops_audit.repository import AuditFilter
from llmops_schemas import new_event

from .conftest import probes

pytestmark = pytest.mark.integration


@pytest.fixture
async def log_of_50(audit_settings):
    """A log of 50 entries with checkpoints signed at 30 and 50; yields (db, signer, database name)."""
    db = Database(audit_settings.db_url)
    signer = Signer(audit_settings.signing_key.get_secret_value())
    events = probes(50)
    for chunk in (events[:30], events[30:]):
        async with db.transaction() as session:
            await service.append(session, [Delivery(None, e, None) for e in chunk])
        async with db.transaction() as session:
            await service.sign_checkpoint(session, signer, source="/llmops/audit")
    yield db, signer, audit_settings.db_url.rsplit("/", 1)[1]
    await db.dispose()


async def as_superuser(database: str) -> asyncpg.Connection:
    pg = PostgresSettings()
    conn = await asyncpg.connect(
        pg.url(database, user=pg.superuser, password=pg.superuser_password.get_secret_value()).replace(
            "postgresql+asyncpg", "postgresql"
        )
    )
    await conn.execute("SET session_replication_role = replica")  # a superuser can switch triggers off
    return conn


async def write_export(db, signer, path, *, fmt: str) -> None:
    """An unfiltered export of the whole log, as GET /audit/export writes it."""
    where = AuditFilter()
    lines = [export.header(contiguous=True, filters={}, public_key=signer.public_key_b64, key_id=signer.key_id)]
    lines += [export.entry_record(row) async for row in queries.export_rows(db, where)]
    async with db.sessions() as session:
        lines += [export.checkpoint_record(c) for c in await queries.checkpoints(session)]
    entries = [r for r in lines if r["kind"] == "entry"]
    lines.append(export.trailer(len(entries), entries[0]["seq"], entries[-1]["seq"]))
    text = (
        "".join(export.jsonl_line(r) for r in lines)
        if fmt == "jsonl"
        else (export.csv_header() + "".join(export.csv_row(r) for r in lines))
    )
    path.write_text(text)


#: For each column that copies an attribute of the event, a forged value (SQL) a superuser could give it.
FORGED = {
    "event_id": "gen_random_uuid()",
    "type": "'platform.probe.forged'",
    "source": "'/forged'",
    "subject": "'thing-forged'",
    "actor": "'mallory'",
    "project": "'p-forged'",
    "correlation_id": "'req-forged'",
    "causation_id": "'cause-forged'",
    "time": "time - interval '1 day'",
}


async def forge(database: str, column: str, seq: int) -> None:
    conn = await as_superuser(database)
    try:
        await conn.execute(f"UPDATE audit_log SET {column} = {FORGED[column]} WHERE seq = $1", seq)  # noqa: S608
    finally:
        await conn.close()


class TestTheServiceCannotChangeTheLog:
    async def test_its_runtime_role_may_not_update_or_delete(self, log_of_50, audit_settings):
        app = await asyncpg.connect(audit_settings.db_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            for statement in (
                "UPDATE audit_log SET actor = 'x' WHERE seq = 1",
                "DELETE FROM audit_log WHERE seq = 1",
                "TRUNCATE audit_log",
                "DELETE FROM checkpoints",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.execute(statement)
        finally:
            await app.close()

    async def test_even_its_owner_role_is_stopped_by_the_append_only_trigger(self, log_of_50, audit_settings):
        owner = await asyncpg.connect(audit_settings.migrations_db_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute("DELETE FROM audit_log WHERE seq = 1")
        finally:
            await owner.close()


class TestVerifyFindsTampering:
    async def test_an_intact_log_verifies(self, log_of_50):
        db, signer, _ = log_of_50
        report = await service.verify(db, signer.public_key)
        assert report.ok and report.checked == 50 and report.checkpoints_checked == 2

    async def test_a_row_changed_by_a_superuser_is_reported_at_its_sequence_number(self, log_of_50):
        db, signer, name = log_of_50
        conn = await as_superuser(name)
        await conn.execute("UPDATE audit_log SET event = replace(event, 'event 9', 'event X') WHERE seq = 10")
        await conn.close()
        report = await service.verify(db, signer.public_key)
        assert (report.first_broken_seq, report.reason) == (10, "hash_mismatch")

    async def test_a_row_deleted_by_a_superuser_is_reported_at_its_sequence_number(self, log_of_50):
        db, signer, name = log_of_50
        conn = await as_superuser(name)
        await conn.execute("DELETE FROM audit_log WHERE seq = 20")
        await conn.close()
        report = await service.verify(db, signer.public_key)
        assert (report.first_broken_seq, report.reason) == (20, "missing_sequence")

    async def test_the_last_rows_deleted_are_reported_against_the_head(self, log_of_50):
        db, signer, name = log_of_50
        conn = await as_superuser(name)
        await conn.execute("DELETE FROM audit_log WHERE seq > 45")
        await conn.close()
        report = await service.verify(db, signer.public_key)
        assert (report.first_broken_seq, report.reason) == (46, "missing_sequence")

    async def test_a_consistent_rewrite_of_the_whole_chain_is_caught_by_the_signed_checkpoint(self, log_of_50):
        db, signer, name = log_of_50
        conn = await as_superuser(name)
        rows = await conn.fetch("SELECT seq, event FROM audit_log ORDER BY seq")
        prev = GENESIS
        async with conn.transaction():
            for row in rows:
                event = row["event"].replace("event 11", "event Y") if row["seq"] == 12 else row["event"]
                digest = entry_hash(row["seq"], prev, event.encode())
                await conn.execute(
                    "UPDATE audit_log SET event = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                    event,
                    prev,
                    digest,
                    row["seq"],
                )
                prev = digest
            await conn.execute("UPDATE chain_head SET hash = $1", prev)
        await conn.close()
        report = await service.verify(db, signer.public_key)
        # The rewritten chain is self-consistent; the first checkpoint signed after entry 12 exposes it.
        assert (report.first_broken_seq, report.reason) == (30, "checkpoint_mismatch")
        assert [p["reason"] for p in report.problems] == ["checkpoint_mismatch", "checkpoint_mismatch"]

    async def test_a_range_is_verified_on_its_own(self, log_of_50):
        db, signer, name = log_of_50
        conn = await as_superuser(name)
        await conn.execute("UPDATE audit_log SET actor = 'nobody', event = event || ' ' WHERE seq = 40")
        await conn.close()
        assert (await service.verify(db, signer.public_key, from_seq=1, to_seq=35)).ok
        report = await service.verify(db, signer.public_key, from_seq=36, to_seq=50)
        assert (report.first_broken_seq, report.reason) == (40, "hash_mismatch")


class TestVerifyChecksEveryColumnAgainstTheHashedEvent:
    @pytest.mark.parametrize("column", FORGED)
    async def test_a_forged_column_is_reported_at_its_sequence_number(self, log_of_50, column):
        db, signer, name = log_of_50
        await forge(name, column, 10)
        report = await service.verify(db, signer.public_key)
        assert (report.first_broken_seq, report.reason) == (10, "column_mismatch")
        assert report.detail.startswith(f"the {column} column ")
        assert len(report.problems) == 1, report.problems

    @pytest.mark.parametrize("fmt", ["jsonl", "csv"])
    @pytest.mark.parametrize("column", FORGED)
    async def test_a_forged_column_is_reported_at_its_sequence_number_by_the_offline_verifier(
        self, log_of_50, tmp_path, column, fmt
    ):
        db, signer, name = log_of_50
        await forge(name, column, 10)
        path = tmp_path / f"audit.{fmt}"
        await write_export(db, signer, path, fmt=fmt)
        report, _ = export.verify_export(path, public_key=signer.public_key)
        assert (report.first_broken_seq, report.reason) == (10, "column_mismatch")
        assert report.detail.startswith(f"the {column} column ")
        assert len(report.problems) == 1, report.problems

    async def test_a_range_checks_the_columns_of_its_entries_only(self, log_of_50):
        db, signer, name = log_of_50
        await forge(name, "actor", 40)
        assert (await service.verify(db, signer.public_key, from_seq=1, to_seq=39)).ok
        report = await service.verify(db, signer.public_key, from_seq=40, to_seq=50)
        assert (report.first_broken_seq, report.reason) == (40, "column_mismatch")


class TestOfflineVerifier:
    @pytest.mark.parametrize("fmt", ["jsonl", "csv"])
    async def test_an_untouched_export_verifies_and_an_edited_one_is_reported_at_the_right_place(
        self, log_of_50, tmp_path, fmt
    ):
        db, signer, _ = log_of_50
        path = tmp_path / f"audit.{fmt}"
        await write_export(db, signer, path, fmt=fmt)
        report, warnings = export.verify_export(path, public_key=signer.public_key)
        assert report.ok and report.checked == 50 and report.checkpoints_checked == 2 and not warnings

        path.write_text(path.read_text().replace("event 16", "event Z", 1))
        report, _ = export.verify_export(path, public_key=signer.public_key)
        assert (report.first_broken_seq, report.reason) == (17, "hash_mismatch")

    async def test_the_verifier_reports_the_same_as_the_service_for_a_rewritten_chain(self, log_of_50, tmp_path):
        db, signer, _ = log_of_50
        path = tmp_path / "audit.jsonl"
        await write_export(db, signer, path, fmt="jsonl")
        records = [json.loads(line) for line in path.read_text().splitlines()]
        prev = GENESIS
        for record in records:
            if record["kind"] != "entry":
                continue
            if record["seq"] == 5:
                record["event"] = record["event"].replace("event 4", "event W")
            record["prev_hash"], record["hash"] = prev, entry_hash(record["seq"], prev, record["event"].encode())
            prev = record["hash"]
        path.write_text("".join(export.jsonl_line(r) for r in records))
        report, _ = export.verify_export(path, public_key=signer.public_key)
        assert (report.first_broken_seq, report.reason) == (30, "checkpoint_mismatch")

    async def test_a_cut_off_export_is_reported(self, log_of_50, tmp_path):
        db, signer, _ = log_of_50
        path = tmp_path / "audit.jsonl"
        await write_export(db, signer, path, fmt="jsonl")
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:41] + lines[-1:]))  # header and 40 entries, then the trailer
        report, _ = export.verify_export(path, public_key=signer.public_key)
        assert (report.first_broken_seq, report.reason) == (41, "truncated")


class TestCheckpointTimer:
    async def test_the_timer_signs_only_when_other_events_arrived_since_the_last_checkpoint(self, log_of_50):
        db, signer, _ = log_of_50
        async with db.transaction() as session:
            assert await service.sign_checkpoint(session, signer, source="/llmops/audit") is None
        # The log records its own checkpoint event: still nothing to sign.
        async with db.transaction() as session:
            checkpoint = (await queries.checkpoints(session))[-1]
            event = new_event(checkpoint, subject="audit-log", source="/llmops/audit")
            await service.append(session, [Delivery(None, event, checkpoint)])
        async with db.transaction() as session:
            assert await service.sign_checkpoint(session, signer, source="/llmops/audit") is None
        async with db.transaction() as session:
            await service.append(session, [Delivery(None, e, None) for e in probes(1, start=50)])
        async with db.transaction() as session:
            signed = await service.sign_checkpoint(session, signer, source="/llmops/audit")
        assert signed is not None and signed.seq == 52
