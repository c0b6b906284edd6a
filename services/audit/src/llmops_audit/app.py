"""Composition root of the audit service: HTTP API, log consumer and checkpoint timer in one process.

``llmops-audit serve`` applies the migrations (as the database owner) and serves; ``--no-http`` runs only the
consumer and the checkpoint timer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from llmops.bus import Consumer, make_broker
from llmops.db import Database, upgrade
from llmops.entrypoint import service_cli
from llmops.http import create_app
from llmops.logging import get_logger
from llmops.runtime import Runtime
from llmops_audit import service
from llmops_audit.api import router
from llmops_audit.chain import Signer
from llmops_audit.consumers import audit_consumer
from llmops_audit.dlq_api import router as dead_letters_router
from llmops_audit.settings import AuditSettings

log = get_logger(__name__)
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class AuditService:
    """The parts of a running audit service, for `serve`, the demo and the tests."""

    def __init__(self, settings: AuditSettings | None = None) -> None:
        self.settings = settings or AuditSettings()
        self.signer = Signer(self.settings.signing_key.get_secret_value())
        self.runtime = Runtime(
            self.settings, Database(self.settings.db_url), make_broker(self.settings.kafka, client_id="audit")
        )
        self.consumer: Consumer = audit_consumer(self.settings, self.runtime.db, self.runtime.broker)
        self.app: FastAPI = create_app(
            self.runtime, title="llmops audit", routers=[router, dead_letters_router], on_start=[self._started]
        )
        self.app.state.signer = self.signer

    async def _started(self, runtime: Runtime) -> None:
        runtime.spawn(self.checkpoint_loop(), name="audit-checkpoints")

    async def checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval_seconds)
            try:
                async with self.runtime.db.transaction() as session:
                    await service.sign_checkpoint(session, self.signer, source=self.runtime.source)
            except Exception:
                log.exception("audit.checkpoint.failed")

    async def start(self) -> None:
        """Start without HTTP (consumer, relay, checkpoint timer)."""
        await self.runtime.start()
        await self._started(self.runtime)

    async def stop(self) -> None:
        await self.runtime.stop()


def migrate(settings: AuditSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or AuditSettings()).migrations_db_url)


cli = service_cli("audit", settings=AuditSettings, build=AuditService, migrate=migrate, runs_without_http=True)
main = cli

if __name__ == "__main__":
    main()
