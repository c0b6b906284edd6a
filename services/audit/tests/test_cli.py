"""`llmops audit ...`: verify-export offline on files built here; the online commands against a real server."""

from __future__ import annotations

import base64
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from llmops.testing import llmops, serve
from llmops.tokens import Role, issue_token
from llmops_audit import export
from llmops_audit.chain import GENESIS, Signer, entry_hash, redacted
from llmops_audit.cli import app
from llmops_schemas import canonical_json

from .conftest import probes, publish, wait_for_head
from .test_api import tamper

runner = CliRunner()
SIGNER = Signer(base64.b64encode(bytes(range(32))).decode())
OTHER_KEY = Signer(base64.b64encode(bytes(range(1, 33))).decode()).public_key_b64


def chain(events) -> list[SimpleNamespace]:
    """Rows as the audit log stores them: seq, the redacted canonical event, and the hash chain."""
    rows, prev = [], GENESIS
    for seq, event in enumerate(events, start=1):
        canonical = canonical_json(redacted(event))
        digest = entry_hash(seq, prev, canonical)
        rows.append(
            SimpleNamespace(
                seq=seq,
                event_id=event.id,
                type=event.type,
                source=event.source,
                subject=event.subject,
                actor=event.actor,
                project=event.project,
                correlation_id=event.correlationid,
                causation_id=event.causationid,
                time=event.time,
                prev_hash=prev,
                hash=digest,
                event=canonical.decode(),
            )
        )
        prev = digest
    return rows


def write_export(path: Path, rows, *, csv: bool = False) -> Path:
    """An export of ``rows`` with a checkpoint signed by SIGNER at the last entry."""
    last = rows[-1]
    records = [
        export.header(contiguous=True, filters={}, public_key=SIGNER.public_key_b64, key_id=SIGNER.key_id),
        *(export.entry_record(row) for row in rows),
        export.checkpoint_record(SIGNER.sign(last.seq, last.hash, datetime.now(UTC))),
        export.trailer(len(rows), rows[0].seq, last.seq),
    ]
    if csv:
        text = export.csv_header() + "".join(export.csv_row(record) for record in records)
    else:
        text = "".join(export.jsonl_line(record) for record in records)
    path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.fixture
def rows():
    return chain(probes(10, subjects=3))


class TestVerifyExport:
    @pytest.mark.parametrize("csv", [False, True], ids=["jsonl", "csv"])
    def test_an_intact_export_verifies_and_exits_0(self, tmp_path, rows, csv):
        path = write_export(tmp_path / "audit.export", rows, csv=csv)
        result = runner.invoke(app, ["verify-export", str(path), "--public-key", SIGNER.public_key_b64])
        assert result.exit_code == 0, result.output
        assert "ok" in result.stdout and "10 entries checked" in result.stdout
        assert "warning" not in result.stderr

    def test_without_a_public_key_it_warns_that_it_trusts_the_key_in_the_file(self, tmp_path, rows):
        result = runner.invoke(app, ["verify-export", str(write_export(tmp_path / "audit.jsonl", rows))])
        assert result.exit_code == 0, result.output
        assert "trusting the key written in the file itself" in result.stderr

    def test_an_edited_entry_exits_1_and_names_its_sequence_number(self, tmp_path, rows):
        rows[3].event = edited(rows[3].event)
        path = write_export(tmp_path / "audit.jsonl", rows)
        result = runner.invoke(app, ["verify-export", str(path), "--public-key", SIGNER.public_key_b64, "--json"])
        assert result.exit_code == 1, result.output
        report = json.loads(result.stdout)
        assert (report["ok"], report["first_broken_seq"], report["reason"]) == (False, 4, "hash_mismatch")

    def test_an_edited_entry_is_reported_in_words(self, tmp_path, rows):
        rows[3].event = edited(rows[3].event)
        path = write_export(tmp_path / "audit.csv", rows, csv=True)
        result = runner.invoke(app, ["verify-export", str(path), "--public-key", SIGNER.public_key_b64])
        assert result.exit_code == 1
        assert "broken at seq 4: hash_mismatch" in result.stdout

    @pytest.mark.parametrize("csv", [False, True], ids=["jsonl", "csv"])
    @pytest.mark.parametrize(
        ("column", "forged"),
        [
            ("actor", "mallory"),
            ("type", "platform.probe.forged"),
            ("subject", "thing-forged"),
            ("project", "p-forged"),
            ("time", datetime(2020, 1, 1, tzinfo=UTC)),
        ],
        ids=["actor", "type", "subject", "project", "time"],
    )
    def test_a_column_that_differs_from_its_hashed_event_exits_1_naming_it(self, tmp_path, rows, csv, column, forged):
        setattr(rows[3], column, forged)
        path = write_export(tmp_path / "audit.export", rows, csv=csv)
        result = runner.invoke(app, ["verify-export", str(path), "--public-key", SIGNER.public_key_b64])
        assert result.exit_code == 1, result.output
        assert f"broken at seq 4: column_mismatch: the {column} column" in result.stdout

    def test_a_checkpoint_checked_against_another_key_fails(self, tmp_path, rows):
        path = write_export(tmp_path / "audit.jsonl", rows)
        result = runner.invoke(app, ["verify-export", str(path), "--public-key", OTHER_KEY, "--json"])
        assert result.exit_code == 1, result.output
        report = json.loads(result.stdout)
        assert (report["first_broken_seq"], report["reason"]) == (10, "bad_checkpoint_signature")

    @pytest.mark.parametrize(
        "content",
        [
            pytest.param("this is not an export\n", id="text"),
            pytest.param('{"kind": "entry", "seq": 1}\n', id="no-header"),
            pytest.param("", id="empty"),
            pytest.param("[1, 2, 3]\n", id="json-not-an-object"),
            pytest.param("kind,seq\nheader,1\n", id="csv-not-an-export"),
        ],
    )
    def test_a_file_that_is_not_an_export_exits_2(self, tmp_path, content):
        path = tmp_path / "notes.txt"
        path.write_text(content, encoding="utf-8")
        result = runner.invoke(app, ["verify-export", str(path)])
        assert result.exit_code == 2, result.output
        assert "not a readable export" in result.stderr

    def test_an_entry_missing_its_fields_exits_2(self, tmp_path, rows):
        path = write_export(tmp_path / "audit.jsonl", rows)
        lines = path.read_text().splitlines(keepends=True)
        lines[2] = json.dumps({"kind": "entry", "seq": 2}) + "\n"
        path.write_text("".join(lines))
        assert runner.invoke(app, ["verify-export", str(path)]).exit_code == 2

    @pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()], ids=["not-base64", "short"])
    def test_a_public_key_that_is_not_an_ed25519_key_is_a_usage_error(self, tmp_path, rows, key):
        path = write_export(tmp_path / "audit.jsonl", rows)
        result = runner.invoke(app, ["verify-export", str(path), "--public-key", key])
        assert result.exit_code == 2
        assert "--public-key" in result.output


class TestOnlineCommandsWithoutAService:
    def test_no_token_exits_1_saying_how_to_get_one(self, monkeypatch):
        monkeypatch.delenv("LLMOPS_CLIENT_TOKEN", raising=False)
        result = runner.invoke(app, ["query"])
        assert result.exit_code == 1
        assert "no bearer token" in result.stderr and "LLMOPS_CLIENT_TOKEN" in result.stderr

    @pytest.mark.parametrize("command", [["query"], ["history", "x"], ["verify"], ["export", "-o", "out.jsonl"]])
    def test_an_unreachable_service_exits_1(self, tmp_path, monkeypatch, command):
        monkeypatch.chdir(tmp_path)
        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            result = runner.invoke(app, [*command, "--url", url, "--token", "t"])
        assert result.exit_code == 1
        assert f"cannot reach the audit service at {url}" in result.stderr
        assert list(tmp_path.iterdir()) == []  # export leaves no file behind


# -- against a real server ---------------------------------------------------------------------------------------
@pytest.fixture
async def server(audit):
    """The audit app served by uvicorn on a free local port, in this test's event loop (where its runtime lives)."""
    async with serve(audit.app) as url:
        yield url


@pytest.fixture
async def recorded(audit, topics):
    events = probes(12, subjects=4)
    await publish(topics[0], events)
    await wait_for_head(audit.runtime.db, len(events))
    return events


def auditor() -> str:
    return issue_token("cli-tester", [Role.AUDITOR], ["*"])


@pytest.mark.integration
class TestOnlineCommands:
    async def test_query_json_follows_every_page(self, server, recorded):
        code, out, err = await llmops(
            "audit", "query", "--json", "--all", "--limit", "5", "--url", server, "--token", auditor()
        )
        assert code == 0, err
        entries = [json.loads(line) for line in out.splitlines()]
        assert [e["seq"] for e in entries] == list(range(1, 13))
        assert sorted(e["event_id"] for e in entries) == sorted(e.id for e in recorded)

    async def test_query_without_all_prints_one_page_and_says_there_is_more(self, server, recorded):
        code, out, err = await llmops("audit", "query", "--limit", "5", "--url", server, "--token", auditor())
        assert code == 0, err
        assert "--all" in err
        assert "seq" in out and "platform.probe.sent" in out and "thing-" in out

    async def test_query_reads_the_token_and_url_from_the_environment(self, server, recorded):
        env = {"LLMOPS_CLIENT_TOKEN": auditor(), "LLMOPS_CLIENT_AUDIT_URL": server}
        code, out, err = await llmops("audit", "query", "--json", "--subject", "thing-1", env=env)
        assert code == 0, err
        assert sorted(json.loads(line)["event_id"] for line in out.splitlines()) == sorted(
            e.id for e in recorded if e.subject == "thing-1"
        )

    async def test_a_refusal_prints_the_problems_detail_and_exits_1(self, server, recorded):
        viewer = issue_token("cli-tester", [Role.VIEWER], ["*"])
        code, _, err = await llmops("audit", "query", "--url", server, "--token", viewer)
        assert code == 1
        assert "403" in err and "needs one of the roles" in err

    async def test_invalid_input_prints_the_field_and_exits_1(self, server, recorded):
        code, _, err = await llmops("audit", "query", "--limit", "0", "--url", server, "--token", auditor())
        assert code == 1
        assert "422 invalid input: limit" in err

    async def test_history_prints_the_subjects_events(self, server, recorded):
        code, out, err = await llmops("audit", "history", "thing-2", "--json", "--url", server, "--token", auditor())
        assert code == 0, err
        assert sorted(json.loads(line)["event_id"] for line in out.splitlines()) == sorted(
            e.id for e in recorded if e.subject == "thing-2"
        )

    async def test_verify_of_an_intact_log_exits_0(self, server, recorded):
        code, out, err = await llmops("audit", "verify", "--url", server, "--token", auditor())
        assert code == 0, err
        assert "ok" in out and "12 entries checked" in out

    async def test_verify_of_a_tampered_log_exits_1_naming_the_broken_entry(self, audit, server, recorded):
        await tamper(audit, "UPDATE audit_log SET event = replace(event, 'event', 'EVENT') WHERE seq = 7")
        code, out, _ = await llmops("audit", "verify", "--url", server, "--token", auditor())
        assert code == 1
        assert "broken at seq 7: hash_mismatch" in out

    @pytest.mark.parametrize("fmt", ["jsonl", "csv"])
    async def test_an_export_verifies_offline(self, audit, server, recorded, tmp_path, fmt):
        output = tmp_path / f"audit.{fmt}"
        args = ("--url", server, "--token", auditor())
        code, _, err = await llmops("audit", "export", "--format", fmt, "--output", str(output), *args)
        assert code == 0, err
        assert "wrote" in err and sorted(p.name for p in tmp_path.iterdir()) == [output.name]

        key = audit.signer.public_key_b64
        code, out, err = await llmops("audit", "verify-export", str(output), "--public-key", key)
        assert code == 0, err
        assert "12 entries checked" in out

    async def test_a_refused_export_writes_no_file(self, server, recorded, tmp_path):
        output = tmp_path / "audit.jsonl"
        code, _, err = await llmops(
            "audit", "export", "--format", "jsonl", "-o", str(output), "--url", server, "--token", "bad"
        )
        assert code == 1 and "401" in err
        assert list(tmp_path.iterdir()) == []


def edited(event: str) -> str:
    changed = event.replace('"message":"event 3"', '"message":"event X"')
    assert changed != event
    return changed
