"""Kafka stopped during traffic (a private Kafka of the test's own, ``llmops.infra.private``): requests still succeed
fast, records wait in the gateway's buffer, and once Kafka is back every record is there."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from llmops.infra.private import private_kafka
from llmops_schemas import topics

from .kafka_records import RecordReader

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
async def kafka(tmp_path):
    part, settings = private_kafka(tmp_path / "kafka", [topics.INFERENCE, topics.SECURITY])
    await asyncio.to_thread(part.start)
    yield part, settings
    await asyncio.to_thread(part.close)


@pytest.fixture
def gateway_overrides(kafka):
    return {"kafka": kafka[1]}


async def traffic(http: httpx.AsyncClient, n: int) -> tuple[list[str], float]:
    """``n`` requests one after another: their request ids and the slowest one's seconds."""
    ids, slowest = [], 0.0
    for _ in range(n):
        started = time.monotonic()
        response = await http.post(
            "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        )
        slowest = max(slowest, time.monotonic() - started)
        assert response.status_code == 200
        ids.append(response.headers["x-request-id"])
    return ids, slowest


class TestKafkaOutage:
    async def test_requests_stay_fast_and_every_record_arrives_after_kafka_returns(
        self, kafka, gateway, rows, backends
    ):
        part, settings = kafka
        backend = backends("a")
        await rows.route("chat", [(await rows.deployment(backend.url), 1)])
        _, key = await rows.api_key()
        async with httpx.AsyncClient(
            base_url=gateway.state.url, headers={"authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            before, _ = await traffic(http, 30)
            await asyncio.to_thread(part.stop)
            during, slowest = await traffic(http, 100)
            assert slowest < 1.0
            assert gateway.state.gateway.records.buffered > 0
            await asyncio.to_thread(part.start)
            after, _ = await traffic(http, 20)
        async with RecordReader(settings, from_start=True) as reader:
            found = await reader.read(set(before + during + after), within=90)
        assert len(found) == 150
        assert gateway.state.gateway.records.dropped == 0
