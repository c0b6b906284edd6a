"""Composition root of the training service: HTTP API (base models, jobs, model registry) and the projections
consumer in one process; ``llmops-training worker`` runs a training worker of one pool.

``llmops-training serve`` applies the migrations (as the database owner) and serves the API.
"""

# No `from __future__ import annotations` here: Typer reads the worker command's annotations.

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from fastapi import FastAPI

from llmops.bus import Consumer, make_broker
from llmops.db import Database, upgrade
from llmops.entrypoint import service_cli
from llmops.http import create_app
from llmops.logging import configure_logging
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops.tracing import configure_tracing
from llmops_training.api import TAR_TYPES, router
from llmops_training.consumers import projections_consumer
from llmops_training.settings import TrainingSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class TrainingService:
    """The parts of a running training service, for `serve`, the demo and the tests."""

    def __init__(self, settings: TrainingSettings | None = None) -> None:
        self.settings = settings or TrainingSettings()
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="training"),
            store=ObjectStore(self.settings.s3),
        )
        self.consumer: Consumer = projections_consumer(self.settings, self.runtime.db, self.runtime.broker)
        self.app: FastAPI = create_app(
            self.runtime, title="llmops training", routers=[router], upload_media_types=TAR_TYPES
        )
        self.app.state.settings = self.settings

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def migrate(settings: TrainingSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or TrainingSettings()).migrations_db_url)


cli = service_cli("training", settings=TrainingSettings, build=TrainingService, migrate=migrate, runs_without_http=True)


@cli.command()
def worker(
    pool: Annotated[str | None, typer.Option(help="the pool whose jobs to take (default LLMOPS_TRAINING_POOL)")] = None,
    name: Annotated[str | None, typer.Option(help="this worker's name (default host-pid-random)")] = None,
) -> None:
    """Run a training worker: takes the jobs of its pool from Kafka, trains, checkpoints, registers models."""
    from llmops_training.worker import TrainingWorker

    configure_logging()
    configure_tracing("training-worker")
    settings = TrainingSettings()
    if pool is not None:
        settings = settings.model_copy(update={"pool": pool})
    training_worker = TrainingWorker(settings, name=name)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, training_worker.stop)
        await training_worker.run()

    asyncio.run(run())


main = cli

if __name__ == "__main__":
    main()
