"""The gateway in front of a real ``transformers serve`` of the tiny model (CPU, offline), through the official
``openai`` client: chat, streamed with usage asked for (``transformers serve`` refuses ``stream_options`` and
``user``: the gateway strips them, and counts tokens with the model's tokenizer from the object store when the
backend sends no usage), and a completion."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from llmops.artifacts import put_directory
from llmops.storage import ObjectStore

from .conftest import eventually, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
async def transformers_serve(tiny_model: Path):
    port = free_port()
    binary = Path(sys.executable).parent / "transformers"
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "serve",
        str(tiny_model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def healthy() -> bool:
        assert process.returncode is None, "transformers serve exited"
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{port}/health", timeout=1)).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(healthy, within=120, what="transformers serve to answer its health check")
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    await asyncio.wait_for(process.wait(), 20)


async def test_the_official_client_chats_and_completes_through_the_gateway(
    transformers_serve, tiny_model, gateway_url, rows, deployment_settings
):
    manifest = await put_directory(ObjectStore(deployment_settings.s3), tiny_model)
    model = {"name": "tiny", "manifest_sha256": manifest.sha256}
    deployment = await rows.deployment(transformers_serve, served_model=str(tiny_model), model=model)
    await rows.route("tiny", [(deployment, 1)])
    _, key = await rows.api_key()
    client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Hello there"}]

    answer = await client.chat.completions.create(model="tiny", messages=messages, max_tokens=5, user="u-1")
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0

    stream = await client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=5, stream=True, stream_options={"include_usage": True}, user="u-1"
    )
    chunks = [chunk async for chunk in stream]
    assert [c.usage for c in chunks if c.usage][-1].completion_tokens > 0

    completion = await client.completions.create(model="tiny", prompt="Once upon", max_tokens=5)
    assert completion.usage.total_tokens > 0
    await client.close()
