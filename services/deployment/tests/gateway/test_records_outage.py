"""Kafka stopped during traffic (a private Kafka of the test's own, ``llmops.infra.private``): requests still succeed
fast, records wait in the gateway's buffer, and once Kafka is back every record is there. And a producer stuck for
good (as aiokafka's was once seen after a broker restart) is replaced, its records sent by the new one, once each."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError

from llmops.infra.private import private_kafka
from llmops.settings import KafkaSettings
from llmops_deployment.gateway import records
from llmops_schemas import new_event, topics
from llmops_schemas.events import InferenceCompleted

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
            # A request that waited on the stopped broker would wait out the producer's request timeout (15 s);
            # a third of it leaves room for a loaded machine.
            assert slowest < records.REQUEST_TIMEOUT_MS / 1000 / 3, slowest
            assert gateway.state.gateway.records.buffered > 0
            await asyncio.to_thread(part.start)
            after, _ = await traffic(http, 20)
        async with RecordReader(settings, from_start=True) as reader:
            found = await reader.read(set(before + during + after), within=90)
        assert len(found) == 150
        assert gateway.state.gateway.records.dropped == 0


class StuckProducer:
    """A producer in the state make chaos once saw after a broker restart: every send fails ("Unable connect to node
    with id 1") for good while the broker is up, and stopping it never returns."""

    def __init__(self) -> None:
        self.sends = 0

    async def send(self, *args, **kwargs):
        self.sends += 1
        raise KafkaConnectionError("Unable connect to node with id 1")

    async def stop(self) -> None:
        await asyncio.Event().wait()


class TestAStuckProducer:
    async def test_is_replaced_after_its_sends_fail_for_a_while_and_every_record_arrives_once(self, monkeypatch):
        monkeypatch.setattr(records, "RECONNECT_AFTER_SECONDS", 1.0)
        stuck, connect, connects = StuckProducer(), records.Records._connect, []

        async def first_stuck(self):
            connects.append(time.monotonic())
            return stuck if len(connects) == 1 else await connect(self)

        monkeypatch.setattr(records.Records, "_connect", first_stuck)
        sink = records.Records(KafkaSettings(), capacity=1000, text_mode="hashed")
        ids = [f"stuck-{uuid.uuid4().hex}" for _ in range(50)]
        async with RecordReader() as reader:
            sink.start()
            for request_id in ids:
                sink.submit(new_event(completed(request_id), subject=request_id, source=records.SOURCE, project="p"))
            found = await reader.read(set(ids), within=60)
            await sink.stop()
        assert stuck.sends > 0 and len(connects) == 2, "the stuck producer was tried, then replaced once"
        assert {request_id: len(events) for request_id, events in found.items()} == dict.fromkeys(ids, 1)
        assert sink.published == 50 and sink.buffered == 0 and sink.dropped == 0


def completed(request_id: str) -> InferenceCompleted:
    return InferenceCompleted(
        request_id=request_id,
        project="p",
        route="r",
        api="chat.completions",
        latency_ms=1.0,
        tokens_in=1,
        tokens_out=1,
        cost=0.0,
    )
