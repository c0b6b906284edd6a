"""Fixtures of the training service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role; a tiny base model built once per session."""

from __future__ import annotations

import asyncio
import io
import tarfile
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops import testing
from llmops.auth import Role
from llmops.testing import service_database
from llmops_training import repository
from llmops_training.app import TrainingService, migrate
from llmops_training.settings import TrainingSettings


@pytest.fixture
def offset_reset() -> str:
    """Tests start the projections past the shared topics' history (the consumer's own tests override this)."""
    return "latest"


@pytest.fixture
async def training_settings(infra_up, tmp_path, offset_reset):
    async with service_database(
        "training",
        TrainingSettings,
        outbox_poll_interval=0.05,
        progress_interval_seconds=0.2,
        lease_seconds=3,
        session_timeout_ms=6000,
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        consumer_group=f"training-test-{uuid.uuid4().hex[:12]}",
        consumer_offset_reset=offset_reset,
        # Workers of this test only: another test run or the demo sharing Kafka must not take its jobs.
        worker_group=f"training-worker-test-{uuid.uuid4().hex[:12]}",
        worker_offset_reset="latest",  # past other runs' jobs; fixtures wait until the worker is ready
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def training(training_settings):
    service = TrainingService(training_settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def client(training):
    transport = httpx.ASGITransport(app=training.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as http:
        yield http


#: The tests' tokens: one role each, in project p1, for "dana" unless they name another subject.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")


ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
ADMIN = bearer(Role.ADMIN, subject="ada")
VIEWER = bearer(Role.VIEWER, subject="vic")
STEWARD = bearer(Role.DATA_STEWARD, subject="sam")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama with its own tokenizer, built offline (the same for every test)."""
    from llmops.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def tar_of(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=directory.name)
    return buffer.getvalue()


def member(name: str, data: bytes = b"", *, size: int | None = None, **fields) -> tuple[tarfile.TarInfo, bytes]:
    """A tar member made by hand: a file of ``data`` unless ``fields`` say otherwise (``type``, ``linkname``);
    ``size`` declares a size other than the data's."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for field, value in fields.items():
        setattr(info, field, value)
    if size is not None:
        info.size = size
    return info, data


def tar_with(*members: tuple[tarfile.TarInfo, bytes], mode: str = "w") -> bytes:
    """A tar of the members as given (``mode`` ``w:gz`` and so on compresses it); a member whose declared size is
    larger than its data has only its header written, as a crafted archive would."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for info, data in members:
            if info.isreg() and info.size > len(data):
                header = info.tobuf(tar.format, tar.encoding, tar.errors)
                tar.fileobj.write(header)
                tar.offset += len(header)
                continue
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


CONFIG = member("model/config.json", b'{"architectures": ["LlamaForCausalLM"]}')


def safetensors_claiming(header_size: int) -> bytes:
    """The start of a safetensors file whose first 8 bytes claim a JSON header of ``header_size`` bytes."""
    return header_size.to_bytes(8, "little") + b"{}"


def instruction_rows(count: int = 64) -> list[dict]:
    """Question/answer pairs a tiny model can learn (a few distinct answers, repeated)."""
    answers = ["blue", "green", "red", "yellow"]
    return [
        {"prompt": f"Question {i}: what colour is item {i % 4}?", "completion": f" The colour is {answers[i % 4]}."}
        for i in range(count)
    ]


async def seed_dataset(
    service,
    *,
    project: str = "p1",
    name: str = "qa",
    version: int = 1,
    fmt: str = "instruction",
    rows: list[dict] | None = None,
    deprecated: bool = False,
) -> dict:
    """A dataset version as the datasets service would have published it: its canonical JSONL in the object store
    and the row the projection consumer writes (the consumer itself is tested on real Kafka elsewhere)."""
    import uuid

    import orjson

    from llmops_schemas.envelope import utcnow
    from llmops_training import service as use_cases

    rows = instruction_rows() if rows is None else rows
    body = b"".join(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n" for row in rows)
    stored = await service.runtime.store.put_bytes(body, content_type="application/x-ndjson")
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
        # everything in train: the tests train on all rows
        "splits": {"train": 1.0, "validation": 0.0, "test": 0.0, "seed": 42, "counts": {"train": len(rows)}},
    }
    async with service.runtime.db.transaction() as session:
        await use_cases.project_dataset_version(session, values)
        if deprecated:
            await use_cases.project_deprecation(
                session, values["version_id"], "superseded", utcnow(), str(uuid.uuid4())
            )
    return values


async def register_tiny(client, tiny_model, name: str = "tiny", project: str = "p1") -> dict:
    response = await client.post(
        f"/projects/{project}/base-models/{name}/upload",
        content=tar_of(tiny_model),
        headers=ENGINEER | {"content-type": "application/x-tar"},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def outbox_events(training) -> list[dict]:
    """Every event the service (or a worker sharing its database) has written to its outbox, in order."""
    import orjson
    from sqlalchemy import select

    from llmops.bus import outbox

    async with training.runtime.db.sessions() as session:
        rows = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        return [orjson.loads(p) for p in rows]


async def claimed_job(session, worker: str, lease_seconds: float, **request: Any) -> tuple[str, str]:
    """A new job of project p1 (on a new base model) claimed by ``worker``, as a worker's claim leaves it; its id and
    its base model's id. ``request`` overrides fields of the job row."""
    base_model_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())
    await repository.insert_base_model(
        session, {"id": base_model_id, "project": "p1", "name": "tiny", "source": "upload", "created_by": "eve"}
    )
    row = {
        "id": job_id,
        "project": "p1",
        "model_name": "tiny-lora",
        "status": "queued",
        "pool": "cpu",
        "method": "lora",
        "hyperparameters": {},
        "base_model_id": base_model_id,
        "dataset_version_id": "v1",
        "request": {},
        "requested_by": "eve",
    }
    await repository.insert_job(session, row | request)
    assert await repository.claim_job(session, job_id, worker, lease_seconds) is not None
    return job_id, base_model_id
