"""The prompts API on real Postgres and Kafka: versions, labels and history, protection, rendering, tests, client."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import orjson
import pytest
from sqlalchemy import select

from llmops.auth import Role
from llmops.bus import outbox
from llmops.prompt_client import PromptClient

from .conftest import ADMIN, ENGINEER, VIEWER, bearer

pytestmark = pytest.mark.integration

CHAT = {
    "kind": "chat",
    "messages": [
        {"role": "system", "content": "You are the assistant of {{ company }}. Answer in {{ language }}."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "variables": {
        "company": {"type": "string"},
        "language": {"type": "string", "enum": ["English", "German"]},
        "question": {"type": "string", "maxLength": 200},
    },
}
VARIABLES = {"company": "ACME", "language": "English", "question": "Where is my order?"}


def with_system(text: str) -> dict:
    return CHAT | {"messages": [{"role": "system", "content": text}, CHAT["messages"][1]]}


async def setup_prompt(client, name="support", versions=2):
    assert (await client.post("/projects/p1/prompts", json={"name": name}, headers=ENGINEER)).status_code == 201
    for n in range(versions):
        template = CHAT if n == 0 else with_system(f"v{n + 1}: you work for {{{{ company }}}} in {{{{ language }}}}.")
        body = {
            "template": template,
            "parameters": {"temperature": round(0.2 + n / 10, 2), "max_tokens": 300},
            "message": f"version {n + 1}",
        }
        response = await client.post(f"/projects/p1/prompts/{name}/versions", json=body, headers=ENGINEER)
        assert response.status_code == 201, response.text


async def move(client, label, version, headers=ENGINEER, **extra):
    return await client.put(
        f"/projects/p1/prompts/support/labels/{label}",
        json={"version": version, "reason": f"to v{version}", **extra},
        headers=headers,
    )


async def outbox_events(prompts) -> list[dict]:
    async with prompts.runtime.db.sessions() as session:
        return [
            orjson.loads(p) for p in (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        ]


class TestVersions:
    async def test_versions_are_numbered_immutable_and_an_unchanged_commit_adds_nothing(self, client, prompts):
        await setup_prompt(client)
        again = await client.post(
            "/projects/p1/prompts/support/versions",
            json={
                "template": with_system("v2: you work for {{ company }} in {{ language }}."),
                "parameters": {"temperature": 0.3, "max_tokens": 300},
                "message": "same",
            },
            headers=ENGINEER,
        )
        assert again.status_code == 200 and again.json()["version"] == 2
        shown = (await client.get("/projects/p1/prompts/support", headers=VIEWER)).json()
        assert [v["version"] for v in shown["versions"]] == [1, 2]
        types = [e["type"] for e in await outbox_events(prompts)]
        assert types == ["prompt.created", "prompt.version.created", "prompt.version.created"]

    async def test_the_diff_shows_template_and_parameter_changes(self, client):
        await setup_prompt(client)
        diff = (
            await client.get("/projects/p1/prompts/support/diff", params={"from": 1, "to": 2}, headers=VIEWER)
        ).json()
        assert "-You are the assistant of {{ company }}" in diff["template"]
        assert "+v2: you work for {{ company }}" in diff["template"]
        assert diff["parameters"] == {"temperature": {"from": 0.2, "to": 0.3}}

    async def test_a_template_with_a_syntax_error_or_bad_schema_is_422(self, client):
        await client.post("/projects/p1/prompts", json={"name": "support"}, headers=ENGINEER)
        bad = {"kind": "text", "text": "Hello {{ name ", "variables": {"name": {"type": "string"}}}
        response = await client.post(
            "/projects/p1/prompts/support/versions", json={"template": bad, "message": "x"}, headers=ENGINEER
        )
        assert response.status_code == 422 and "syntax" in response.text
        schema = {"kind": "text", "text": "{{ n }}", "variables": {"n": {"type": "no-such-type"}}}
        response = await client.post(
            "/projects/p1/prompts/support/versions", json={"template": schema, "message": "x"}, headers=ENGINEER
        )
        assert response.status_code == 422 and "JSON Schema" in response.text

    async def test_a_2_mb_template_is_refused_naming_the_field_and_later_versions_are_published(self, client, prompts):
        await client.post("/projects/p1/prompts", json={"name": "huge"}, headers=ENGINEER)
        huge = {"kind": "text", "text": "x" * (2 * 1024 * 1024)}
        body = {"template": huge, "message": "too big"}
        response = await client.post("/projects/p1/prompts/huge/versions", json=body, headers=ENGINEER)
        assert response.status_code == 413, response.text  # the body limit, before anything is parsed
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["limit_bytes"] == 1024 * 1024
        # Under the body limit, the template's own cap names the field.
        body["template"]["text"] = "x" * 150_000
        response = await client.post("/projects/p1/prompts/huge/versions", json=body, headers=ENGINEER)
        assert response.status_code == 422, response.text
        assert "template.text" in {e["field"] for e in response.json()["errors"]}

        await setup_prompt(client, name="after", versions=1)

        async def published() -> list[dict]:
            async with prompts.runtime.db.sessions() as session:
                rows = (await session.execute(select(outbox.c.payload, outbox.c.published_at))).all()
            return [orjson.loads(r.payload) for r in rows if r.published_at is not None]

        async def after_published() -> bool:
            return any(
                e["type"] == "prompt.version.created" and e["data"]["name"] == "after" for e in await published()
            )

        deadline = asyncio.get_running_loop().time() + 30
        while not await after_published():
            assert asyncio.get_running_loop().time() < deadline, "the relay stopped publishing"
            await asyncio.sleep(0.05)
        assert not any(len(orjson.dumps(e)) > 1_000_000 for e in await published())


class TestLabels:
    async def test_moves_are_kept_as_history_with_who_when_from_to_and_why(self, client, prompts):
        await setup_prompt(client)
        assert (await move(client, "production", 1)).status_code == 200
        assert (await move(client, "production", 2)).status_code == 200
        history = (await client.get("/projects/p1/prompts/support/labels/production/history", headers=VIEWER)).json()
        assert [(m["from_version"], m["to_version"], m["moved_by"], m["reason"]) for m in history] == [
            (None, 1, "eve", "to v1"),
            (1, 2, "eve", "to v2"),
        ]
        moved = [e for e in await outbox_events(prompts) if e["type"] == "prompt.label.moved"]
        assert [(e["data"]["from_version"], e["data"]["to_version"]) for e in moved] == [(None, 1), (1, 2)]

    async def test_concurrent_moves_never_lose_a_move_from_the_history(self, client):
        await setup_prompt(client, versions=3)
        responses = await asyncio.gather(*(move(client, "staging", 1 + i % 3) for i in range(24)))
        assert all(r.status_code == 200 for r in responses)
        history = (await client.get("/projects/p1/prompts/support/labels/staging/history", headers=VIEWER)).json()
        assert len(history) == 24
        for before, after in itertools.pairwise(history):
            assert after["from_version"] == before["to_version"], "a move was lost or interleaved"
        label = (await client.get("/projects/p1/prompts/support", headers=VIEWER)).json()["labels"][0]
        assert label["version"] == history[-1]["to_version"]

    async def test_a_protected_label_is_refused_to_others_with_403_and_the_denial_is_recorded(self, client, prompts):
        await setup_prompt(client)
        assert (await move(client, "production", 1, ADMIN, protected=True)).status_code == 200
        refused = await move(client, "production", 2)
        assert refused.status_code == 403 and refused.json()["type"] == "urn:llmops:problem:protected_label"
        denials = [e for e in await outbox_events(prompts) if e["type"] == "security.access.denied"]
        assert denials[-1]["data"]["reason"] == "protected_label" and denials[-1]["subject"] == "eve"
        assert (await move(client, "production", 2, ADMIN)).status_code == 200
        # protecting a label is itself an admin's decision
        assert (await move(client, "staging", 1, ENGINEER, protected=True)).status_code == 403

    async def test_a_protected_label_does_not_move_when_a_render_test_fails(self, client):
        await setup_prompt(client)
        test = {"name": "mentions-company", "variables": VARIABLES, "expect": {"contains": ["assistant of ACME"]}}
        assert (await client.post("/projects/p1/prompts/support/tests", json=test, headers=ENGINEER)).status_code == 201
        assert (await move(client, "production", 1, ADMIN, protected=True)).status_code == 200
        refused = await move(client, "production", 2, ADMIN)  # v2 no longer says "assistant of"
        assert refused.status_code == 409
        assert refused.json()["failures"][0]["test"] == "mentions-company"
        label = (await client.get("/projects/p1/prompts/support", headers=VIEWER)).json()["labels"][0]
        assert label["version"] == 1

    async def test_test_cases_run_against_a_version_and_report_each_failure(self, client):
        await setup_prompt(client)
        for case in (
            {"name": "short", "variables": VARIABLES, "expect": {"max_length": 500, "regex": "ACME"}},
            {"name": "json", "variables": VARIABLES, "expect": {"json_schema": {"type": "object"}}},
        ):
            await client.post("/projects/p1/prompts/support/tests", json=case, headers=ENGINEER)
        run = (
            await client.post("/projects/p1/prompts/support/tests/run", params={"version": 1}, headers=VIEWER)
        ).json()
        assert run["passed"] is False
        assert {r["test"]: r["passed"] for r in run["results"]} == {"json": False, "short": True}


class TestRender:
    async def test_renders_by_label_with_variables(self, client):
        await setup_prompt(client)
        await move(client, "production", 1)
        body = {"label": "production", "variables": VARIABLES}
        rendered = (await client.post("/projects/p1/prompts/support/render", json=body, headers=VIEWER)).json()
        assert rendered["messages"][0]["content"] == "You are the assistant of ACME. Answer in English."
        assert rendered["parameters"] == {"temperature": 0.2, "max_tokens": 300}

    async def test_missing_and_mistyped_variables_are_422_naming_each(self, client):
        await setup_prompt(client)
        body = {"version": 1, "variables": {"company": 42, "language": "Klingon", "extra": 1}}
        response = await client.post("/projects/p1/prompts/support/render", json=body, headers=VIEWER)
        assert response.status_code == 422
        fields = {e["field"] for e in response.json()["errors"]}
        assert fields == {"variables.company", "variables.language", "variables.question", "variables.extra"}

    async def test_a_sandbox_escape_is_refused(self, client):
        await client.post("/projects/p1/prompts", json={"name": "evil"}, headers=ENGINEER)
        template = {"kind": "text", "text": "{{ ''.__class__.__mro__[1].__subclasses__() }}", "variables": {}}
        await client.post(
            "/projects/p1/prompts/evil/versions", json={"template": template, "message": "x"}, headers=ENGINEER
        )
        response = await client.post("/projects/p1/prompts/evil/render", json={"version": 1}, headers=VIEWER)
        assert response.status_code == 422 and "sandbox" in response.json()["detail"]
        assert "subclasses" not in response.text.split('"detail"')[0]


class TestClientCache:
    @pytest.fixture
    def transport(self, prompts):
        return httpx.ASGITransport(app=prompts.app)

    async def test_a_second_get_within_the_ttl_makes_no_request(self, client, transport):
        await setup_prompt(client)
        await move(client, "production", 1)
        token = bearer(Role.VIEWER)["authorization"].split()[1]
        async with PromptClient("p1", base_url="http://test", token=token, ttl_seconds=60, transport=transport) as pc:
            first = await pc.get("support", label="production")
            second = await pc.get("support", label="production")
            assert first == second and pc.requests == 1
            assert (await pc.render("support", VARIABLES, label="production"))[1]["content"] == "Where is my order?"
            assert pc.requests == 1

    async def test_after_a_move_the_new_version_is_seen_when_the_ttl_expires(self, client, transport):
        await setup_prompt(client)
        await move(client, "production", 1)
        token = bearer(Role.VIEWER)["authorization"].split()[1]
        now = [1000.0]  # the cache's clock, moved by the test
        async with PromptClient(
            "p1", base_url="http://test", token=token, ttl_seconds=30, transport=transport, clock=lambda: now[0]
        ) as pc:
            assert (await pc.get("support", label="production")).version == 1
            await move(client, "production", 2)
            now[0] += 29.9
            assert (await pc.get("support", label="production")).version == 1  # still within the TTL
            assert pc.requests == 1
            now[0] += 0.2
            assert (await pc.get("support", label="production")).version == 2

    async def test_with_revalidation_a_move_is_seen_at_once_and_an_unchanged_prompt_costs_a_304(
        self, client, transport
    ):
        await setup_prompt(client)
        await move(client, "production", 1)
        token = bearer(Role.VIEWER)["authorization"].split()[1]
        async with PromptClient("p1", base_url="http://test", token=token, revalidate=True, transport=transport) as pc:
            assert (await pc.get("support", label="production")).version == 1
            etag = (
                await client.get("/projects/p1/prompts/support/resolve", params={"label": "production"}, headers=VIEWER)
            ).headers["etag"]
            unchanged = await client.get(
                "/projects/p1/prompts/support/resolve",
                params={"label": "production"},
                headers=VIEWER | {"if-none-match": etag},
            )
            assert unchanged.status_code == 304 and unchanged.content == b""
            await move(client, "production", 2)
            assert (await pc.get("support", label="production")).version == 2


class TestPermissions:
    ROUTES = [
        ("post", "/projects/p1/prompts", {"json": {"name": "x"}}, "write"),
        ("get", "/projects/p1/prompts", {}, "read"),
        ("get", "/projects/p1/prompts/support", {}, "read"),
        ("post", "/projects/p1/prompts/support/versions", {"json": {"template": CHAT, "message": "m"}}, "write"),
        ("get", "/projects/p1/prompts/support/versions/1", {}, "read"),
        ("get", "/projects/p1/prompts/support/resolve", {}, "read"),
        ("get", "/projects/p1/prompts/support/diff?from=1&to=2", {}, "read"),
        ("put", "/projects/p1/prompts/support/labels/dev", {"json": {"version": 1, "reason": "r"}}, "write"),
        ("get", "/projects/p1/prompts/support/labels/dev/history", {}, "read"),
        ("post", "/projects/p1/prompts/support/render", {"json": {"version": 1, "variables": VARIABLES}}, "read"),
        (
            "post",
            "/projects/p1/prompts/support/tests",
            {"json": {"name": "t", "variables": VARIABLES, "expect": {"max_length": 10000}}},
            "write",
        ),
        ("get", "/projects/p1/prompts/support/tests", {}, "read"),
        ("post", "/projects/p1/prompts/support/tests/run", {}, "read"),
    ]

    @pytest.mark.parametrize(("method", "path", "kwargs", "kind"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
    @pytest.mark.parametrize("role", list(Role))
    async def test_each_route_allows_exactly_its_roles(self, client, method, path, kwargs, kind, role):
        await setup_prompt(client)
        response = await getattr(client, method)(path, headers=bearer(role), **kwargs)
        allowed = {Role.ADMIN, Role.ML_ENGINEER} | ({Role.VIEWER} if kind == "read" else set())
        if role in allowed:
            assert response.status_code < 400, response.text
        else:
            assert response.status_code == 403

    @pytest.mark.parametrize(("method", "path", "kwargs", "kind"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
    async def test_each_route_needs_a_token(self, client, method, path, kwargs, kind):
        assert (await getattr(client, method)(path, **kwargs)).status_code == 401

    async def test_another_project_is_refused(self, client):
        await setup_prompt(client)
        other = bearer(Role.ML_ENGINEER, projects=("p2",))
        assert (await client.get("/projects/p1/prompts/support", headers=other)).status_code == 403

    async def test_bad_input_is_422_naming_the_field(self, client):
        response = await client.post("/projects/p1/prompts", json={"name": "Bad Name"}, headers=ENGINEER)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name"
        await setup_prompt(client)
        response = await move(client, "production", 0)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "version"


class TestSyncClient:
    async def test_the_sync_client_caches_and_revalidates_like_the_async_one(self, client, prompts):
        from llmops.prompt_client import SyncPromptClient
        from llmops.testing import serve

        await setup_prompt(client)
        await move(client, "production", 1)
        token = bearer(Role.VIEWER)["authorization"].split()[1]
        async with serve(prompts.app) as url:

            def use() -> tuple[int, int, int, str]:
                with SyncPromptClient("p1", base_url=url, token=token, ttl_seconds=60) as pc:
                    first = pc.get("support", label="production").version
                    pc.get("support", label="production")
                    rendered = pc.render("support", VARIABLES, label="production")
                    return first, pc.requests, len(rendered), rendered[1]["content"]

            # a blocking client in a thread, the server in this event loop
            assert await asyncio.to_thread(use) == (1, 1, 2, "Where is my order?")
