"""The Kafka broker (FastStream) every service and worker uses, configured from :class:`KafkaSettings`."""

from __future__ import annotations

import logging

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
    return AIOKafkaProducer(
        **client_options(settings, client_id=client_id),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # The relay sends whole outbox batches at once: larger record batches mean fewer requests per batch.
        max_batch_size=256 * 1024,
    )


def make_consumer(settings: KafkaSettings | None = None, *, client_id: str, **options) -> AIOKafkaConsumer:
    """A bare aiokafka consumer with the platform's connection options; ``options`` are the consumer's own
    (group id, commit and offset policy, timeouts)."""
    return AIOKafkaConsumer(**client_options(settings, client_id=client_id), **options)


def make_admin(
    settings: KafkaSettings | None = None, *, client_id: str = "llmops-admin", **options
) -> AIOKafkaAdminClient:
    """An aiokafka admin client with the platform's connection options."""
    return AIOKafkaAdminClient(**client_options(settings, client_id=client_id), **options)
