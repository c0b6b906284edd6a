"""The audit service killed with SIGKILL while consuming, then restarted: nothing missing, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from llmops.db import Database
from llmops.testing import caught_up
from llmops_audit import service
from llmops_audit.chain import Signer
from llmops_audit.models import audit_log

from .conftest import head, probes, publish, wait_for_head

pytestmark = pytest.mark.integration


def start_service(settings) -> subprocess.Popen:
    env = os.environ | {
        "LLMOPS_AUDIT_DATABASE_URL": settings.database_url,
        "LLMOPS_AUDIT_TOPICS": json.dumps(settings.topics),
        "LLMOPS_AUDIT_CONSUMER_GROUP": settings.consumer_group,
        "LLMOPS_AUDIT_CONSUMER_MAX_RECORDS": "200",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "llmops_audit.app", "serve", "--no-http", "--no-migrations"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class TestCrash:
    async def test_a_service_killed_mid_stream_resumes_without_losing_or_repeating_events(self, audit_settings, topics):
        db = Database(audit_settings.db_url)
        events = probes(10_000)
        first = start_service(audit_settings)
        try:
            await publish(topics[0], events)
            await wait_for_head(db, 2_000)
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at = await head(db)
            assert killed_at < 10_000, "the service finished before it could be killed"
        finally:
            first.kill()

        second = start_service(audit_settings)
        try:
            await wait_for_head(db, 10_000)
            await caught_up(audit_settings.consumer_group, audit_settings.topics)  # redeliveries processed too
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)

        async with db.sessions() as session:
            total, distinct = (
                await session.execute(select(func.count(), func.count(audit_log.c.event_id.distinct())))
            ).one()
            recorded = {str(i) for i in (await session.execute(select(audit_log.c.event_id))).scalars()}
        assert (total, distinct) == (10_000, 10_000)
        assert recorded == {e.id for e in events}
        report = await service.verify(db, Signer(audit_settings.signing_key.get_secret_value()).public_key)
        assert report.ok, report.as_dict()
        await db.dispose()
