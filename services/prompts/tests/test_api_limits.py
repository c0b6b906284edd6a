"""The prompts API at its edges: bounded renders and test runs off the event loop, user schemas and regexes refused
when they could read files, fetch URLs or backtrack for ever."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest

from .conftest import ENGINEER, VIEWER

pytestmark = pytest.mark.integration

# ~1M steps of a few microseconds each: stopped by the render budget (1 s) or the loop budget, never finished
SLOW = "{% for i in range(999) %}{% for j in range(999) %}{% if '%d-%d' % (i, j) %}{% endif %}{% endfor %}{% endfor %}"


async def commit(client, template: dict, name: str = "edge"):
    await client.post("/projects/p1/prompts", json={"name": name}, headers=ENGINEER)
    body = {"template": template, "message": "x"}
    return await client.post(f"/projects/p1/prompts/{name}/versions", json=body, headers=ENGINEER)


def fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


class TestRenderLimits:
    async def test_a_gigabyte_string_is_refused_before_it_is_built_with_422_naming_the_limit(self, client):
        assert (await commit(client, {"kind": "text", "text": "{{ 'x' * 10**9 }}"})).status_code == 201
        # the render runs in this process (the app is served in-process): its allocations are traced here
        tracemalloc.start()
        try:
            response = await client.post("/projects/p1/prompts/edge/render", json={"version": 1}, headers=VIEWER)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 50 * 2**20, f"{peak:,} bytes allocated at the peak: the string was built"
        assert response.status_code == 422
        assert "render limit" in response.json()["detail"] and "1,000,000 characters" in response.json()["detail"]

    async def test_a_render_that_runs_past_its_budget_is_422_and_readyz_answers_meanwhile(self, client):
        await commit(client, {"kind": "text", "text": SLOW})
        render = asyncio.create_task(client.post("/projects/p1/prompts/edge/render", json={}, headers=VIEWER))
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and not render.done()
        response = await render
        assert response.status_code == 422 and "render limit" in response.json()["detail"]


class TestUserSchemas:
    async def test_a_variable_schema_with_a_remote_ref_is_422_naming_the_field_and_the_ref(self, client):
        variables = {"v": {"type": "object", "properties": {"a": {"$ref": "file:///etc/passwd"}}}}
        response = await commit(client, {"kind": "text", "text": "{{ v }}", "variables": variables})
        assert response.status_code == 422
        assert "template.variables" in fields(response)
        assert "$ref 'file:///etc/passwd' is not local" in response.text  # refused, not read

    async def test_an_expectation_schema_with_a_remote_ref_is_422_naming_the_field(self, client):
        await commit(client, {"kind": "text", "text": "{}"})
        case = {"name": "c", "variables": {}, "expect": {"json_schema": {"$ref": "http://127.0.0.1:9/s.json"}}}
        response = await client.post("/projects/p1/prompts/edge/tests", json=case, headers=ENGINEER)
        assert response.status_code == 422 and "expect.json_schema" in fields(response)
        assert "is not local" in response.text


class TestRegexExpectations:
    async def test_a_regex_re2_cannot_run_is_422_saying_re2_syntax_is_needed(self, client):
        await commit(client, {"kind": "text", "text": "x"})
        case = {"name": "c", "variables": {}, "expect": {"regex": r"(a)\1"}}
        response = await client.post("/projects/p1/prompts/edge/tests", json=case, headers=ENGINEER)
        assert response.status_code == 422 and "expect.regex" in fields(response)
        assert "RE2 syntax" in response.text

    async def test_a_catastrophic_regex_on_a_long_input_finishes_while_readyz_keeps_answering(self, client):
        template = {"kind": "text", "text": "{{ s }}{% if slow %}" + SLOW + "{% endif %}"}
        template["variables"] = {"s": {"type": "string"}, "slow": {"type": "boolean"}}
        await commit(client, template)
        cases = [
            {"name": "evil", "variables": {"s": "a" * 10_000 + "!", "slow": False}, "expect": {"regex": "(a+)+$"}},
            {"name": "slow", "variables": {"s": "", "slow": True}, "expect": {"contains": ["x"]}},  # 1 s in flight
        ]
        for case in cases:
            added = await client.post("/projects/p1/prompts/edge/tests", json=case, headers=ENGINEER)
            assert added.status_code == 201

        started = time.monotonic()
        run = asyncio.create_task(client.post("/projects/p1/prompts/edge/tests/run", headers=VIEWER))
        answered_in_flight = 0
        while not run.done():
            ready = await asyncio.wait_for(client.get("/readyz"), 10)
            assert ready.status_code == 200
            answered_in_flight += not run.done()
        response = await run
        assert time.monotonic() - started < 10  # generous: the regex is linear, the slow render stops at 1 s
        assert answered_in_flight >= 1
        results = {r["test"]: r for r in response.json()["results"]}
        assert results["evil"]["failures"] == ["regex: '(a+)+$' does not match"]
        assert "render limit" in results["slow"]["failures"][0]
