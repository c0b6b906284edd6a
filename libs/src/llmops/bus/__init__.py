"""The event bus: FastStream's KafkaBroker with a transactional outbox, idempotent consumers and a dead-letter topic."""

from llmops.bus.broker import client_options, make_admin, make_broker, make_consumer, make_producer
from llmops.bus.consumer import Consumer, Delivery, PermanentError, Rows, RowsDecoder
from llmops.bus.dlq import DeadLetterPublisher
from llmops.bus.outbox import EventTooLarge, OutboxRelay, add_to_outbox, topic_of
from llmops.bus.tables import BUS_METADATA, inbox, outbox

__all__ = [
    "BUS_METADATA",
    "Consumer",
    "DeadLetterPublisher",
    "Delivery",
    "EventTooLarge",
    "OutboxRelay",
    "PermanentError",
    "Rows",
    "RowsDecoder",
    "add_to_outbox",
    "client_options",
    "inbox",
    "make_admin",
    "make_broker",
    "make_consumer",
    "make_producer",
    "outbox",
    "topic_of",
]
