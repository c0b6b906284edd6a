"""Composition root of the prompts service: its HTTP API (the service consumes no events yet).

``llmops-prompts serve`` applies the migrations (as the database owner) and serves the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from llmops.bus import make_broker
from llmops.db import Database, upgrade
from llmops.entrypoint import service_cli
from llmops.http import create_app
from llmops.runtime import Runtime
from llmops_prompts.api import router
from llmops_prompts.service import Limits
from llmops_prompts.settings import PromptsSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class PromptsService:
    """The parts of a running prompts service, for `serve`, the demo and the tests."""

    def __init__(self, settings: PromptsSettings | None = None) -> None:
        self.settings = settings or PromptsSettings()
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="prompts"),
        )
        self.app: FastAPI = create_app(self.runtime, title="llmops prompts", routers=[router])
        self.app.state.settings = self.settings
        self.app.state.limits = Limits(self.settings.render_seconds, self.settings.test_run_seconds)

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def migrate(settings: PromptsSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or PromptsSettings()).migrations_db_url)


cli = service_cli("prompts", settings=PromptsSettings, build=PromptsService, migrate=migrate)
main = cli

if __name__ == "__main__":
    main()
