"""The serving worker on real Postgres, Kafka and object store, with real ``transformers serve`` backends of the tiny
model: a full model served and answering (a merged adapter: test_artifacts), a backend that crashes at every start
failing with its log lines, a stop that drains and stops, an external endpoint, a GPU backend refused on a CPU pool,
a redelivered request served once and a malformed one dead-lettered."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmops.bus.dead_letters import DeadLetterReader, Selection
from llmops.testing import caught_up
from llmops_schemas import topics
from llmops_schemas.events.deployments import ExternalEndpoint

from .worker_support import (
    chat,
    deployment_of,
    full_model,
    logs_of,
    openai_server,
    outbox_events,
    replicas_of,
    request_deployment,
    request_stop,
    send_raw,
    serving,
    upload,
    wait_for,
    wait_for_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAST = {"gateway_cache_seconds": 0.3, "drain_timeout_seconds": 5.0, "backend_start_timeout_seconds": 120.0}


class TestAFullModel:
    async def test_is_served_answers_with_usage_and_stops_after_draining(
        self, deployment_settings, deployment, tiny_model
    ):
        sha = await upload(deployment, tiny_model)
        async with serving(deployment_settings, **FAST):
            deployment_id = await request_deployment(deployment, model=full_model(sha))
            replica = await wait_for(deployment, deployment_id, lambda r: r.status == "ready")
            answer = await chat(replica.endpoint, replica.served_model)
            assert answer.usage.completion_tokens >= 1 and answer.usage.prompt_tokens >= 1
            assert (await deployment_of(deployment, deployment_id)).status == "ready"
            [ready] = await wait_for_event(deployment, deployment_id, "deployment.ready")
            assert ready["data"]["endpoint"] == replica.endpoint and replica.endpoint.endswith("/v1")
            assert ready["data"]["model_hash"] == sha == replica.model_hash
            assert ready["data"]["worker"] == "test-worker" and ready["data"]["attempt"] == 1

            await request_stop(deployment, deployment_id)
            stopped = await wait_for(deployment, deployment_id, lambda r: r.status == "stopped", within=60)
        assert stopped.endpoint is None and stopped.lease_until is None
        done = await deployment_of(deployment, deployment_id)
        assert done.status == "stopped" and done.stopped_at is not None
        types = [e["type"] for e in await outbox_events(deployment, deployment_id)]
        assert types == ["deployment.requested", "deployment.ready", "deployment.stop.requested", "deployment.stopped"]
        assert any(
            "Uvicorn running" in line or "Application startup" in line
            for line in await logs_of(deployment, deployment_id)
        )


class TestABackendThatCrashesAtEveryStart:
    async def test_fails_the_deployment_with_its_log_lines(self, deployment_settings, deployment, tiny_model, tmp_path):
        broken = tmp_path / "broken"
        broken.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (broken / name).write_bytes((tiny_model / name).read_bytes())
        (broken / "config.json").write_text("this is not JSON")
        sha = await upload(deployment, broken)
        async with serving(deployment_settings, max_restarts=1, **FAST):
            deployment_id = await request_deployment(deployment, model=full_model(sha))
            replica = await wait_for(deployment, deployment_id, lambda r: r.status == "failed", within=120)
        assert replica.restarts == 1 and replica.lease_until is None
        [failed] = await wait_for_event(deployment, deployment_id, "deployment.failed")
        assert "2 times in a row" in failed["data"]["reason"]
        assert failed["data"]["log_tail"] and "config.json" in failed["data"]["log_tail"]
        [restarted] = await wait_for_event(deployment, deployment_id, "deployment.restarted")
        assert restarted["data"]["restarts"] == 1 and restarted["data"]["exit_code"] not in (None, 0)
        done = await deployment_of(deployment, deployment_id)
        assert done.status == "failed" and done.last_error
        assert await logs_of(deployment, deployment_id)


class TestAnExternalEndpoint:
    async def test_is_ready_without_a_process_and_its_key_from_the_environment(
        self, deployment_settings, deployment, monkeypatch
    ):
        monkeypatch.setenv("TEST_EXTERNAL_KEY", "sk-test-123")
        with openai_server(key="sk-test-123") as (url, received):
            external = ExternalEndpoint(url=url, model="gpt-x", secret_ref="TEST_EXTERNAL_KEY")
            async with serving(deployment_settings, **FAST) as worker:
                deployment_id = await request_deployment(deployment, backend="external", external=external)
                replica = await wait_for(deployment, deployment_id, lambda r: r.status == "ready", within=60)
                assert all(runner._process is None for runner in worker.runners.values())
        assert replica.endpoint == url and replica.served_model == "gpt-x" and replica.model_hash is None
        assert {r["path"] for r in received} == {"/v1/models", "/v1/chat/completions"}
        assert all(r["authorization"] == "Bearer sk-test-123" for r in received)
        events = await outbox_events(deployment, deployment_id)
        assert "sk-test-123" not in str(events) and "sk-test-123" not in str(await logs_of(deployment, deployment_id))

    async def test_that_is_down_fails_after_its_restarts(self, deployment_settings, deployment):
        external = ExternalEndpoint(url="http://127.0.0.1:9/v1", model="gpt-x")
        async with serving(deployment_settings, max_restarts=0, backend_start_timeout_seconds=1.0):
            deployment_id = await request_deployment(deployment, backend="external", external=external)
            replica = await wait_for(deployment, deployment_id, lambda r: r.status == "failed", within=60)
        assert "health check" in replica.last_error


class TestAGpuBackendOnACpuPool:
    @pytest.mark.parametrize("backend", ["vllm", "tgi"])
    async def test_is_refused_with_deployment_failed(self, deployment_settings, deployment, tiny_model, backend):
        sha = await upload(deployment, tiny_model)
        async with serving(deployment_settings, **FAST):
            deployment_id = await request_deployment(deployment, backend=backend, model=full_model(sha))
            replica = await wait_for(deployment, deployment_id, lambda r: r.status == "failed", within=60)
        assert "needs a CUDA pool" in replica.last_error or "does not run" in replica.last_error
        [failed] = await wait_for_event(deployment, deployment_id, "deployment.failed")
        assert failed["data"]["reason"] == replica.last_error
        assert (await deployment_of(deployment, deployment_id)).status == "failed"


class TestARedeliveredRequest:
    async def test_is_served_once(self, deployment_settings, deployment):
        with openai_server() as (url, _):
            external = ExternalEndpoint(url=url, model="gpt-x")
            async with serving(deployment_settings, **FAST) as worker:
                deployment_id = await request_deployment(deployment, backend="external", external=external)
                await wait_for(deployment, deployment_id, lambda r: r.status == "ready", within=60)
                [requested] = [
                    e for e in await outbox_events(deployment, deployment_id) if e["type"] == "deployment.requested"
                ]
                body = await _payload_of(deployment, requested["id"])
                await send_raw(body, key=deployment_id.encode())
                await send_raw(body, key=deployment_id.encode())
                await caught_up(worker.group_id, [topics.DEPLOYMENTS])
                await worker._claim()  # a sweep after the redeliveries
                replicas = await replicas_of(deployment, deployment_id)
        assert [(r.status, r.attempt) for r in replicas] == [("ready", 1)]
        ready = [e for e in await outbox_events(deployment, deployment_id) if e["type"] == "deployment.ready"]
        assert len(ready) == 1


class TestAMalformedRequest:
    async def test_goes_to_the_dead_letter_topic(self, deployment_settings, deployment):
        marker = f"not-an-event-{time.monotonic_ns()}".encode()
        async with serving(deployment_settings, **FAST) as worker:
            await send_raw(marker, key=b"bad")
            deadline = time.monotonic() + 60
            while True:
                async with DeadLetterReader(client_id="tests-deployment-dlq") as reader:
                    ours = [
                        letter.reason
                        async for letter in reader.scan(Selection(consumer=worker.group_id))
                        if letter.value == marker
                    ]
                if ours:
                    break
                assert time.monotonic() < deadline, "the malformed request was not dead-lettered"
                await asyncio.sleep(0.5)
        assert ours == ["not_json"]


async def _payload_of(service, event_id: str) -> bytes:
    from sqlalchemy import select

    from llmops.bus import outbox

    async with service.runtime.db.sessions() as session:
        return (await session.execute(select(outbox.c.payload).where(outbox.c.event_id == event_id))).scalar_one()
