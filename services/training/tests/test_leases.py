"""A worker's lease on a job, on real Postgres: renewals that fail for a moment are retried and the lease is kept; a
lease another worker took, or one no renewal could keep before it expired, is lost."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from llmops.db import Database
from llmops_training import repository
from llmops_training.leases import JobControl, Lease

from .conftest import claimed_job

pytestmark = pytest.mark.integration


class Blips:
    """The training database, unreachable for the next ``failures`` transactions (a Postgres restart, a network
    blip: what the shared test database cannot be made to do)."""

    def __init__(self, db: Database, failures: int) -> None:
        self.db, self.failures, self.calls = db, failures, 0

    @asynccontextmanager
    async def transaction(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("connection to the training database refused")
        async with self.db.transaction() as session:
            yield session


@pytest.fixture
async def db(training_settings):
    database = Database(training_settings.db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def claimed(db) -> tuple[str, float]:
    """A job claimed by worker w1 under a 3-second lease; with the moment its claim began."""
    since = time.monotonic()
    async with db.transaction() as session:
        job_id, _ = await claimed_job(session, "w1", 3)
    return job_id, since


async def lease_until(db, job_id: str):
    async with db.sessions() as session:
        return (await session.execute(text("SELECT lease_until FROM jobs WHERE id = :id"), {"id": job_id})).scalar()


async def until(condition, *, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


class TestARenewalThatFails:
    async def test_is_retried_and_the_lease_is_kept(self, db, claimed):
        job_id, since = claimed
        first = await lease_until(db, job_id)
        blips, control = Blips(db, failures=2), JobControl()
        holding = asyncio.create_task(Lease(blips, job_id, "w1", 3, control, since=since).hold())
        try:

            async def renewed() -> bool:
                assert not holding.done(), holding  # a failed renewal must not end the holding
                return blips.calls > blips.failures and await lease_until(db, job_id) > first

            await until(renewed)
            assert not control.lost.is_set()
        finally:
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)

    async def test_past_the_lease_s_expiry_loses_the_job(self, db, claimed):
        job_id, since = claimed
        blips, control = Blips(db, failures=10**6), JobControl()
        holding = asyncio.create_task(Lease(blips, job_id, "w1", 3, control, since=since).hold())
        await asyncio.wait_for(holding, 30)
        assert control.lost.is_set() and blips.calls > 1  # retried before giving up


class TestALeaseAnotherWorkerHolds:
    async def test_is_lost(self, db, claimed):
        job_id, since = claimed
        async with db.transaction() as session:
            await repository.update_job(session, job_id, worker="w2")
        control = JobControl()
        await asyncio.wait_for(Lease(db, job_id, "w1", 3, control, since=since).hold(), 30)
        assert control.lost.is_set() and not control.cancel.is_set()

    async def test_a_cancellation_is_passed_on_while_it_is_held(self, db, claimed):
        job_id, since = claimed
        async with db.transaction() as session:
            await repository.update_job(session, job_id, cancel_requested_by="eve")
        control = JobControl()
        holding = asyncio.create_task(Lease(db, job_id, "w1", 3, control, since=since).hold())
        try:
            await until(lambda: asyncio.sleep(0, control.cancel.is_set()))
            assert control.cancelled_by == "eve" and not control.lost.is_set()
        finally:
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
