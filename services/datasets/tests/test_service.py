"""Uploading a version larger than an upload part, on the real stores: the cleaned rows go to the object store while
they are cleaned, and every way an upload can fail leaves nothing behind."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future

import orjson
import pytest
from minio.error import S3Error
from sqlalchemy import func, select
from starlette.requests import ClientDisconnect

from llmops.errors import Problem
from llmops.object_writer import ObjectWriter
from llmops.runtime import Actor
from llmops.storage import WRITER_PART_SIZE, key_for
from llmops_datasets import service
from llmops_datasets.formats import FileType, Format
from llmops_datasets.ingest import CleaningConfig, SplitConfig
from llmops_datasets.models import dataset_versions
from llmops_datasets.parallel import WorkerFailed

pytestmark = pytest.mark.integration

ACTOR = Actor("dana")
MiB = 1024 * 1024


def chat_rows(megabytes: float, tag: str) -> list[bytes]:
    """Distinct chat rows, some twice and some needing normalisation, until ``megabytes``."""
    lines, size, i = [], 0, 0
    while size < megabytes * MiB:
        text = f"question {tag} {i}: how large is a dataset that does not fit in one upload part?"
        line = orjson.dumps(
            {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "  big "}]}
        )
        lines.append(line + b"\n")
        if i % 100 == 0:
            lines.append(line + b"\n")  # a duplicate
        size += len(line) * (2 if i % 100 == 0 else 1)
        i += 1
    return lines


async def chunks_of(lines: list[bytes], *, fail_after: int | None = None, chunk: int = 256 * 1024):
    data = b"".join(lines)
    for start in range(0, len(data), chunk):
        if fail_after is not None and start >= fail_after:
            raise ClientDisconnect()
        yield data[start : start + chunk]


@pytest.fixture
async def chat_dataset(datasets):
    async with datasets.runtime.db.transaction() as session:
        await service.create_dataset(
            session, datasets.runtime, project="p1", name="big", row_format=Format.CHAT, description="", actor=ACTOR
        )
    return "big"


@pytest.fixture
def writers(monkeypatch) -> list:
    """The object writers the uploads open, to check what each left in the store."""
    made = []

    def recording(store, **options):
        made.append(ObjectWriter(store, **options))
        return made[-1]

    monkeypatch.setattr(service, "ObjectWriter", recording)
    return made


@pytest.fixture(params=["thread", "workers"])
def pool(request, ingest_pool):
    """How the upload is cleaned: in a thread of the service, or by ingest workers."""
    return None if request.param == "thread" else ingest_pool


async def upload(datasets, lines, pool=None, *, fail_after: int | None = None, **cleaning):
    return await service.upload_version(
        datasets.runtime,
        project="p1",
        name="big",
        chunks=chunks_of(lines, fail_after=fail_after),
        file_type=FileType.JSONL,
        cleaning=CleaningConfig(**cleaning),
        split=SplitConfig(),
        keep_valid=False,
        limit=100 * MiB,
        spool_dir=None,
        actor=ACTOR,
        pool=pool,
    )


def left_behind(datasets, writer) -> list[str]:
    """What a writer left in the store: its temporary object, its unfinished multipart uploads."""
    store, left = datasets.runtime.store, []
    try:
        store.client.stat_object(store.bucket, writer.temporary_key)
        left.append("temporary object")
    except S3Error as exc:
        assert exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}
    uploads = store.client._list_multipart_uploads(store.bucket, prefix=writer.temporary_key).uploads  # no public call
    left += [f"unfinished upload {u.upload_id}" for u in uploads if u.object_name == writer.temporary_key]
    return left


async def versions(datasets) -> int:
    async with datasets.runtime.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(dataset_versions))


class TestUploadVersion:
    async def test_an_upload_larger_than_a_part_is_stored_under_the_hash_of_its_cleaned_rows(
        self, datasets, chat_dataset, writers, pool
    ):
        lines = chat_rows(2.5 * WRITER_PART_SIZE / MiB, "stored")
        version, created = await upload(datasets, lines, pool)

        assert created and version.row_count == len(set(lines))
        cleaning = version.cleaning
        assert cleaning["duplicates_removed"] > 0 and cleaning["rows_normalized"] == cleaning["rows_read"]
        stored = await datasets.runtime.store.get_bytes(version.sha256)
        assert hashlib.sha256(stored).hexdigest() == version.sha256 and len(stored) == version.size_bytes
        assert version.uri.endswith(key_for(version.sha256)) and version.size_bytes > WRITER_PART_SIZE
        assert left_behind(datasets, writers[0]) == []

    async def test_the_same_content_again_returns_its_version_and_leaves_nothing(self, datasets, chat_dataset, writers):
        lines = chat_rows(1.5 * WRITER_PART_SIZE / MiB, "again")
        first, _ = await upload(datasets, lines)
        second, created = await upload(datasets, lines)
        assert not created and second.id == first.id
        assert [left_behind(datasets, writer) for writer in writers] == [[], []]

    async def test_invalid_rows_store_nothing(self, datasets, chat_dataset, writers, pool):
        lines = chat_rows(1.5 * WRITER_PART_SIZE / MiB, "invalid")
        lines.append(b'{"messages": [{"role": "robot", "content": "x"}]}\n')  # the last row, after several parts
        with pytest.raises(Problem) as refused:
            await upload(datasets, lines, pool)
        assert refused.value.status == 422
        assert await versions(datasets) == 0 and left_behind(datasets, writers[0]) == []

    async def test_a_client_that_goes_away_mid_upload_leaves_nothing(self, datasets, chat_dataset, writers, pool):
        lines = chat_rows(3 * WRITER_PART_SIZE / MiB, "gone")
        with pytest.raises(ClientDisconnect):
            await upload(datasets, lines, pool, fail_after=2 * WRITER_PART_SIZE)
        assert await versions(datasets) == 0 and left_behind(datasets, writers[0]) == []

    async def test_a_worker_that_fails_a_block_fails_the_upload_with_a_503_and_stores_nothing(
        self, datasets, chat_dataset, writers, monkeypatch, ingest_pool
    ):
        submit, blocks = ingest_pool.submit, []

        def failing_the_second(task, owner=None):
            blocks.append(task)
            if len(blocks) != 2:
                return submit(task, owner)
            failed: Future = Future()
            failed.set_exception(WorkerFailed("ingest worker 1 stopped: killed by SIGKILL"))
            return failed

        monkeypatch.setattr(ingest_pool, "submit", failing_the_second)
        lines = chat_rows(3 * WRITER_PART_SIZE / MiB, "failed")
        with pytest.raises(Problem) as refused:
            await upload(datasets, lines, ingest_pool)
        assert refused.value.status == 503 and "killed by SIGKILL" in refused.value.detail
        assert await versions(datasets) == 0 and left_behind(datasets, writers[0]) == []

    async def test_ingest_workers_store_the_same_version(
        self, datasets, chat_dataset, writers, monkeypatch, ingest_pool
    ):
        monkeypatch.setattr("llmops_datasets.parallel.BLOCK_BYTES", MiB)
        lines = chat_rows(1.5 * WRITER_PART_SIZE / MiB, "workers")
        pool, blocks = ingest_pool, []
        submit = pool.submit
        monkeypatch.setattr(pool, "submit", lambda task, owner=None: blocks.append(task) or submit(task, owner))
        in_process, _ = await upload(datasets, lines)
        in_workers, created = await upload(datasets, lines, pool)
        assert not created and in_workers.id == in_process.id
        assert len(blocks) >= 7  # the workers cleaned it, block by block
        assert [left_behind(datasets, writer) for writer in writers] == [[], []]
