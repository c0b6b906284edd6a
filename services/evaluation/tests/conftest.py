"""Fixtures of the evaluation service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role; a tiny model built once per session. Projections (dataset
versions, base models, model versions) are seeded through the repository, as the projection consumer writes them."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmops import testing
from llmops.artifacts import put_directory
from llmops.runtime import Actor
from llmops.testing import service_database
from llmops_evaluation import repository
from llmops_evaluation import service as use_cases
from llmops_evaluation.app import EvaluationService, migrate
from llmops_evaluation.settings import EvaluationSettings
from llmops_evaluation.spec import RunIn, SuiteIn

#: The tests' tokens: one role each, in project p1.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")
ENGINEER = Actor(subject="eve")
TERMINAL = ("completed", "failed")


@pytest.fixture
async def evaluation_settings(infra_up, tmp_path):
    async with service_database(
        "evaluation",
        EvaluationSettings,
        outbox_poll_interval=0.05,
        progress_interval_seconds=0.2,
        lease_seconds=3,
        session_timeout_ms=6000,
        bootstrap_resamples=200,
        generation_batch_size=8,
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        consumer_group=f"evaluation-test-{uuid.uuid4().hex[:12]}",
        consumer_offset_reset="latest",
        # Workers of this test only: another test run or the demo sharing Kafka must not take its runs.
        worker_group=f"evaluation-worker-test-{uuid.uuid4().hex[:12]}",
        worker_offset_reset="latest",  # past other runs' requests; fixtures wait until the worker is ready
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def evaluation(evaluation_settings):
    service = EvaluationService(evaluation_settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama with its own tokenizer, built offline (the same for every test)."""
    from llmops.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model, tmp_path_factory) -> Path:
    """A LoRA adapter (randomly initialised, non-zero) on the tiny model, saved with the tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = get_peft_model(model, config)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    adapter.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


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
    body = SuiteIn(
        name=name,
        dataset={"name": dataset, "version": 1, "split": "test"},
        generation=fields.pop("generation", {"max_new_tokens": 8}),
        scorers=fields.pop("scorers", [{"type": "bleu"}, {"type": "rouge"}, {"type": "exact_match"}]),
        **fields,
    )
    async with service.runtime.db.transaction() as session:
        return await use_cases.create_suite_version(
            session, service.runtime, service.settings, project="p1", body=body, actor=ENGINEER
        )


async def request_run(service, **target: Any) -> str:
    body = RunIn(suite=target.pop("suite", "qa-suite"), **target)
    async with service.runtime.db.transaction() as session:
        run = await use_cases.request_run(
            session, service.runtime, service.settings, project="p1", body=body, actor=ENGINEER
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
