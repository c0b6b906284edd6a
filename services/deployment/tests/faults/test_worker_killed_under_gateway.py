"""The serving worker itself SIGKILLed under gateway traffic, as an out-of-memory kill would: a real worker process
serving a real ``transformers serve`` behind a route, clients calling it through the gateway. The backend dies with
its worker; the requests in flight and those that follow end with clean errors from the gateway (none hangs); a second
worker of the pool takes the replica over once the lease has expired, and traffic through the gateway resumes on it.
Every request the clients made has exactly one record on Kafka, completed or failed as the client saw it: nothing
lost, nothing doubled."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import openai
import pytest

from ..gateway.conftest import eventually
from ..gateway.kafka_records import RecordReader
from ..gateway.rows import Rows
from ..worker_support import full_model, request_deployment, serving, upload, wait_for
from .test_worker_killed import worker_env
from .traffic import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


async def test_a_serving_worker_killed_under_gateway_traffic(deployment_settings, deployment, tiny_model, gateway_url):
    sha = await upload(deployment, tiny_model)
    rows = await Rows.open(deployment_settings.db_url)
    command = [str(Path(sys.executable).parent / "llmops-deployment"), "worker", "--name", "doomed"]
    doomed = await asyncio.create_subprocess_exec(
        *command, env=worker_env(deployment_settings), stderr=asyncio.subprocess.DEVNULL
    )
    client = None
    try:
        deployment_id = await request_deployment(deployment, model=full_model(sha))
        first = await wait_for(deployment, deployment_id, lambda r: r.status == "ready", within=180)
        assert first.worker == "doomed"
        await rows.route("assistant", [(deployment_id, 1)])
        _, key = await rows.api_key()
        client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0, timeout=60)

        async with RecordReader() as records:
            traffic = Traffic(client, "assistant")
            await eventually(lambda: traffic.since(0).count("ok") >= 8, within=60, what="answers before the kill")
            killed_at = time.monotonic()
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
            await eventually(
                lambda: any(o != "ok" for o in traffic.since(killed_at)), within=30, what="a client to see the kill"
            )
            async with serving(deployment_settings, name="survivor", backend_start_timeout_seconds=120.0):
                taken = await wait_for(
                    deployment, deployment_id, lambda r: r.status == "ready" and r.worker == "survivor", within=240
                )
                resumed_at = time.monotonic()
                await eventually(
                    lambda: traffic.since(resumed_at).count("ok") >= 8, within=90, what="answers after the takeover"
                )
                await traffic.stop()

            during = traffic.since(killed_at)
            errors = {outcome for outcome in during if outcome != "ok"}
            assert errors <= {"status 502", "status 503"}, errors  # clean errors from the gateway, no transport ones
            assert max(seconds for _, _, seconds, _ in traffic.outcomes) < 30, "a request hung"
            assert taken.endpoint != first.endpoint and taken.attempt >= 2

            # one record per request, saying what the client saw
            seen = await records.read({request_id for request_id, *_ in traffic.outcomes}, within=120)
            doubled = {rid: len(events) for rid, events in seen.items() if len(events) != 1}
            assert not doubled, f"requests recorded more than once: {doubled}"
            for request_id, _, _, outcome in traffic.outcomes:
                (event,) = seen[request_id]
                if outcome == "ok":
                    assert event["type"] == "inference.completed", (request_id, event["type"])
                else:
                    assert event["type"] == "inference.failed", (request_id, event["type"])
                    assert outcome == f"status {event['data']['status']}", (outcome, event["data"])
    finally:
        if doomed.returncode is None:
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
        if client is not None:
            await client.close()
        await rows.close()
