"""The dead-letter topic: what a consumer cannot process, with the original bytes and the reason in headers."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import Counter

from llmops.logging import get_logger
from llmops_schemas.topics import DEAD_LETTER

log = get_logger(__name__)

DEAD_LETTERED = Counter("llmops_dead_lettered_events", "Records sent to the dead-letter topic", ["consumer", "reason"])

#: Header names on a dead-lettered record.
REASON = "x-dlq-reason"
ERROR = "x-dlq-error"
CONSUMER = "x-dlq-consumer"
ORIGINAL_TOPIC = "x-dlq-topic"
ORIGINAL_PARTITION = "x-dlq-partition"
ORIGINAL_OFFSET = "x-dlq-offset"
ATTEMPTS = "x-dlq-attempts"
FAILED_AT = "x-dlq-failed-at"
ORIGINAL_HEADER_PREFIX = "x-dlq-original-"


class DeadLetterPublisher:
    """Publishes a record's original key and value to the dead-letter topic and waits for Kafka's ack."""

    def __init__(self, broker: KafkaBroker, *, consumer: str, topic: str = DEAD_LETTER) -> None:
        self.broker = broker
        self.consumer = consumer
        self.topic = topic

    async def publish(self, record: ConsumerRecord, *, reason: str, error: str, attempts: int) -> None:
        headers = {
            f"{ORIGINAL_HEADER_PREFIX}{name}": value.decode(errors="replace") for name, value in record.headers or ()
        }
        headers |= {
            REASON: reason,
            ERROR: error[:4000],
            CONSUMER: self.consumer,
            ORIGINAL_TOPIC: record.topic,
            ORIGINAL_PARTITION: str(record.partition),
            ORIGINAL_OFFSET: str(record.offset),
            ATTEMPTS: str(attempts),
            FAILED_AT: datetime.now(UTC).isoformat(),
        }
        await self.broker.publish(record.value or b"", topic=self.topic, key=record.key, headers=headers)
        DEAD_LETTERED.labels(self.consumer, reason).inc()
        log.warning(
            "bus.dead_lettered",
            consumer=self.consumer,
            reason=reason,
            error=error[:500],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
