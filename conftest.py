"""Fixtures every test suite of the repository shares."""

import os

import pytest

# Tests run as local development (the Makefile says so too); unset, LLMOPS_ENV means production rules.
os.environ.setdefault("LLMOPS_ENV", "local")


@pytest.fixture(scope="session")
def infra_up():
    """Start (or find running) the local Kafka, Postgres and S3 store: integration tests talk to the real ones."""
    from llmops import infra

    infra.up()
