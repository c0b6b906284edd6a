"""Reading the gateway's records back from Kafka: mark the topic's end before a test's traffic, then read what came
after it until the wanted request ids are all there."""

from __future__ import annotations

import time

import orjson
from aiokafka import TopicPartition

from llmops.bus.broker import make_admin, make_consumer
from llmops_schemas import topics


class RecordReader:
    def __init__(self, kafka=None, topic: str = topics.INFERENCE, *, from_start: bool = False) -> None:
        self.kafka, self.topic, self.from_start = kafka, topic, from_start

    async def __aenter__(self) -> RecordReader:
        self.consumer = make_consumer(self.kafka, client_id="gateway-test-reader", enable_auto_commit=False)
        await self.consumer.start()
        admin = make_admin(self.kafka, client_id="gateway-test-reader")
        await admin.start()
        try:
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        self.partitions = [TopicPartition(self.topic, p["partition"]) for p in described[0]["partitions"]]
        assert self.partitions, f"no partitions of {self.topic}"
        self.consumer.assign(self.partitions)
        if self.from_start:
            await self.consumer.seek_to_beginning(*self.partitions)
        else:
            ends = await self.consumer.end_offsets(self.partitions)
            for tp in self.partitions:
                self.consumer.seek(tp, ends[tp])
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def read(self, request_ids: set[str], *, within: float = 60) -> dict[str, list[dict]]:
        """The events (envelopes) of each of ``request_ids`` (their subjects), once all have arrived."""
        found: dict[str, list[dict]] = {}
        deadline = time.monotonic() + within
        while not request_ids <= found.keys():
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(request_ids - found.keys())} records never arrived")
            batches = await self.consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    event = orjson.loads(message.value)
                    if event["subject"] in request_ids:
                        found.setdefault(event["subject"], []).append(event)
        return found
