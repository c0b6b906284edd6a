"""What the worker's tests share beside the fixtures: seeding the projections with a real model in the object store,
suites and runs through the service layer, and waiting on a run's state."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from llmops.artifacts import put_directory
from llmops.runtime import Actor
from llmops_evaluation import repository, suites
from llmops_evaluation import service as use_cases
from llmops_evaluation.spec import RunIn, SuiteIn

ENGINEER = Actor(subject="eve")
TERMINAL = ("completed", "failed")


def instruction_rows(count: int = 12) -> list[dict]:
    answers = ["blue", "green", "red", "yellow"]
    return [{"prompt": f"Question {i}: what colour is item {i}?", "completion": answers[i % 4]} for i in range(count)]


async def seed_dataset(service, rows: list[dict], *, name: str = "qa", fmt: str = "instruction") -> dict:
    """A dataset version (every row in the test split) as the datasets service would have published it."""
    body = b"".join(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n" for row in rows)
    stored = await service.runtime.store.put_bytes(body, content_type="application/x-ndjson")
    values = {
        "version_id": str(uuid.uuid4()),
        "dataset_id": str(uuid.uuid4()),
        "project": "p1",
        "name": name,
        "version": 1,
        "format": fmt,
        "uri": stored.uri,
        "sha256": stored.sha256,
        "row_count": len(rows),
        "splits": {"train": 0.0, "validation": 0.0, "test": 1.0, "seed": 42, "counts": {"test": len(rows)}},
    }
    async with service.runtime.db.transaction() as session:
        await use_cases.project_dataset_version(session, values)
    return values


async def seed_base_model(service, model_dir: Path, name: str = "tiny") -> dict:
    manifest = await put_directory(service.runtime.store, model_dir)
    values = {
        "base_model_id": str(uuid.uuid4()),
        "project": "p1",
        "name": name,
        "source": "upload",
        "manifest_sha256": manifest.sha256,
    }
    async with service.runtime.db.transaction() as session:
        await repository.insert_base_model(session, values)
    return values


async def seed_model_version(service, base: dict, adapter_dir: Path, name: str = "tiny-lora") -> dict:
    manifest = await put_directory(service.runtime.store, adapter_dir)
    values = {
        "model_version_id": str(uuid.uuid4()),
        "project": "p1",
        "name": name,
        "version": 1,
        "kind": "adapter",
        "manifest_sha256": manifest.sha256,
        "base_model": {k: base.get(k) for k in ("base_model_id", "name", "source", "manifest_sha256")},
        "registered_at": datetime.now(UTC),
    }
    async with service.runtime.db.transaction() as session:
        await repository.insert_model_version(session, values)
    return values


async def create_suite(service, *, name: str = "qa-suite", dataset: str = "qa", **fields: Any) -> Any:
    body = SuiteIn.model_validate(
        dict(
            name=name,
            dataset={"name": dataset, "version": 1, "split": "test"},
            generation=fields.pop("generation", {"max_new_tokens": 8}),
            scorers=fields.pop("scorers", [{"type": "bleu"}, {"type": "rouge"}, {"type": "exact_match"}]),
            **fields,
        )
    )
    async with service.runtime.db.transaction() as session:
        return await suites.create_suite_version(
            session, service.runtime, service.settings, project="p1", body=body.model_dump(), actor=ENGINEER
        )


async def request_run(service, **target: Any) -> str:
    body = RunIn.model_validate({"suite": target.pop("suite", "qa-suite"), **target})
    async with service.runtime.db.transaction() as session:
        run = await use_cases.request_run(
            session, service.runtime, service.settings, project="p1", body=body.model_dump(), actor=ENGINEER
        )
    return run.id


async def run_of(service, run_id: str) -> Any:
    async with service.runtime.db.sessions() as session:
        return await repository.get_run(session, run_id)


async def wait_for_run(service, run_id: str, predicate, *, within: float = 180) -> Any:
    deadline = time.monotonic() + within
    while True:
        run = await run_of(service, run_id)
        if predicate(run):
            return run
        assert time.monotonic() < deadline, f"the run never got there: {run}"
        await asyncio.sleep(0.2)


async def finished(service, run_id: str, *, within: float = 180) -> Any:
    return await wait_for_run(service, run_id, lambda run: run.status in TERMINAL, within=within)


async def examples_of(service, run_id: str) -> list[Any]:
    async with service.runtime.db.sessions() as session:
        return await repository.run_examples_of(session, run_id)


async def outbox_events(service, subject: str | None = None) -> list[dict]:
    """Every event the service (or a worker sharing its database) has written to its outbox, in order."""
    from sqlalchemy import select

    from llmops.bus import outbox

    async with service.runtime.db.sessions() as session:
        rows = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        events = [orjson.loads(p) for p in rows]
    return [e for e in events if subject is None or e["subject"] == subject]
