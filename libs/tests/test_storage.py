"""Content-addressed object storage against the real S3 store (SeaweedFS locally)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
import urllib.request

import pytest
from minio.error import S3Error

from llmops.storage import (
    INCOMING,
    IntegrityError,
    ObjectNotFound,
    ObjectStore,
    WriteAborted,
    key_for,
    sha256_of_file,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(infra_up):
    return ObjectStore()


def write_random_file(path, size: int, chunk: int = 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // chunk):
            block = os.urandom(chunk)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


class TestLargeObjects:
    async def test_a_50_mb_object_round_trips_with_its_sha256_without_being_held_in_memory(self, store, tmp_path):
        source = tmp_path / "big.bin"
        expected = write_random_file(source, 50 * 1024 * 1024)
        await store.ensure_bucket()

        tracemalloc.start()
        try:
            stored = await store.put_file(source)
            copy = tmp_path / "copy.bin"
            fetched = await store.download(stored.sha256, copy)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert stored.sha256 == fetched.sha256 == expected
        assert sha256_of_file(copy) == (expected, 50 * 1024 * 1024)
        assert stored.key == key_for(expected) and stored.uri.endswith(expected)
        assert peak < 25 * 1024 * 1024, f"peak Python memory {peak / 2**20:.1f} MiB for a 50 MiB object"

    async def test_a_stream_of_unknown_length_is_stored_under_its_hash(self, store):
        chunks = [os.urandom(1024 * 1024) for _ in range(12)]
        stored = await store.put_stream(iter(chunks))
        assert stored.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
        assert stored.size == 12 * 1024 * 1024
        assert await store.exists(stored.sha256)


MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 allows


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
        with store.writer(content_type="application/x-ndjson", part_size=PART) as writer:
            await asyncio.to_thread(write_in_pieces, writer, data)
            stored = await asyncio.to_thread(writer.commit)

        assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size == len(data)
        assert await store.get_bytes(stored.sha256) == data
        info = stat(store, stored.key)
        assert info.content_type == "application/x-ndjson" and info.metadata["x-amz-meta-sha256"] == stored.sha256
        assert writer.temporary_key.startswith(INCOMING) and stat(store, writer.temporary_key) is None

    async def test_content_smaller_than_a_part_is_stored_directly_without_a_temporary_object(self, store):
        data = b"small " + os.urandom(64)
        with store.writer(part_size=PART) as writer:
            writer.write(data)
            stored = await asyncio.to_thread(writer.commit)
        assert await store.get_bytes(stored.sha256) == data
        assert stat(store, writer.temporary_key) is None and unfinished_uploads(store, writer.temporary_key) == []

    @pytest.mark.parametrize("size", [100, 2 * PART + 7], ids=["under-a-part", "several-parts"])
    async def test_its_hash_is_known_before_the_commit_and_it_takes_no_more_bytes(self, store, size):
        data = os.urandom(size)
        with store.writer(part_size=PART) as writer:
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
        with store.writer(part_size=PART) as writer:
            await asyncio.to_thread(write_in_pieces, writer, data)
            stored = await asyncio.to_thread(writer.commit)
        assert stored == first
        assert stat(store, writer.temporary_key) is None

    async def test_an_aborted_write_stores_nothing_and_leaves_no_upload_behind(self, store):
        data = os.urandom(3 * PART)
        writer = store.writer(part_size=PART)
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
            with store.writer(part_size=PART) as writer:
                write_in_pieces(writer, data)
                raise RuntimeError("the producer failed")

        with pytest.raises(RuntimeError, match="producer"):
            await asyncio.to_thread(fail_while_writing)
        assert not await store.exists(hashlib.sha256(data).hexdigest())

    async def test_an_abort_from_another_thread_stops_a_writer_that_waits_for_the_upload(self, store):
        writer = store.writer(part_size=PART)
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
            with store.writer(part_size=PART) as writer:

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


class TestContentAddressing:
    async def test_the_same_bytes_are_stored_once_under_the_same_key(self, store):
        first = await store.put_bytes(b"same bytes " + os.urandom(8))
        second = await store.put_bytes(await store.get_bytes(first.sha256))
        assert first == second

    async def test_a_missing_object_is_reported_as_not_found(self, store, tmp_path):
        missing = hashlib.sha256(os.urandom(16)).hexdigest()
        assert not await store.exists(missing)
        with pytest.raises(ObjectNotFound):
            await store.download(missing, tmp_path / "x")
        assert not (tmp_path / "x").exists()

    async def test_a_corrupted_object_is_refused_on_download_and_no_file_is_left(self, store, tmp_path):
        genuine = hashlib.sha256(b"genuine").hexdigest()
        store.client.put_object(store.bucket, key_for(genuine), __import__("io").BytesIO(b"forged"), 6)
        with pytest.raises(IntegrityError):
            await store.download(genuine, tmp_path / "forged")
        assert list(tmp_path.iterdir()) == []

    async def test_a_presigned_url_downloads_the_object_without_credentials(self, store):
        data = b"shared " + os.urandom(16)
        stored = await store.put_bytes(data)
        url = await store.presigned_url(stored.sha256)
        assert url.startswith("http://127.0.0.1")

        def fetch() -> bytes:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (local test store)
                return response.read()

        assert await asyncio.to_thread(fetch) == data

    def test_keys_refuse_what_is_not_a_sha256(self):
        with pytest.raises(ValueError, match="sha256"):
            key_for("../../etc/passwd")
