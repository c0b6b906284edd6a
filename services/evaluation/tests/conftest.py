"""Fixtures of the evaluation service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role; projections seeded as the consumers would write them."""

from __future__ import annotations

import asyncio
import random
import uuid
from functools import partial
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from llmops import testing
from llmops.auth import Role
from llmops.bus import outbox
from llmops.scoring.stats import bootstrap_ci
from llmops.testing import service_database
from llmops_evaluation import gating, repository, service
from llmops_evaluation.app import EvaluationService, migrate
from llmops_evaluation.settings import EvaluationSettings
from llmops_evaluation.triggers import target_of_model_version


@pytest.fixture
def offset_reset() -> str:
    """Tests start the consumers past the shared topics' history (a consumer's own tests override this)."""
    return "latest"


@pytest.fixture
async def evaluation_settings(infra_up, tmp_path, offset_reset):
    async with service_database(
        "evaluation",
        EvaluationSettings,
        outbox_poll_interval=0.05,
        progress_interval_seconds=0.2,
        lease_seconds=3,
        session_timeout_ms=6000,
        bootstrap_resamples=1000,
        generation_batch_size=8,
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        consumer_group=f"evaluation-test-{uuid.uuid4().hex[:12]}",
        consumer_offset_reset=offset_reset,
        # Workers of this test only: another test run or the demo sharing Kafka must not take its runs.
        worker_group=f"evaluation-worker-test-{uuid.uuid4().hex[:12]}",
        worker_offset_reset="latest",
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def evaluation(evaluation_settings):
    running = EvaluationService(evaluation_settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(evaluation):
    transport = httpx.ASGITransport(app=evaluation.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as http:
        yield http


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


#: The tests' tokens: one role each, in project p1.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")
ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
ADMIN = bearer(Role.ADMIN, subject="ada")
VIEWER = bearer(Role.VIEWER, subject="vic")
STEWARD = bearer(Role.DATA_STEWARD, subject="sam")
AUDITOR = bearer(Role.AUDITOR, subject="aud")


def qa_rows(count: int = 24) -> list[dict]:
    answers = ["blue", "green", "red", "yellow"]
    return [
        {"prompt": f"Question {i}: what colour is item {i % 4}?", "completion": f" The colour is {answers[i % 4]}."}
        for i in range(count)
    ]


async def seed_dataset(
    running: EvaluationService,
    *,
    project: str = "p1",
    name: str = "qa",
    version: int = 1,
    fmt: str = "instruction",
    rows: list[dict] | None = None,
    split: str = "test",
    deprecated: bool = False,
) -> dict:
    """A dataset version as the datasets service would have published it, every row in ``split``: its canonical
    JSONL in the object store and the row the projection consumer writes."""
    from llmops_schemas.envelope import utcnow

    rows = qa_rows() if rows is None else rows
    body = b"".join(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n" for row in rows)
    stored = await running.runtime.store.put_bytes(body, content_type="application/x-ndjson")
    fractions = {"train": 0.0, "validation": 0.0, "test": 0.0, split: 1.0}
    values = {
        "version_id": str(uuid.uuid4()),
        "dataset_id": str(uuid.uuid4()),
        "project": project,
        "name": name,
        "version": version,
        "format": fmt,
        "uri": stored.uri,
        "sha256": stored.sha256,
        "row_count": len(rows),
        "splits": {**fractions, "seed": 42, "counts": {"train": 0, "validation": 0, "test": 0, split: len(rows)}},
    }
    async with running.runtime.db.transaction() as session:
        await service.project_dataset_version(session, values)
        if deprecated:
            await service.project_deprecation(session, values["version_id"], "superseded", utcnow(), str(uuid.uuid4()))
    return values


async def seed_model_version(
    running: EvaluationService,
    *,
    project: str = "p1",
    name: str = "tiny-lora",
    version: int = 1,
    kind: str = "adapter",
    manifest_sha256: str | None = None,
    base_manifest: str | None = None,
) -> dict:
    """A model version (and its base model) as the training service's events would have left them."""
    from llmops_schemas.envelope import utcnow

    base = {
        "base_model_id": str(uuid.uuid4()),
        "name": "tiny",
        "source": "upload",
        "manifest_sha256": base_manifest or "b" * 64,
        "hub_id": None,
        "revision": None,
    }
    values = {
        "model_version_id": str(uuid.uuid4()),
        "project": project,
        "name": name,
        "version": version,
        "kind": kind,
        "manifest_sha256": manifest_sha256 or "a" * 64,
        "base_model": base,
        "registered_at": utcnow(),
    }
    async with running.runtime.db.transaction() as session:
        await repository.insert_model_version(session, values)
        await repository.insert_base_model(session, {**base, "project": project})
    return values


async def point_alias(running: EvaluationService, name: str, alias: str, version: int, project: str = "p1") -> None:
    from llmops_schemas.envelope import utcnow

    async with running.runtime.db.transaction() as session:
        await repository.move_alias(
            session, {"project": project, "name": name, "alias": alias, "version": version, "event_time": utcnow()}
        )


async def outbox_events(running: EvaluationService) -> list[dict]:
    """Every event the service (or a worker sharing its database) has written to its outbox, in order."""
    async with running.runtime.db.sessions() as session:
        rows = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        return [orjson.loads(p) for p in rows]


#: Examples of the runs :func:`finished_run` makes.
EXAMPLES = 40


async def finished_run(evaluation, suite: dict, model: dict | None, scores: dict[str, list[float]]) -> str:
    """A run of ``suite`` on ``model`` as a worker completes it: its examples' scores and its metrics (each metric's
    mean with its bootstrap interval), then the gates decided in the same transaction."""
    run_id = str(uuid.uuid4())
    async with evaluation.runtime.db.transaction() as session:
        model_row = None
        if model is not None:
            model_row = await repository.find_model_version(session, "p1", model["name"], model["version"])
        target = target_of_model_version(model_row).model_dump(mode="json") if model_row else {"kind": "endpoint"}
        await repository.insert_run(
            session,
            {
                "id": run_id,
                "project": "p1",
                "suite_version_id": suite["id"],
                "status": "completed",
                "pool": "cpu",
                "target": target,
                "model_name": None if model is None else model["name"],
                "model_version": None if model is None else model["version"],
                "model_version_id": None if model is None else model["model_version_id"],
                "trigger": "api",
                "trigger_key": f"request:{run_id}",
                "request": {},
                "requested_by": "eve",
            },
        )
        metrics = {}
        for metric, values in scores.items():
            interval = bootstrap_ci(values, resamples=1000)
            metrics[metric] = {
                "value": interval.mean,
                "mean": interval.mean,
                "low": interval.low,
                "high": interval.high,
            }
        await repository.update_run(session, run_id, metrics=metrics, finished_at=None)
        await repository.insert_run_examples(
            session,
            [
                {"run_id": run_id, "index": i, "scores": {m: v[i] for m, v in scores.items()}, "latency_ms": 1.0}
                for i in range(EXAMPLES)
            ],
        )
        await gating.decide_gates(session, evaluation.runtime, run_id, resamples=1000)
    return run_id


def noisy(mean: float, spread: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [mean + rng.uniform(-spread, spread) for _ in range(EXAMPLES)]
