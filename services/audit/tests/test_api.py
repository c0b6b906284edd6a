"""The audit service's HTTP API on real Kafka and Postgres: who may call it, what it refuses, what it answers."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
import uuid
from functools import partial

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from llmops import testing
from llmops.auth import Role
from llmops.bus.tables import outbox
from llmops.errors import PROBLEM_JSON
from llmops.settings import PostgresSettings
from llmops_audit import export, repository
from llmops_audit.chain import signature_valid
from llmops_schemas import CloudEvent, new_event
from llmops_schemas.events import AccessDenied, CheckpointSigned, ProbeSent
from llmops_schemas.topics import SECURITY

from .conftest import BOOTSTRAP, probes, publish, wait_for_head

pytestmark = pytest.mark.integration

ROUTES = [
    pytest.param("GET", "/audit/events", id="query"),
    pytest.param("GET", "/audit/subjects/thing-0/history", id="history"),
    pytest.param("GET", "/audit/export", id="export"),
    pytest.param("GET", "/audit/verify", id="verify"),
    pytest.param("GET", "/audit/checkpoints", id="list-checkpoints"),
    pytest.param("POST", "/audit/checkpoints", id="sign-checkpoint"),
]


bearer = partial(testing.bearer, projects=("*",), subject="tester")


@pytest.fixture
async def client(audit):
    """The service's app over ASGI (the fixture has started its runtime: consumer, relay, database)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit.app), base_url="http://test") as client:
        yield client


@pytest.fixture
async def log(audit, topics) -> list[CloudEvent]:
    """20 events recorded: 12 probes in p1, 6 in p2, 2 denials in p1 with a correlation id."""
    events = [
        *probes(12, subjects=4),
        *probes(6, subjects=2, project="p2", start=100),
        *(
            new_event(
                AccessDenied(service="datasets", status=403, reason="missing_role", method="GET", path=f"/x/{i}"),
                subject="mallory",
                source="/llmops/datasets",
                actor="mallory",
                project="p1",
                correlation_id="req-42",
            )
            for i in range(2)
        ),
    ]
    await publish(topics[0], events)
    await wait_for_head(audit.runtime.db, len(events))
    return events


def ids(entries) -> list[str]:
    return [entry["event_id"] for entry in entries]


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    return response.json()


async def find_on_topic(topic: str, request_id: str, *, within: float = 30) -> tuple[bytes, dict]:
    """The key and event of the denial of request ``request_id``, reading ``topic`` from its beginning."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    event = json.loads(record.value)
                    if event.get("data", {}).get("request_id") == request_id:
                        return record.key, event
        raise AssertionError(f"no denial of request {request_id} on {topic} within {within}s")
    finally:
        await consumer.stop()


class TestRoles:
    @pytest.mark.parametrize("role", [Role.AUDITOR, Role.ADMIN])
    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_auditors_and_admins_are_served(self, client, log, method, path, role):
        response = await client.request(method, path, headers=bearer(role))
        assert response.is_success, response.text

    @pytest.mark.parametrize("role", [Role.ML_ENGINEER, Role.DATA_STEWARD, Role.VIEWER])
    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_every_other_role_is_refused_with_403(self, client, method, path, role):
        problem = assert_problem(await client.request(method, path, headers=bearer(role)), 403)
        assert problem["type"] == "urn:llmops:problem:missing_role"

    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_a_request_without_a_token_is_refused_with_401(self, client, method, path):
        response = await client.request(method, path)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


class TestDenialsAreRecorded:
    @pytest.mark.parametrize(
        ("role", "projects", "query", "reason"),
        [
            pytest.param(Role.VIEWER, ("*",), {}, "missing_role", id="wrong-role"),
            pytest.param(Role.AUDITOR, ("p1",), {"project": "p2"}, "wrong_project", id="wrong-project"),
        ],
    )
    async def test_a_403_is_written_to_the_outbox_and_published_to_the_security_topic(
        self, audit, client, role, projects, query, reason
    ):
        request_id = f"req-{uuid.uuid4().hex}"
        headers = bearer(role, projects=projects) | {"x-request-id": request_id}
        response = await client.get("/audit/events", params=query, headers=headers)
        assert_problem(response, 403)

        async with audit.runtime.db.sessions() as session:
            rows = (await session.execute(select(outbox.c.topic, outbox.c.payload))).all()
        recorded = [(topic, json.loads(payload)) for topic, payload in rows]
        denials = [(topic, event) for topic, event in recorded if event["data"].get("request_id") == request_id]
        assert len(denials) == 1
        topic, event = denials[0]
        assert (topic, event["type"], event["subject"]) == (SECURITY, "security.access.denied", "tester")
        assert event["data"] == {
            "service": "audit",
            "status": 403,
            "reason": reason,
            "permission": "audit.read" if reason == "missing_role" else None,
            "method": "GET",
            "path": "/audit/events",
            "principal": "tester",
            "roles": [role.value],
            "project": query.get("project"),
            "request_id": request_id,
            "source": "127.0.0.1",
            "count": 1,
            "window_seconds": None,
        }

        key, published = await find_on_topic(SECURITY, request_id)
        assert published == event
        assert key == b"tester"


class TestBadInput:
    @pytest.mark.parametrize(
        ("path", "query", "field"),
        [
            pytest.param("/audit/events", {"limit": 0}, "limit", id="limit-0"),
            pytest.param("/audit/events", {"limit": 5000}, "limit", id="limit-5000"),
            pytest.param("/audit/events", {"from_time": "not-a-date"}, "from_time", id="from_time-not-a-date"),
            pytest.param(
                "/audit/events",
                {"from_time": "2025-06-02T00:00:00Z", "to_time": "2025-06-01T00:00:00Z"},
                "to_time",
                id="to_time-before-from_time",
            ),
            pytest.param("/audit/events", {"cursor": "bogus"}, "cursor", id="cursor-not-base64"),
            pytest.param(
                "/audit/events", {"cursor": base64.urlsafe_b64encode(b"page:2").decode()}, "cursor", id="cursor-foreign"
            ),
            pytest.param("/audit/events", {"colour": "red"}, "colour", id="unknown-parameter"),
            pytest.param("/audit/export", {"format": "xml"}, "format", id="export-format-xml"),
            pytest.param("/audit/export", {"from_seq": 0}, "from_seq", id="export-from_seq-0"),
            pytest.param("/audit/verify", {"from_seq": 5, "to_seq": 2}, "to_seq", id="verify-to_seq-before-from_seq"),
            pytest.param(
                "/audit/events",
                {"from_time": "2025-06-01T00:00:00Z", "to_time": "2025-06-02T00:00:00"},
                "to_time",
                id="to_time-without-timezone",
            ),
        ],
    )
    async def test_is_refused_with_a_422_problem_naming_the_field(self, client, path, query, field):
        problem = assert_problem(await client.get(path, params=query, headers=bearer(Role.AUDITOR)), 422)
        assert field in [error["field"] for error in problem["errors"]]
        assert field in problem["detail"]


class TestQuery:
    @pytest.mark.parametrize(
        ("name", "value", "attribute"),
        [
            ("type", "security.access.denied", "type"),
            ("actor", "user-1", "actor"),
            ("subject", "thing-1", "subject"),
            ("project", "p2", "project"),
            ("correlation_id", "req-42", "correlationid"),
        ],
    )
    async def test_a_filter_selects_exactly_the_matching_entries_in_chain_order(
        self, client, log, name, value, attribute
    ):
        response = await client.get("/audit/events", params={name: value}, headers=bearer(Role.AUDITOR))
        page = response.json()
        assert sorted(ids(page["items"])) == sorted(e.id for e in log if getattr(e, attribute) == value)
        assert page["items"] and all(entry[name] == value for entry in page["items"])
        assert [entry["seq"] for entry in page["items"]] == sorted(entry["seq"] for entry in page["items"])
        assert page["next_cursor"] is None

    async def test_a_time_window_selects_events_from_from_time_until_before_to_time(self, client, log):
        times = sorted(e.time for e in log)
        window = {"from_time": times[5].isoformat(), "to_time": times[15].isoformat()}
        response = await client.get("/audit/events", params=window, headers=bearer(Role.AUDITOR))
        assert sorted(ids(response.json()["items"])) == sorted(e.id for e in log if times[5] <= e.time < times[15])

    async def test_entries_carry_their_event_and_chain_hashes(self, client, log):
        entry = (await client.get("/audit/events", params={"limit": 1}, headers=bearer(Role.AUDITOR))).json()
        first = entry["items"][0]
        assert first["seq"] == 1 and first["prev_hash"] == "0" * 64 and len(first["hash"]) == 64
        assert first["event"]["id"] == first["event_id"]

    async def test_pages_followed_by_cursor_return_every_entry_exactly_once(self, client, log):
        seen, pages, cursor = [], 0, None
        while True:
            query = {"limit": 7} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/audit/events", params=query, headers=bearer(Role.AUDITOR))).json()
            seen.extend(page["items"])
            pages += 1
            if (cursor := page["next_cursor"]) is None:
                break
        assert pages == 3
        assert [entry["seq"] for entry in seen] == list(range(1, len(log) + 1))
        assert sorted(ids(seen)) == sorted(e.id for e in log)

    async def test_a_project_scoped_token_sees_only_its_projects_entries(self, client, log):
        p1_only = bearer(Role.AUDITOR, projects=("p1",))
        entries = (await client.get("/audit/events", headers=p1_only)).json()["items"]
        assert sorted(ids(entries)) == sorted(e.id for e in log if e.project == "p1")
        filtered = (await client.get("/audit/events", params={"project": "p1"}, headers=p1_only)).json()["items"]
        assert ids(filtered) == ids(entries)

    async def test_a_project_scoped_token_asking_for_another_project_is_refused_with_403(self, client, log):
        response = await client.get(
            "/audit/events", params={"project": "p2"}, headers=bearer(Role.AUDITOR, projects=("p1",))
        )
        assert assert_problem(response, 403)["type"] == "urn:llmops:problem:wrong_project"


class TestHistory:
    @pytest.fixture
    async def chain_of_causes(self, audit, topics, log) -> dict[str, CloudEvent]:
        """dataset-1 caused job-7, which caused model-3; an unrelated dataset-2 besides."""

        def event(subject: str, cause: CloudEvent | None = None, project: str = "p1") -> CloudEvent:
            return new_event(
                ProbeSent(message=subject),
                subject=subject,
                source="/tests",
                project=project,
                causation_id=cause.id if cause else None,
            )

        dataset = event("dataset-1")
        job = event("job-7", dataset)
        model = event("model-3", job, project="p2")
        events = {"dataset": dataset, "job": job, "model": model, "unrelated": event("dataset-2")}
        await publish(topics[1], events.values())
        await wait_for_head(audit.runtime.db, len(log) + len(events))
        return events

    async def test_a_subjects_history_holds_its_events_and_those_they_caused(self, client, chain_of_causes):
        response = await client.get("/audit/subjects/dataset-1/history", headers=bearer(Role.AUDITOR))
        expected = [chain_of_causes[k].id for k in ("dataset", "job", "model")]
        assert sorted(ids(response.json())) == sorted(expected)

    async def test_a_subjects_history_holds_the_events_that_caused_it(self, client, chain_of_causes):
        response = await client.get("/audit/subjects/model-3/history", headers=bearer(Role.AUDITOR))
        assert sorted(ids(response.json())) == sorted(chain_of_causes[k].id for k in ("dataset", "job", "model"))

    async def test_a_project_scoped_history_leaves_out_other_projects(self, client, chain_of_causes):
        response = await client.get("/audit/subjects/dataset-1/history", headers=bearer(Role.AUDITOR, projects=("p1",)))
        assert sorted(ids(response.json())) == sorted(chain_of_causes[k].id for k in ("dataset", "job"))

    async def test_an_unknown_subject_has_an_empty_history(self, client, log):
        response = await client.get("/audit/subjects/nothing-here/history", headers=bearer(Role.AUDITOR))
        assert response.status_code == 200 and response.json() == []


class TestExport:
    @pytest.fixture
    async def signed(self, client, log) -> dict:
        response = await client.post("/audit/checkpoints", headers=bearer(Role.AUDITOR))
        assert response.status_code == 201, response.text
        return response.json()

    async def test_a_jsonl_export_parses_and_verifies(self, audit, client, log, signed, tmp_path):
        response = await client.get("/audit/export", headers=bearer(Role.AUDITOR))
        assert response.headers["content-type"].startswith("application/x-ndjson")
        path = tmp_path / "audit.jsonl"
        path.write_bytes(response.content)

        records = [json.loads(line) for line in response.text.splitlines()]
        assert records[0]["kind"] == "header" and records[0]["contiguous"] is True
        assert records[0]["public_key"] == audit.signer.public_key_b64
        assert [r["seq"] for r in records if r["kind"] == "entry"] == list(range(1, len(log) + 1))
        assert [r["signature"] for r in records if r["kind"] == "checkpoint"] == [signed["signature"]]
        report, warnings = export.verify_export(path, public_key=audit.signer.public_key)
        assert report.ok, report.as_dict()
        assert (report.checked, report.checkpoints_checked, warnings) == (len(log), 1, [])

    async def test_a_csv_export_parses_and_verifies(self, audit, client, log, signed, tmp_path):
        response = await client.get("/audit/export", params={"format": "csv"}, headers=bearer(Role.AUDITOR))
        assert response.headers["content-type"].startswith("text/csv")
        path = tmp_path / "audit.csv"
        path.write_bytes(response.content)

        rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
        assert [row["kind"] for row in rows] == ["header", *["entry"] * len(log), "checkpoint", "trailer"]
        assert sorted(row["event_id"] for row in rows if row["kind"] == "entry") == sorted(e.id for e in log)
        report, _ = export.verify_export(path, public_key=audit.signer.public_key)
        assert report.ok, report.as_dict()
        assert (report.checked, report.checkpoints_checked) == (len(log), 1)

    async def test_a_sequence_range_exports_a_contiguous_piece_that_verifies(self, audit, client, log, tmp_path):
        query = {"from_seq": 5, "to_seq": 12}
        response = await client.get("/audit/export", params=query, headers=bearer(Role.AUDITOR))
        path = tmp_path / "range.jsonl"
        path.write_bytes(response.content)
        report, _ = export.verify_export(path, public_key=audit.signer.public_key)
        assert report.ok, report.as_dict()
        assert (report.first_seq, report.last_seq, report.checked) == (5, 12, 8)

    async def test_a_filtered_export_says_it_is_not_contiguous_and_still_verifies(self, audit, client, log, tmp_path):
        response = await client.get("/audit/export", params={"project": "p2"}, headers=bearer(Role.AUDITOR))
        path = tmp_path / "p2.jsonl"
        path.write_bytes(response.content)
        assert json.loads(response.text.splitlines()[0])["contiguous"] is False
        report, warnings = export.verify_export(path, public_key=audit.signer.public_key)
        assert report.ok and report.checked == sum(e.project == "p2" for e in log)
        assert any("filtered export" in w for w in warnings)


class TestCheckpoints:
    async def test_signing_returns_the_signed_head_and_the_list_holds_it(self, audit, client, log):
        response = await client.post("/audit/checkpoints", headers=bearer(Role.AUDITOR))
        assert response.status_code == 201, response.text
        checkpoint = response.json()
        async with audit.runtime.db.sessions() as session:
            head = await repository.read_head(session)
        assert (checkpoint["seq"], checkpoint["hash"]) == head == (len(log), head[1])
        assert checkpoint["public_key"] == audit.signer.public_key_b64
        assert signature_valid(CheckpointSigned.model_validate(checkpoint), audit.signer.public_key)
        listed = (await client.get("/audit/checkpoints", headers=bearer(Role.AUDITOR))).json()
        assert listed == [checkpoint]

    async def test_signing_an_empty_log_is_refused_with_409(self, client):
        assert_problem(await client.post("/audit/checkpoints", headers=bearer(Role.AUDITOR)), 409)


class TestVerify:
    async def test_an_intact_log_verifies(self, client, log):
        await client.post("/audit/checkpoints", headers=bearer(Role.AUDITOR))
        report = (await client.get("/audit/verify", headers=bearer(Role.AUDITOR))).json()
        assert report["ok"] is True, report
        assert (report["checked"], report["first_seq"], report["last_seq"]) == (len(log), 1, len(log))
        assert report["checkpoints_checked"] == 1 and report["first_broken_seq"] is None

    async def test_a_range_verifies_only_its_entries(self, client, log):
        query = {"from_seq": 3, "to_seq": 9}
        report = (await client.get("/audit/verify", params=query, headers=bearer(Role.AUDITOR))).json()
        assert report["ok"] is True, report
        assert (report["checked"], report["first_seq"], report["last_seq"]) == (7, 3, 9)

    async def test_a_deleted_entry_is_reported_at_its_sequence_number(self, audit, client, log):
        await tamper(audit, "DELETE FROM audit_log WHERE seq = 6")
        report = (await client.get("/audit/verify", headers=bearer(Role.AUDITOR))).json()
        assert (report["ok"], report["first_broken_seq"], report["reason"]) == (False, 6, "missing_sequence")

    @pytest.mark.parametrize(
        ("query", "deleted"),
        [({"from_seq": 6, "to_seq": 9}, 6), ({"from_seq": 3, "to_seq": 6}, 6)],
        ids=["first-of-range", "last-of-range"],
    )
    async def test_a_deleted_entry_at_either_end_of_a_range_is_reported(self, audit, client, log, query, deleted):
        await tamper(audit, "DELETE FROM audit_log WHERE seq = $1", deleted)
        report = (await client.get("/audit/verify", params=query, headers=bearer(Role.AUDITOR))).json()
        assert (report["ok"], report["first_broken_seq"]) == (False, deleted)

    @pytest.mark.parametrize("column", ["actor", "type", "subject", "project", "time"])
    async def test_a_forged_column_is_reported_at_its_sequence_number(self, audit, client, log, column):
        from .test_tamper import FORGED

        await tamper(audit, f"UPDATE audit_log SET {column} = {FORGED[column]} WHERE seq = 7")  # noqa: S608
        report = (await client.get("/audit/verify", headers=bearer(Role.AUDITOR))).json()
        assert (report["ok"], report["first_broken_seq"], report["reason"]) == (False, 7, "column_mismatch")
        assert report["detail"].startswith(f"the {column} column ")

    async def test_a_range_after_the_head_has_nothing_to_check_and_is_ok(self, client, log):
        query = {"from_seq": len(log) + 1}
        report = (await client.get("/audit/verify", params=query, headers=bearer(Role.AUDITOR))).json()
        assert (report["ok"], report["checked"]) == (True, 0), report


async def tamper(audit, statement: str, *args) -> None:
    """Change the log as a superuser with triggers off (what the service's own roles cannot do)."""
    pg = PostgresSettings()
    database = audit.settings.db_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(pg.superuser_url(database).replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(statement, *args)
    finally:
        await conn.close()
