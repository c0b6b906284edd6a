"""Fixtures every test suite of the repository shares."""

import pytest


@pytest.fixture(scope="session")
def infra_up():
    """Start (or find running) the local Kafka, Postgres and S3 store: integration tests talk to the real ones."""
    from llmops import infra

    infra.up()
