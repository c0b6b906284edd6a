"""The Kafka broker (FastStream) every service and worker uses, configured from :class:`KafkaSettings`."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.security import SASLPlaintext, SASLScram256, SASLScram512

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
    if settings.security_protocol == "PLAINTEXT":
        return None
    if settings.sasl_mechanism is None:
        from faststream.security import BaseSecurity

        return BaseSecurity(use_ssl=settings.security_protocol.endswith("SSL"))
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}.get(
        settings.sasl_mechanism
    )
    if kind is None:
        raise ValueError(f"unsupported LLMOPS_KAFKA_SASL_MECHANISM {settings.sasl_mechanism!r}")
    return kind(
        username=settings.sasl_username or "",
        password=password,
        use_ssl=settings.security_protocol == "SASL_SSL",
    )


def make_producer(settings: KafkaSettings | None = None, *, client_id: str = "llmops-outbox-relay") -> AIOKafkaProducer:
    """A bare idempotent aiokafka producer (acks=all) for the outbox relay, whose hot loop needs no framework."""
    settings = settings or KafkaSettings()
    options: dict = {"security_protocol": settings.security_protocol}
    if settings.security_protocol.endswith("SSL"):
        options["ssl_context"] = create_ssl_context()
    if settings.sasl_mechanism:
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value() if settings.sasl_password else None,
        }
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # The relay sends whole outbox batches at once: larger record batches mean fewer requests per batch.
        max_batch_size=256 * 1024,
        **options,
    )
