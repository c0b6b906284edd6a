"""The app factory with auth on real Postgres, Kafka and the S3 store: 401/403/422, denial events, probes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from functools import partial
from typing import Annotated

import httpx
import pytest
import sqlalchemy
from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from llmops import testing
from llmops.auth import Permission, Principal, ProjectScope, Role, in_project, requires
from llmops.bus import add_to_outbox, make_broker, outbox
from llmops.db import Database
from llmops.errors import Forbidden, Problem
from llmops.http import Session, create_app
from llmops.infra.private import free_port
from llmops.runtime import Runtime
from llmops.settings import AuthSettings, ServiceSettings
from llmops.storage import ObjectStore
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent
from llmops_schemas.topics import SECURITY

pytestmark = pytest.mark.integration

READ_THINGS = Permission("things.read", {Role.VIEWER, Role.ML_ENGINEER})
router = APIRouter()


@router.get("/projects/{project}/things")
async def list_things(
    session: Session,
    scope: Annotated[ProjectScope, Depends(in_project(READ_THINGS))],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict:
    return {"project": scope.project, "limit": limit, "caller": scope.actor.subject}


@router.get("/projects/{project}/vault")
async def open_vault(scope: Annotated[ProjectScope, Depends(in_project(READ_THINGS))]) -> dict:
    if "vault.keeper" not in scope.principal.subject:
        raise Forbidden("not_the_keeper", "only the keeper opens the vault")  # as a service layer refuses
    return {}


@router.get("/projects/{project}/crash")
async def crash(project: str, principal: Annotated[Principal, Depends(requires(READ_THINGS))]) -> dict:
    raise RuntimeError(f"a bug in {project}")


@router.get("/projects/{project}/count")
async def count(project: str, session: Session, _: Annotated[Principal, Depends(requires(READ_THINGS))]) -> dict:
    return {"one": (await session.execute(select(1))).scalar_one()}


@router.post("/projects/{project}/notes")
async def take_note(project: str, note: dict, principal: Annotated[Principal, Depends(requires(READ_THINGS))]) -> dict:
    return {"size": len(json.dumps(note))}


@router.post("/projects/{project}/probes", status_code=201)
async def write_probe(
    project: str,
    session: Session,
    principal: Annotated[Principal, Depends(requires(READ_THINGS))],
    fail: bool = False,
) -> dict:
    event = new_event(ProbeSent(message=project), subject=f"probe-{project}", source="/tests")
    sqlalchemy.event.listen(session.sync_session, "after_commit", lambda _: ORDER.append(("commit", project)))
    await add_to_outbox(session, event)
    if fail:
        raise Problem(409, "the use case refused after writing")
    return {"event_id": event.id}


ORDER: list[tuple[str, str]] = []  # commits and response starts, as they happen


def recording_starts(app):
    """``app``, noting in ORDER when each response starts (what the client can act on)."""

    async def recorded(scope, receive, send):
        async def send_noting(message):
            if message["type"] == "http.response.start":
                ORDER.append(("response", scope["path"].split("/")[2] if scope["path"].count("/") > 1 else ""))
            await send(message)

        await app(scope, receive, send_noting)

    return recorded


class Settings(ServiceSettings):
    service: str = "things"


@pytest.fixture(scope="module")
async def client(database_url):
    runtime = Runtime(
        Settings(database_url=database_url, outbox_poll_interval=0.05),
        Database(database_url),
        make_broker(client_id="tests-http"),
        ObjectStore(),
    )
    app = create_app(runtime, title="things", routers=[router])
    await runtime.start()
    transport = httpx.ASGITransport(app=recording_starts(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        http.runtime = runtime  # for the tests that drive the runtime's timers themselves
        yield http
    await runtime.stop()


bearer = partial(testing.bearer, projects=("p1",), subject="alice")


async def denial_events(request_id: str, *, within: float = 20) -> list[dict]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [
            json.loads(r.value)
            for r in await testing.read_to_end(SECURITY)
            if json.loads(r.value)["data"].get("request_id") == request_id
        ]
        if found:
            return found
        await asyncio.sleep(0.5)
    return []


class TestAuthentication:
    async def test_a_request_without_a_token_is_refused_with_401_and_the_denial_is_published(self, client):
        request_id = str(uuid.uuid4())
        response = await client.get("/projects/p1/things", headers={"x-request-id": request_id})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"] == "urn:llmops:problem:missing_token"
        await client.runtime.anonymous_denials.flush()  # the end of the counting window
        [event] = await denial_events(request_id)
        assert event["type"] == "security.access.denied"
        assert event["subject"] == "anonymous"
        assert event["data"]["status"] == 401 and event["data"]["reason"] == "missing_token"
        assert event["data"]["count"] == 1

    async def test_a_thousand_anonymous_requests_from_one_source_are_one_denial_with_the_count(self, client):
        await client.runtime.anonymous_denials.flush()  # start a window of this test's own
        first = str(uuid.uuid4())
        for n in range(1000):
            headers = {"x-request-id": first} if n == 0 else {}
            assert (await client.get("/projects/p1/things", headers=headers)).status_code == 401
        async with client.runtime.db.sessions() as session:
            before = await session.scalar(select(func.count()).select_from(outbox))
        assert await client.runtime.anonymous_denials.flush() == 1
        async with client.runtime.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(outbox)) == before + 1
        [event] = await denial_events(first)
        assert event["data"]["count"] == 1000
        assert event["correlationid"] == first  # the first request's, as the other fields
        assert event["data"]["source"] == "127.0.0.1"
        assert event["data"]["window_seconds"] == 60

    async def test_a_token_signed_with_another_secret_is_refused_with_401(self, client):
        forged = AuthSettings(jwt_secret="someone-elses-secret-that-is-long-enough-for-hs256")
        response = await client.get("/projects/p1/things", headers=bearer(Role.VIEWER, settings=forged))
        assert response.status_code == 401
        assert response.json()["type"] == "urn:llmops:problem:invalid_token"

    async def test_an_expired_token_is_refused_with_401(self, client):
        response = await client.get("/projects/p1/things", headers=bearer(Role.VIEWER, ttl_seconds=-60))
        assert response.status_code == 401
        assert response.json()["type"] == "urn:llmops:problem:expired_token"


class TestAuthorisation:
    async def test_a_token_without_the_role_is_refused_with_403_and_the_denial_is_on_the_security_topic(self, client):
        request_id = str(uuid.uuid4())
        response = await client.get(
            "/projects/p1/things",
            headers={**bearer(Role.AUDITOR, subject="mallory"), "x-request-id": request_id},
        )
        assert response.status_code == 403
        assert "things.read" in response.json()["detail"]
        [event] = await denial_events(request_id)
        assert event["subject"] == "mallory"
        assert event["source"] == "/llmops/things"
        assert event["data"] | {"request_id": None} == {
            "service": "things",
            "status": 403,
            "reason": "missing_role",
            "permission": "things.read",
            "method": "GET",
            "path": "/projects/p1/things",
            "principal": "mallory",
            "roles": ["auditor"],
            "project": "p1",
            "request_id": None,
            "source": "127.0.0.1",
            "count": 1,  # authenticated refusals are recorded one by one
            "window_seconds": None,
        }

    async def test_a_rule_of_the_service_layer_refusing_is_403_with_the_same_denial_event(self, client):
        request_id = str(uuid.uuid4())
        response = await client.get(
            "/projects/p1/vault", headers={**bearer(Role.VIEWER, subject="mallory"), "x-request-id": request_id}
        )
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:llmops:problem:not_the_keeper"
        assert response.json()["detail"] == "only the keeper opens the vault"
        [event] = await denial_events(request_id)
        assert event["type"] == "security.access.denied" and event["subject"] == "mallory"
        assert event["data"] | {"request_id": None} == {
            "service": "things",
            "status": 403,
            "reason": "not_the_keeper",
            "permission": None,
            "method": "GET",
            "path": "/projects/p1/vault",
            "principal": "mallory",
            "roles": ["viewer"],
            "project": "p1",
            "request_id": None,
            "source": "127.0.0.1",
            "count": 1,
            "window_seconds": None,
        }

    async def test_a_project_outside_the_token_scope_is_refused_with_403(self, client):
        response = await client.get("/projects/other/things", headers=bearer(Role.VIEWER, projects=("p1",)))
        assert response.status_code == 403
        assert response.json()["type"] == "urn:llmops:problem:wrong_project"

    async def test_a_caller_with_the_role_and_project_is_served(self, client):
        response = await client.get("/projects/p1/things?limit=5", headers=bearer(Role.ML_ENGINEER))
        assert response.status_code == 200
        assert response.json() == {"project": "p1", "limit": 5, "caller": "alice"}

    async def test_admin_holds_every_permission_in_every_project(self, client):
        response = await client.get("/projects/any/things", headers=bearer(Role.ADMIN, projects=("*",)))
        assert response.status_code == 200


class TestTransactionAtTheEdge:
    async def test_a_route_that_succeeds_commits_its_writes(self, client, database_url):
        response = await client.post("/projects/p1/probes", headers=bearer(Role.VIEWER))
        assert response.status_code == 201
        assert await outbox_rows(database_url, subject="probe-p1") == 1

    async def test_the_writes_are_committed_before_the_response_starts(self, client):
        # A client that acts on a 201 (reads what it created) must find it: the commit cannot follow the response.
        response = await client.post("/projects/p3/probes", headers=bearer(Role.VIEWER, projects=("p3",)))
        assert response.status_code == 201
        assert [entry for entry in ORDER if entry[1] == "p3"] == [("commit", "p3"), ("response", "p3")]

    async def test_a_route_that_fails_rolls_back_its_writes(self, client, database_url):
        response = await client.post("/projects/p2/probes?fail=true", headers=bearer(Role.VIEWER, projects=("*",)))
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert await outbox_rows(database_url, subject="probe-p2") == 0


async def outbox_rows(url: str, *, subject: str) -> int:
    db = Database(url)
    async with db.sessions() as session:
        count = await session.scalar(select(func.count()).where(outbox.c.key == subject))
    await db.dispose()
    return count


class TestProblemDetails:
    async def test_bad_input_is_a_422_problem_naming_the_field(self, client):
        response = await client.get("/projects/p1/things?limit=0", headers=bearer(Role.VIEWER))
        assert response.status_code == 422
        body = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert body["status"] == 422 and body["errors"][0]["field"] == "limit"
        assert "limit" in body["detail"]

    async def test_an_unknown_route_is_a_404_problem_with_the_request_id(self, client):
        response = await client.get("/nowhere", headers={"x-request-id": "rid-1"})
        assert response.status_code == 404
        assert response.json()["request_id"] == "rid-1"
        assert response.headers["x-request-id"] == "rid-1"


class TestOperationsRoutes:
    async def test_healthz_answers(self, client):
        assert (await client.get("/healthz")).json() == {"status": "ok", "service": "things"}

    async def test_readyz_checks_postgres_kafka_and_the_object_store(self, client):
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"postgres": "ok", "kafka": "ok", "object_store": "ok"}

    async def test_readyz_is_503_when_a_dependency_is_down(self, database_url):
        broken = Runtime(
            Settings(database_url=database_url),
            Database(database_url.replace(":5433/", ":1/")),
            make_broker(client_id="tests-broken"),
            None,
            run_relay=False,
        )
        app = create_app(broken, title="broken")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            response = await http.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["postgres"].startswith("error")
        await broken.db.dispose()

    async def test_metrics_count_requests_by_route_and_status(self, client):
        await client.get("/healthz")
        text = (await client.get("/metrics")).text
        assert 'llmops_http_requests_total{method="GET",route="/healthz",service="things",status="200"}' in text


class TestBodyLimits:
    async def test_a_declared_body_over_the_limit_is_413_before_it_is_read(self, client):
        body = json.dumps({"text": "x" * (2 * 1024 * 1024)})
        response = await client.post(
            "/projects/p1/notes", content=body, headers={**bearer(Role.VIEWER), "content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["limit_bytes"] == 1024 * 1024
        assert response.json()["request_id"] == response.headers["x-request-id"]

    async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(self, client):
        sent = []

        async def chunks():
            for _ in range(64):  # 4 MiB in 64 KiB pieces, with no Content-Length
                sent.append(1)
                yield b"x" * 65536

        response = await client.post(
            "/projects/p1/notes", content=chunks(), headers={**bearer(Role.VIEWER), "content-type": "application/json"}
        )
        assert response.status_code == 413
        assert "larger than the limit of 1048576 bytes" in response.json()["detail"]

    async def test_a_body_under_the_limit_is_served(self, client):
        response = await client.post("/projects/p1/notes", json={"text": "hello"}, headers=bearer(Role.VIEWER))
        assert response.status_code == 200 and response.json() == {"size": 17}


class TestCrashes:
    async def test_a_500_names_a_request_id_found_once_in_the_log_with_its_traceback(self, client, capsys):
        from llmops.logging import configure_logging

        configure_logging("INFO", json=True)
        response = await client.get("/projects/p1/crash", headers=bearer(Role.VIEWER))
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        request_id = response.json()["request_id"]
        assert request_id == response.headers["x-request-id"]
        lines = [line for line in capsys.readouterr().err.splitlines() if request_id in line]
        assert len(lines) == 1, lines
        logged = json.loads(lines[0])
        assert logged["event"] == "http.unhandled_error" and "RuntimeError: a bug in p1" in logged["exception"]

    async def test_postgres_out_of_reach_is_a_503_to_retry_not_a_500(self, database_url, capsys):
        from llmops.logging import configure_logging

        configure_logging("INFO", json=True)
        away = database_url.replace(":5433/", f":{free_port()}/")  # nothing listens there: connection refused
        runtime = Runtime(Settings(database_url=away), Database(away), make_broker(client_id="tests-away"), None)
        app = create_app(runtime, title="things", routers=[router])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            response = await http.get("/projects/p1/count", headers=bearer(Role.VIEWER))
            served = await http.get("/projects/p1/things", headers=bearer(Role.VIEWER))  # needs no query
        await runtime.db.dispose()
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "2"
        body = response.json()
        assert body["type"] == "urn:llmops:problem:dependency-unavailable" and "retry" in body["detail"]
        assert served.status_code == 200
        logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if body["request_id"] in line]
        assert [line["event"] for line in logged] == ["http.dependency_unavailable"]


class TestNulCharacters:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"text": "a\u0000b"}, "text"),
            ({"items": [{"name": "ok"}, {"name": "x\u0000"}]}, "items.1.name"),
            ({"x\u0000": 1}, "x\\u0000"),
        ],
    )
    async def test_a_nul_in_a_json_string_or_key_is_422_naming_the_field(self, client, body, field):
        response = await client.post("/projects/p1/notes", json=body, headers=bearer(Role.VIEWER))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in response.json()["errors"]] == [field]

    async def test_a_nul_in_a_query_parameter_is_422_naming_it(self, client):
        response = await client.get("/projects/p1/things?limit=1&q=%00", headers=bearer(Role.VIEWER))
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "q"
        assert response.json()["errors"][0]["location"] == "query"

    async def test_an_escaped_backslash_before_u0000_is_no_nul(self, client):
        response = await client.post("/projects/p1/notes", json={"text": "C:\\u0000"}, headers=bearer(Role.VIEWER))
        assert response.status_code == 200
