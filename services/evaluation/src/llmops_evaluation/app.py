"""Composition root of the evaluation service: HTTP API (suites, runs, comparisons, gates, feedback) and its
consumers in one process; ``llmops-evaluation worker --pool cpu|gpu`` runs an evaluation worker of one pool.

``llmops-evaluation serve`` applies the migrations (as the database owner) and serves the API.
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
from llmops_evaluation import api, feedback_api
from llmops_evaluation.consumers import feedback_consumer, projections_consumer
from llmops_evaluation.settings import EvaluationSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class EvaluationService:
    """The parts of a running evaluation service, for `serve`, the demo and the tests."""

    def __init__(self, settings: EvaluationSettings | None = None) -> None:
        self.settings = settings or EvaluationSettings()
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="evaluation"),
            store=ObjectStore(self.settings.s3),
        )
        self.consumer: Consumer = projections_consumer(self.settings, self.runtime)
        self.feedback_consumer = feedback_consumer(self.settings, self.runtime)
        self.app: FastAPI = create_app(
            self.runtime, title="llmops evaluation", routers=[api.router, feedback_api.router]
        )
        self.app.state.settings = self.settings

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def migrate(settings: EvaluationSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or EvaluationSettings()).migrations_db_url)


cli = service_cli(
    "evaluation", settings=EvaluationSettings, build=EvaluationService, migrate=migrate, runs_without_http=True
)


@cli.command()
def worker(
    pool: Annotated[
        str | None, typer.Option(help="the pool whose runs to take (default LLMOPS_EVALUATION_POOL)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="this worker's name (default host-pid-random)")] = None,
) -> None:
    """Run an evaluation worker: takes the runs of its pool from Kafka, generates outputs, scores them."""
    from llmops_evaluation.worker import EvaluationWorker

    configure_logging()
    configure_tracing("evaluation-worker")
    settings = EvaluationSettings()
    if pool is not None:
        settings = settings.model_copy(update={"pool": pool})
    evaluation_worker = EvaluationWorker(settings, name=name)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, evaluation_worker.stop)
        await evaluation_worker.run()

    asyncio.run(run())


main = cli

if __name__ == "__main__":
    main()
