"""An object writer: bytes uploaded while written, stored under their sha256 once complete (against the real S3
store, SeaweedFS locally)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc

import pytest
from minio.error import S3Error

from llmops.object_writer import ObjectWriter
from llmops.storage import INCOMING, ObjectStore, WriteAborted

pytestmark = pytest.mark.integration


MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 allows


@pytest.fixture(scope="module")
def store(infra_up):
    return ObjectStore()


def stat(store: ObjectStore, key: str):
    try:
        return store.client.stat_object(store.bucket, key)
    except S3Error as exc:
        if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
            return None
        raise


def unfinished_uploads(store: ObjectStore, key: str) -> list:
    # the SDK has no public call for ListMultipartUploads
    return [u for u in store.client._list_multipart_uploads(store.bucket, prefix=key).uploads if u.object_name == key]


def write_in_pieces(writer, data: bytes, piece: int = 777_777) -> None:
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])


class TestObjectWriter:
    async def test_content_larger_than_a_part_is_stored_under_its_hash_and_the_temporary_object_is_deleted(self, store):
        data = os.urandom(2 * PART + 12345)
        with ObjectWriter(store, content_type="application/x-ndjson", part_size=PART) as writer:
            await asyncio.to_thread(write_in_pieces, writer, data)
            stored = await asyncio.to_thread(writer.commit)

        assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size == len(data)
        assert await store.get_bytes(stored.sha256) == data
        info = stat(store, stored.key)
        assert info.content_type == "application/x-ndjson" and info.metadata["x-amz-meta-sha256"] == stored.sha256
        assert writer.temporary_key.startswith(INCOMING) and stat(store, writer.temporary_key) is None

    async def test_content_smaller_than_a_part_is_stored_directly_without_a_temporary_object(self, store):
        data = b"small " + os.urandom(64)
        with ObjectWriter(store, part_size=PART) as writer:
            writer.write(data)
            stored = await asyncio.to_thread(writer.commit)
        assert await store.get_bytes(stored.sha256) == data
        assert stat(store, writer.temporary_key) is None and unfinished_uploads(store, writer.temporary_key) == []

    @pytest.mark.parametrize("size", [100, 2 * PART + 7], ids=["under-a-part", "several-parts"])
    async def test_its_hash_is_known_before_the_commit_and_it_takes_no_more_bytes(self, store, size):
        data = os.urandom(size)
        with ObjectWriter(store, part_size=PART) as writer:
            await asyncio.to_thread(write_in_pieces, writer, data)
            assert await asyncio.to_thread(writer.hexdigest) == hashlib.sha256(data).hexdigest()
            with pytest.raises(WriteAborted):
                writer.write(b"more")
            assert await asyncio.to_thread(writer.hexdigest) == hashlib.sha256(data).hexdigest()  # asked again
            stored = await asyncio.to_thread(writer.commit)
        assert stored.sha256 == hashlib.sha256(data).hexdigest() and await store.get_bytes(stored.sha256) == data
        assert stat(store, writer.temporary_key) is None

    async def test_content_already_stored_is_not_copied_again_and_the_temporary_object_is_deleted(self, store):
        data = os.urandom(PART + 1)
        first = await store.put_bytes(data)
        with ObjectWriter(store, part_size=PART) as writer:
            await asyncio.to_thread(write_in_pieces, writer, data)
            stored = await asyncio.to_thread(writer.commit)
        assert stored == first
        assert stat(store, writer.temporary_key) is None

    async def test_an_aborted_write_stores_nothing_and_leaves_no_upload_behind(self, store):
        data = os.urandom(3 * PART)
        writer = ObjectWriter(store, part_size=PART)
        await asyncio.to_thread(write_in_pieces, writer, data)
        await asyncio.to_thread(writer.abort)

        assert not await store.exists(hashlib.sha256(data).hexdigest())
        assert stat(store, writer.temporary_key) is None and unfinished_uploads(store, writer.temporary_key) == []
        with pytest.raises(WriteAborted):
            writer.write(b"more")
        with pytest.raises(WriteAborted):
            writer.commit()

    async def test_leaving_the_block_on_an_error_stores_nothing(self, store):
        data = os.urandom(2 * PART)

        def fail_while_writing():
            with ObjectWriter(store, part_size=PART) as writer:
                write_in_pieces(writer, data)
                raise RuntimeError("the producer failed")

        with pytest.raises(RuntimeError, match="producer"):
            await asyncio.to_thread(fail_while_writing)
        assert not await store.exists(hashlib.sha256(data).hexdigest())

    async def test_an_abort_from_another_thread_stops_a_writer_that_waits_for_the_upload(self, store):
        writer = ObjectWriter(store, part_size=PART)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()

        def write_forever():
            try:
                while True:
                    writer.write(os.urandom(MiB))
            except WriteAborted:
                loop.call_soon_threadsafe(stopped.set)

        task = asyncio.create_task(asyncio.to_thread(write_forever))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(writer.abort)
        await asyncio.wait_for(stopped.wait(), 30)
        await task
        assert stat(store, writer.temporary_key) is None and unfinished_uploads(store, writer.temporary_key) == []

    async def test_memory_stays_at_a_few_parts_however_much_is_written(self, store):
        block = os.urandom(MiB)
        tracemalloc.start()
        try:
            with ObjectWriter(store, part_size=PART) as writer:

                def write():
                    for n in range(80):
                        writer.write(block[:-1] + bytes([n]))

                await asyncio.to_thread(write)
                stored = await asyncio.to_thread(writer.commit)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert stored.size == 80 * MiB
        assert peak < 8 * PART, f"peak Python memory {peak / MiB:.1f} MiB writing 80 MiB in 5 MiB parts"
