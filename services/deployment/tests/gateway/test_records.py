"""The gateway's inference records on Kafka: one event per request, completed or failed, with what served it, the
usage and its source, text redacted with the platform's PII rules or only hashed; shadows recorded as such."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from .kafka_records import RecordReader

pytestmark = pytest.mark.integration

EMAIL = "jane.doe@example.com"


@pytest.fixture
async def served(rows, backends, gateway_url):
    backend = backends("a")
    deployment = await rows.deployment(backend.url)
    await rows.route("chat", [(deployment, 1)])
    _, key = await rows.api_key()
    async with (
        RecordReader() as reader,
        httpx.AsyncClient(base_url=gateway_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as http,
    ):
        yield http, reader, deployment, rows, backends


def ask(text: str, **extra) -> dict:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], **extra}


class TestCompleted:
    async def test_a_record_carries_the_redacted_text_usage_and_deployment(self, served):
        http, reader, deployment, *_ = served
        response = await http.post("/v1/chat/completions", json=ask(f"write to {EMAIL}", user="u-7"))
        rid = response.headers["x-request-id"]
        event = (await reader.read({rid}))[rid][0]
        data = event["data"]
        assert event["type"] == "inference.completed" and event["subject"] == rid
        assert EMAIL not in data["input"] and "[EMAIL]" in data["input"]
        assert data["output"] == "hello from a" and data["text_mode"] == "redacted"
        assert (data["tokens_in"], data["tokens_out"], data["usage_source"]) == (7, 3, "backend")
        assert data["deployment_id"] == deployment and data["user"] == "u-7" and data["route"] == "chat"

    async def test_a_stream_is_recorded_with_its_time_to_first_token(self, served):
        http, reader, *_ = served
        response = await http.post("/v1/chat/completions", json=ask("hi", stream=True))
        rid = response.headers["x-request-id"]
        data = (await reader.read({rid}))[rid][0]["data"]
        assert data["stream"] is True and data["output"] == "hello from a"
        assert data["time_to_first_token_ms"] is not None

    @pytest.mark.parametrize("gateway_overrides", [{"record_text": "hashed"}])
    async def test_hashed_mode_keeps_only_the_texts_hashes(self, served, gateway_overrides):
        http, reader, *_ = served
        response = await http.post("/v1/chat/completions", json=ask(f"write to {EMAIL}"))
        rid = response.headers["x-request-id"]
        data = (await reader.read({rid}))[rid][0]["data"]
        assert data["text_mode"] == "hashed" and data.get("input") is None and data.get("output") is None
        assert data["input_sha256"] == hashlib.sha256(f"write to {EMAIL}".encode()).hexdigest()
        assert data["output_sha256"] == hashlib.sha256(b"hello from a").hexdigest()

    async def test_without_usage_from_the_backend_the_models_tokenizer_counts(
        self, served, tiny_model, deployment_settings
    ):
        from tokenizers import Tokenizer

        from llmops.artifacts import put_directory
        from llmops.storage import ObjectStore

        http, reader, _, rows, backends = served
        manifest = (await put_directory(ObjectStore(deployment_settings.s3), tiny_model)).sha256
        quiet = backends("quiet", "no-usage")
        model = {"name": "tiny", "kind": "full", "manifest_sha256": manifest}
        await rows.change_route("chat", [(await rows.deployment(quiet.url, model=model), 1)])
        response = await http.post("/v1/chat/completions", json=ask("count these tokens"))
        tokenizer = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
        expected = len(tokenizer.encode("hello from quiet", add_special_tokens=False).ids)
        assert response.json()["usage"]["completion_tokens"] == expected
        rid = response.headers["x-request-id"]
        assert (await reader.read({rid}))[rid][0]["data"]["usage_source"] == "tokenizer"

    async def test_without_usage_or_a_tokenizer_the_tokens_are_estimated_and_said_so(self, served):
        http, reader, _, rows, backends = served
        quiet = backends("quiet", "no-usage")
        await rows.change_route("chat", [(await rows.deployment(quiet.url), 1)])
        response = await http.post("/v1/chat/completions", json=ask("count these tokens"))
        assert response.json()["usage"]["completion_tokens"] == (len("hello from quiet") + 3) // 4
        rid = response.headers["x-request-id"]
        assert (await reader.read({rid}))[rid][0]["data"]["usage_source"] == "estimate"


class TestFailed:
    async def test_a_failed_request_is_recorded_with_its_status(self, served):
        http, reader, _, rows, backends = served
        failing = backends("failing", "fail")
        await rows.change_route("chat", [(await rows.deployment(failing.url), 1)])
        response = await http.post("/v1/chat/completions", json=ask("hi"))
        rid = response.headers["x-request-id"]
        event = (await reader.read({rid}))[rid][0]
        assert event["type"] == "inference.failed"
        assert event["data"]["status"] == 502 == response.status_code

    async def test_a_shadows_answer_is_recorded_as_a_shadow(self, served):
        http, reader, deployment, rows, backends = served
        shadow = backends("shadow")
        shadow_id = await rows.deployment(shadow.url)
        await rows.change_route("chat", [(deployment, 1)], shadows=[shadow_id])
        response = await http.post("/v1/chat/completions", json=ask("hi"))
        rid = response.headers["x-request-id"]
        shadow_rid = f"{rid}.shadow-{shadow_id[:8]}"
        found = await reader.read({rid, shadow_rid})
        assert found[shadow_rid][0]["data"]["shadow"] is True
        assert found[shadow_rid][0]["data"]["output"] == "hello from shadow"
        assert found[rid][0]["data"]["shadow"] is False
