"""Content-addressed object storage against the real S3 store (SeaweedFS locally)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
import urllib.request

import pytest

from llmops.storage import (
    IntegrityError,
    ObjectNotFound,
    ObjectStore,
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


class TestStreamsAndUris:
    async def test_a_stream_reads_the_object_in_chunks_and_its_size_is_known_before(self, store):
        data = os.urandom(3 * 1024 + 5)
        stored = await store.put_bytes(data)
        assert await store.size_of(stored.sha256) == len(data)
        chunks = [chunk async for chunk in store.stream(stored.sha256, chunk_size=1024)]
        assert b"".join(chunks) == data and len(chunks) > 1

    async def test_a_missing_object_has_no_size_and_no_stream(self, store):
        missing = hashlib.sha256(os.urandom(16)).hexdigest()
        with pytest.raises(ObjectNotFound):
            await store.size_of(missing)
        with pytest.raises(ObjectNotFound):
            [chunk async for chunk in store.stream(missing)]

    async def test_a_corrupted_object_fails_its_stream_at_the_end(self, store):
        genuine = hashlib.sha256(b"genuine stream").hexdigest()
        store.client.put_object(store.bucket, key_for(genuine), __import__("io").BytesIO(b"forged"), 6)
        with pytest.raises(IntegrityError):
            [chunk async for chunk in store.stream(genuine)]

    def test_the_uri_of_a_stored_object_gives_its_sha256(self, store):
        sha256 = hashlib.sha256(b"x").hexdigest()
        uri = f"s3://{store.bucket}/{key_for(sha256)}"
        assert store.sha256_of_uri(uri) == sha256

    @pytest.mark.parametrize(
        "uri",
        [
            "http://127.0.0.1:8333/{bucket}/{key}",
            "file:///etc/passwd",
            "s3://other-bucket/{key}",
            "s3://{bucket}/sha256/00/{sha}",  # the prefix is not the hash's
            "s3://{bucket}/sha256/{sha2}/../../{key}",
            "s3://{bucket}/{key}/",
            "s3://{bucket}/{key}?versionId=1",
            "s3://{bucket}/incoming/{sha}",
            "s3://{bucket}/sha256/{sha2}/{upper}",
            "s3://{bucket}x/{key}",
            "",
        ],
    )
    def test_any_other_uri_is_refused(self, store, uri):
        sha256 = hashlib.sha256(b"x").hexdigest()
        uri = uri.format(bucket=store.bucket, key=key_for(sha256), sha=sha256, sha2=sha256[:2], upper=sha256.upper())
        with pytest.raises(ValueError, match="not an object of this store"):
            store.sha256_of_uri(uri)
