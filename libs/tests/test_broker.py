"""One way to build Kafka clients: producers, consumers, admin clients and the FastStream broker all get the same
connection options (client id, security protocol, TLS context, SASL credentials) from ``client_options``."""

from __future__ import annotations

import ssl

from pydantic import SecretStr

from llmops.bus import client_options, make_admin, make_broker, make_consumer, make_producer
from llmops.settings import KafkaSettings

SASL_SSL = KafkaSettings(
    bootstrap_servers="kafka.example:9093",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="llmops",
    sasl_password=SecretStr("a-password-from-the-vault"),
)


def test_the_options_carry_the_protocol_the_tls_context_and_the_credentials() -> None:
    options = client_options(SASL_SSL, client_id="c1")
    assert options["bootstrap_servers"] == "kafka.example:9093" and options["client_id"] == "c1"
    assert options["security_protocol"] == "SASL_SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "llmops",
        "a-password-from-the-vault",
    )


async def test_every_kind_of_client_is_built_with_them() -> None:
    for client in (
        make_producer(SASL_SSL, client_id="p"),
        make_consumer(SASL_SSL, client_id="c", group_id="g"),
        make_admin(SASL_SSL, client_id="a"),
    ):
        inner = getattr(client, "_client", None) or client.client
        assert inner._security_protocol == "SASL_SSL", type(client).__name__
        assert inner._sasl_mechanism == "SCRAM-SHA-512", type(client).__name__
        assert inner._sasl_plain_password == "a-password-from-the-vault", type(client).__name__
        assert isinstance(inner._ssl_context, ssl.SSLContext), type(client).__name__


async def test_the_broker_gets_the_same_security() -> None:
    security = make_broker(SASL_SSL, client_id="b").config.broker_config.builder.keywords  # what its clients get
    assert security["security_protocol"] == "SASL_SSL"
    assert security["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(security["ssl_context"], ssl.SSLContext)


def test_plaintext_adds_nothing() -> None:
    assert set(client_options(KafkaSettings(), client_id="x")) == {
        "bootstrap_servers",
        "client_id",
        "security_protocol",
    }
