"""Prompts by label through the gateway: ``prompt: {name, label, variables}`` is rendered with the shared renderer
through the prompts client's cache (the real prompts service, served on a port) into the messages; the record names
the prompt version; an unknown prompt or label, or a missing variable, is a 4xx and the backend is never called."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from ..conftest import ENGINEER
from .kafka_records import RecordReader

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_overrides(prompts_url):
    return {"prompts_url": prompts_url, "prompts_token": SecretStr(ENGINEER["authorization"][7:])}


@pytest.fixture
async def http(gateway_url, rows, backends):
    backend = backends("a")
    await rows.route("chat", [(await rows.deployment(backend.url), 1)])
    _, key = await rows.api_key()
    async with httpx.AsyncClient(base_url=gateway_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as c:
        yield c, backend


def ask(prompt: dict) -> dict:
    return {"model": "chat", "prompt": prompt, "messages": []}


class TestPromptByLabel:
    async def test_the_prompt_is_rendered_into_the_messages_and_recorded(self, http):
        client, backend = http
        prompt = {"name": "support", "label": "production", "variables": {"company": "ACME", "question": "why?"}}
        async with RecordReader() as reader:
            response = await client.post("/v1/chat/completions", json=ask(prompt))
            assert response.status_code == 200, response.text
            sent = (await backend.stats())["last"]
            assert sent["messages"] == [
                {"role": "system", "content": "You answer for ACME."},
                {"role": "user", "content": "why?"},
            ]
            assert "prompt" not in sent
            rid = response.headers["x-request-id"]
            data = (await reader.read({rid}))[rid][0]["data"]
        assert data["prompt_version_id"]

    @pytest.mark.parametrize(
        ("prompt", "status", "param"),
        [
            ({"name": "nope", "label": "production", "variables": {}}, 404, "prompt"),
            ({"name": "support", "label": "nope", "variables": {"company": "A", "question": "q"}}, 404, "prompt"),
            ({"name": "support", "label": "production", "variables": {"company": "A"}}, 400, "prompt.variables"),
        ],
    )
    async def test_what_cannot_be_rendered_is_4xx_and_the_backend_is_not_called(self, http, prompt, status, param):
        client, backend = http
        response = await client.post("/v1/chat/completions", json=ask(prompt))
        assert response.status_code == status, response.text
        assert response.json()["error"]["param"] == param
        assert await backend.requests() == 0
