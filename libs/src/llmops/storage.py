"""Object storage over the S3 API (the ``minio`` SDK as a generic S3 client): SeaweedFS locally, MinIO or AWS S3
by configuration.

Objects are content-addressed and immutable: the key is the sha256 of the bytes (``sha256/ab/abcd...``), so storing
the same bytes twice stores them once. Uploads and downloads are streamed in parts; nothing is held whole in memory.
Bytes whose hash is known only at their end are uploaded while written by an :class:`llmops.object_writer.ObjectWriter`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from minio import Minio
from minio.error import S3Error

from llmops.logging import get_logger
from llmops.settings import S3Settings

log = get_logger(__name__)

CHUNK = 1024 * 1024
PART_SIZE = 8 * 1024 * 1024  # multipart part size: bounds the memory an upload uses
#: An ObjectWriter's part size, the smallest S3 allows: the SDK holds copies of the part in flight (about five parts in
#: all), and a writer runs beside the work producing its bytes, whose memory adds up with it.
WRITER_PART_SIZE = 5 * 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # streams larger than this are spooled to a temporary file while hashed
#: Where an :class:`ObjectWriter` uploads before the hash is known. Its objects live only as long as a write; a
#: process that dies mid-write leaves one behind (or an unfinished multipart upload): a lifecycle rule on the prefix
#: expires them.
INCOMING = "incoming/"


class WriteAborted(RuntimeError):
    """An :class:`ObjectWriter` was aborted, or its upload failed; nothing was stored."""


class ObjectNotFound(LookupError):
    """No object has that sha256."""


class IntegrityError(ValueError):
    """Downloaded bytes do not hash to the sha256 they were stored under."""


@dataclass(frozen=True)
class StoredObject:
    """Where an object lives and what it is: events carry this (URI and sha256), never the bytes."""

    bucket: str
    key: str
    sha256: str
    size: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def key_for(sha256: str) -> str:
    """The content-addressed key of an object with this sha256."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"sha256/{sha256[:2]}/{sha256}"


_CONTENT_KEY = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{64})")


def sha256_of_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ObjectStore:
    """A content-addressed store in one bucket. Blocking SDK calls run in threads behind async methods."""

    def __init__(self, settings: S3Settings | None = None, *, bucket: str | None = None) -> None:
        self.settings = settings or S3Settings()
        self.bucket = bucket or self.settings.bucket
        self.client = Minio(
            self.settings.endpoint,
            access_key=self.settings.access_key,
            secret_key=self.settings.secret_key.get_secret_value(),
            secure=self.settings.secure,
            region=self.settings.region,
        )

    # -- buckets -------------------------------------------------------------------------------------------------
    def _ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket)
                log.info("storage.bucket_created", bucket=self.bucket)
            except S3Error as exc:  # another process created it first
                if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    async def ensure_bucket(self) -> None:
        """Create the bucket when missing (called on service start)."""
        await asyncio.to_thread(self._ensure_bucket)

    async def ping(self) -> None:
        """Raise when the store cannot be reached or the bucket is missing (readiness check)."""
        if not await asyncio.to_thread(self.client.bucket_exists, self.bucket):
            raise ObjectNotFound(f"bucket {self.bucket} does not exist")

    def sha256_of_uri(self, uri: str) -> str:
        """The sha256 of ``uri`` when it is a content address of this store (``s3://<bucket>/sha256/ab/ab...``, as
        :attr:`StoredObject.uri` writes it); raises ValueError for any other URI, bucket or key, so that a URI a
        user sends can name nothing but an object of this store."""
        prefix = f"s3://{self.bucket}/"
        match = _CONTENT_KEY.fullmatch(uri[len(prefix) :]) if uri.startswith(prefix) else None
        if match is None or match[2][:2] != match[1]:
            raise ValueError(f"not an object of this store: expected s3://{self.bucket}/sha256/<xx>/<sha256>")
        return match[2]

    # -- put -----------------------------------------------------------------------------------------------------
    def _put_file(self, path: Path, sha256: str, size: int, content_type: str) -> StoredObject:
        stored = StoredObject(self.bucket, key_for(sha256), sha256, size)
        if self._exists(sha256):
            return stored
        self.client.fput_object(
            self.bucket,
            stored.key,
            str(path),
            content_type=content_type,
            part_size=PART_SIZE,
            num_parallel_uploads=1,  # one part in flight: memory stays at a few part sizes
            metadata={"sha256": sha256},
        )
        log.info("storage.object_stored", key=stored.key, size=size)
        return stored

    async def put_file(
        self, path: Path, *, content_type: str = "application/octet-stream", sha256: str | None = None
    ) -> StoredObject:
        """Store a file under its sha256 (multipart for large files); a file already stored is not sent again.

        ``sha256``, when the caller computed it while writing the file, saves reading the file twice.
        """
        if sha256 is None:
            sha256, size = await asyncio.to_thread(sha256_of_file, path)
        else:
            size = (await asyncio.to_thread(path.stat)).st_size
        return await asyncio.to_thread(self._put_file, path, sha256, size, content_type)

    def _put_stream(self, stream: BinaryIO | Iterable[bytes], content_type: str) -> StoredObject:
        chunks = iter(lambda: stream.read(CHUNK), b"") if hasattr(stream, "read") else stream
        digest, size = hashlib.sha256(), 0
        # The key depends on the hash of all the bytes, so spool them (to disk past a few MB) while hashing.
        with tempfile.NamedTemporaryFile(prefix="llmops-upload-") as spool:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            spool.flush()
            return self._put_file(Path(spool.name), digest.hexdigest(), size, content_type)

    async def put_stream(
        self, stream: BinaryIO | Iterable[bytes], *, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        """Store the bytes of a readable stream or an iterable of chunks, of any size, under their sha256."""
        return await asyncio.to_thread(self._put_stream, stream, content_type)

    async def put_bytes(self, data: bytes, *, content_type: str = "application/octet-stream") -> StoredObject:
        """Store small in-memory bytes under their sha256."""
        return await self.put_stream([data], content_type=content_type)

    # -- get -----------------------------------------------------------------------------------------------------
    def _exists(self, sha256: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key_for(sha256))
            return True
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                return False
            raise

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self._exists, sha256)

    def _download(self, sha256: str, destination: Path) -> StoredObject:
        try:
            response = self.client.get_object(self.bucket, key_for(sha256))
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                raise ObjectNotFound(sha256) from exc
            raise
        digest, size = hashlib.sha256(), 0
        partial = destination.with_name(destination.name + ".partial")
        try:
            with partial.open("wb") as out:
                for chunk in response.stream(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        finally:
            response.close()
            response.release_conn()
        if digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            raise IntegrityError(f"object {sha256} downloaded as {digest.hexdigest()}")
        shutil.move(partial, destination)
        return StoredObject(self.bucket, key_for(sha256), sha256, size)

    async def download(self, sha256: str, destination: Path) -> StoredObject:
        """Stream an object to ``destination``, checking its sha256 on the way; a bad copy is never left there."""
        return await asyncio.to_thread(self._download, sha256, destination)

    async def size_of(self, sha256: str) -> int:
        """The size in bytes of a stored object, read without its bytes."""

        def stat() -> int:
            return self.client.stat_object(self.bucket, key_for(sha256)).size

        try:
            return await asyncio.to_thread(stat)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                raise ObjectNotFound(sha256) from exc
            raise

    async def stream(self, sha256: str, *, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        """The bytes of an object in chunks, as they are read; the last read raises :class:`IntegrityError` when
        they do not hash to ``sha256`` (so a consumer that ends with the stream never takes a bad copy whole)."""
        try:
            response = await asyncio.to_thread(self.client.get_object, self.bucket, key_for(sha256))
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                raise ObjectNotFound(sha256) from exc
            raise
        digest = hashlib.sha256()
        try:
            chunks = response.stream(chunk_size)
            while chunk := await asyncio.to_thread(next, chunks, b""):
                digest.update(chunk)
                yield chunk
        finally:
            response.close()
            response.release_conn()
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"object {sha256} reads as {digest.hexdigest()}")

    async def get_bytes(self, sha256: str) -> bytes:
        """Read a small object whole (for large ones use :meth:`download`)."""

        def read() -> bytes:
            response = self.client.get_object(self.bucket, key_for(sha256))
            try:
                data = response.read()
            finally:
                response.close()
                response.release_conn()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise IntegrityError(f"object {sha256} does not match its hash")
            return data

        try:
            return await asyncio.to_thread(read)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                raise ObjectNotFound(sha256) from exc
            raise

    def _first_lines(self, sha256: str, count: int, keep) -> list[bytes]:
        response = self.client.get_object(self.bucket, key_for(sha256))
        lines: list[bytes] = []
        pending = b""
        try:
            for chunk in response.stream(64 * 1024):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if keep is None or keep(line + b"\n"):
                        lines.append(line + b"\n")
                        if len(lines) >= count:
                            return lines
            if pending and (keep is None or keep(pending)):
                lines.append(pending)
            return lines[:count]
        finally:
            response.close()
            response.release_conn()

    async def first_lines(self, sha256: str, count: int, *, keep=None) -> list[bytes]:
        """The first ``count`` lines (newline kept) of a text object that ``keep`` accepts, reading no further than
        needed (previews of large files). Not checked against the hash: a preview, not a download."""
        try:
            return await asyncio.to_thread(self._first_lines, sha256, count, keep)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                raise ObjectNotFound(sha256) from exc
            raise

    async def presigned_url(self, sha256: str, *, expires: timedelta = timedelta(hours=1)) -> str:
        """A time-limited URL anyone holding it can download the object from."""
        return await asyncio.to_thread(self.client.presigned_get_object, self.bucket, key_for(sha256), expires)

    # -- named objects -------------------------------------------------------------------------------------------
    # Layouts other tools read by path (the monitoring record store's hive-partitioned Parquet files) need keys of
    # their own. They live beside the content-addressed area and never inside it.

    def _named(self, key: str) -> str:
        if not key or key.startswith(("sha256/", INCOMING, "/")) or ".." in key.split("/"):
            raise ValueError(f"not a key for a named object: {key!r}")
        return key

    async def put_named(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store small ``data`` whole under ``key`` (replacing what was there)."""
        from io import BytesIO

        await asyncio.to_thread(
            self.client.put_object, self.bucket, self._named(key), BytesIO(data), len(data), content_type
        )

    async def get_named(self, key: str) -> bytes:
        def read() -> bytes:
            response = self.client.get_object(self.bucket, self._named(key))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        try:
            return await asyncio.to_thread(read)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                raise ObjectNotFound(key) from exc
            raise

    async def copy_named(self, source: str, destination: str) -> None:
        """Copy ``source`` to ``destination`` inside the store (server side)."""
        from minio.commonconfig import CopySource

        await asyncio.to_thread(
            self.client.copy_object,
            self.bucket,
            self._named(destination),
            CopySource(self.bucket, self._named(source)),
        )

    async def remove_named(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        await asyncio.to_thread(self.client.remove_object, self.bucket, self._named(key))

    async def list_named(self, prefix: str) -> list[tuple[str, int, object]]:
        """(key, size, last modified) of every object under ``prefix``."""

        def listing() -> list[tuple[str, int, object]]:
            return [
                (o.object_name, o.size or 0, o.last_modified)
                for o in self.client.list_objects(self.bucket, prefix=self._named(prefix), recursive=True)
            ]

        return await asyncio.to_thread(listing)
