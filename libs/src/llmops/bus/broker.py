"""The Kafka broker (FastStream) every service and worker uses, configured from :class:`KafkaSettings`."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from llmops.settings import KafkaSettings


def make_broker(settings: KafkaSettings | None = None, *, client_id: str = "llmops", **options) -> KafkaBroker:
    """A KafkaBroker whose producer is idempotent (which forces acks=all), so retries never duplicate."""
    settings = settings or KafkaSettings()
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=options.pop("linger_ms", 5),
        security=_security(settings),
        # FastStream logs every message at INFO; per-message lines belong at DEBUG on a busy bus.
        log_level=options.pop("log_level", logging.DEBUG),
        logger=options.pop("logger", logging.getLogger("faststream.llmops")),
        **options,
    )


def _security(settings: KafkaSettings):
    """FastStream's form of :func:`client_options`' security: the same protocol, TLS context and SASL credentials."""
    options = client_options(settings, client_id="")
    if options["security_protocol"] == "PLAINTEXT":
        return None
    ssl_context = options.get("ssl_context")
    mechanism = options.get("sasl_mechanism")
    if mechanism is None:
        return BaseSecurity(ssl_context=ssl_context, use_ssl=ssl_context is not None)
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}.get(mechanism)
    if kind is None:
        raise ValueError(f"unsupported LLMOPS_KAFKA_SASL_MECHANISM {mechanism!r}")
    return kind(
        username=options.get("sasl_plain_username") or "",
        password=options.get("sasl_plain_password") or "",
        ssl_context=ssl_context,
        use_ssl=ssl_context is not None,
    )


def client_options(settings: KafkaSettings | None = None, *, client_id: str) -> dict:
    """The connection options of every aiokafka client (producer, consumer, admin): bootstrap servers, client id,
    security protocol with its TLS context and SASL credentials. The one place they are built, so no client
    connects without the SASL/TLS settings the platform was given."""
    settings = settings or KafkaSettings()
    options: dict = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.endswith("SSL"):
        options["ssl_context"] = create_ssl_context()
    if settings.sasl_mechanism:
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value() if settings.sasl_password else None,
        }
    return options


def make_producer(settings: KafkaSettings | None = None, *, client_id: str = "llmops-outbox-relay") -> AIOKafkaProducer:
    """A bare idempotent aiokafka producer (acks=all) for the outbox relay, whose hot loop needs no framework."""
    producer = AIOKafkaProducer(
        **client_options(settings, client_id=client_id),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # The relay sends whole outbox batches at once: larger record batches mean fewer requests per batch.
        max_batch_size=256 * 1024,
    )
    pace_metadata_updates(producer)
    return producer


def pace_metadata_updates(producer: AIOKafkaProducer, backoff_seconds: float = 0.25) -> None:
    """Keep ``producer`` from spinning while the broker is away.

    aiokafka 0.14's sender asks for a metadata update whenever a batch waits for a partition whose leader is unknown,
    and waits on that update; with the broker down the update fails at once (connection refused), so the loop runs
    again at once: ``make chaos`` saw a gateway log 84,000 "Unable connect to node" lines and burn its CPU during a
    5 s broker restart (the same report upstream: aio-libs/aiokafka#496). Here an update asked for within
    ``backoff_seconds`` of a failed one first waits out the rest of that time."""
    client = producer.client
    update = client.force_metadata_update
    failed_at = -math.inf
    pending: asyncio.Task | None = None

    async def paced() -> bool:
        nonlocal failed_at
        wait = failed_at + backoff_seconds - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        updated = await update()
        if not updated:
            failed_at = time.monotonic()
        return updated

    def force() -> asyncio.Future:
        # One update at a time, shared by whoever asks meanwhile (as the original shares its future); a task, which
        # the sender can put in its ``asyncio.wait``, as it does the original's shielded future.
        nonlocal pending
        if pending is None or pending.done():
            pending = asyncio.ensure_future(paced())
        return asyncio.shield(pending)

    client.force_metadata_update = force


def make_consumer(settings: KafkaSettings | None = None, *, client_id: str, **options) -> AIOKafkaConsumer:
    """A bare aiokafka consumer with the platform's connection options; ``options`` are the consumer's own
    (group id, commit and offset policy, timeouts)."""
    return AIOKafkaConsumer(**client_options(settings, client_id=client_id), **options)


def make_admin(
    settings: KafkaSettings | None = None, *, client_id: str = "llmops-admin", **options
) -> AIOKafkaAdminClient:
    """An aiokafka admin client with the platform's connection options."""
    return AIOKafkaAdminClient(**client_options(settings, client_id=client_id), **options)
