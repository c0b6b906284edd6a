"""Object storage over the S3 API (the ``minio`` SDK as a generic S3 client): SeaweedFS locally, MinIO or AWS S3
by configuration.

Objects are content-addressed and immutable: the key is the sha256 of the bytes (``sha256/ab/abcd...``), so storing
the same bytes twice stores them once. Uploads and downloads are streamed in parts; nothing is held whole in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from minio import Minio
from minio.commonconfig import ComposeSource
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

    def writer(
        self, *, content_type: str = "application/octet-stream", part_size: int = WRITER_PART_SIZE
    ) -> ObjectWriter:
        """A file-like :class:`ObjectWriter` whose bytes are uploaded while they are written (blocking: write from a
        thread), then stored under their sha256 by :meth:`ObjectWriter.commit`."""
        return ObjectWriter(self, content_type=content_type, part_size=part_size)

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


class ObjectWriter:
    """Bytes uploaded as they are written, stored under their sha256 once complete: for content whose hash is known
    only at its end (a dataset cleaned as it arrives), with no second pass over it.

    Until a part is full the bytes stay in memory, and :meth:`commit` stores them directly under their hash. Past it,
    a thread uploads them in parts (multipart, one part in flight; a writer ahead of the upload waits) to a temporary
    key under :data:`INCOMING`; :meth:`commit` then copies that object to its content address server-side (no copy
    when the content is already stored) and deletes it. :meth:`abort`, or leaving a ``with`` block without a commit,
    stores nothing. Methods block: call them from threads. One thread writes; :meth:`abort` may come from another.
    """

    def __init__(self, store: ObjectStore, *, content_type: str, part_size: int = WRITER_PART_SIZE) -> None:
        self._store, self._content_type, self._part_size = store, content_type, part_size
        self._head = bytearray()  # the bytes written before the upload starts
        self._pipe: _Pipe | None = None
        self._upload: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.temporary_key = f"{INCOMING}{uuid.uuid4().hex}"  # where the parts go until the hash is known
        self._state = threading.Lock()  # abort() may race the writing thread starting the upload
        self._aborted = self._sealed = False
        self._head_digest: str | None = None
        self.stored: StoredObject | None = None

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        with self._state:
            if self._aborted or self._sealed or self.stored is not None:
                raise WriteAborted("the writer is closed")
            pipe = self._pipe
            if pipe is None:
                self._head += data
                if len(self._head) > self._part_size:
                    self._start_upload()
                return len(data)
        pipe.put(bytes(data))  # outside the lock: it waits while the upload is behind
        return len(data)

    def _start_upload(self) -> None:
        self._pipe = _Pipe(limit=self._part_size + 1)  # the SDK reads a part and one byte: one part waits at most
        self._pipe.put(bytes(self._head))
        self._head = bytearray()
        self._upload = threading.Thread(target=self._run_upload, args=(self._pipe,), name="object-writer", daemon=True)
        self._upload.start()

    def _run_upload(self, pipe: _Pipe) -> None:
        try:
            # length -1: the SDK reads part after part until the end, then completes (or aborts when a read fails)
            self._store.client.put_object(
                self._store.bucket,
                self.temporary_key,
                pipe,
                length=-1,
                part_size=self._part_size,
                content_type=self._content_type,
                num_parallel_uploads=1,  # one part in flight: the SDK's task queue is unbounded
            )
        except BaseException as exc:
            self._failure = exc
            pipe.fail()

    def hexdigest(self) -> str:
        """The sha256 of what was written, once all of it is uploaded (the writer takes no more bytes; then
        :meth:`commit` or :meth:`abort`): for a caller that needs the hash before deciding to store."""
        with self._state:
            if self._aborted:
                raise WriteAborted("the writer was aborted")
            self._sealed = True
            pipe, head = self._pipe, self._head
        if pipe is None:
            if self._head_digest is None:
                self._head_digest = hashlib.sha256(head).hexdigest()
            return self._head_digest
        self._finish_upload(pipe)
        return pipe.digest.hexdigest()

    def _finish_upload(self, pipe: _Pipe) -> None:
        assert self._upload is not None
        pipe.close()
        self._upload.join()
        if self._failure is not None:
            raise WriteAborted(f"the upload failed: {self._failure!r}") from self._failure

    def commit(self) -> StoredObject:
        """Store what was written under its sha256 (once) and return where it lives; on an error nothing is left."""
        with self._state:
            if self.stored is not None:
                return self.stored
            if self._aborted:
                raise WriteAborted("the writer was aborted")
            pipe, head = self._pipe, self._head
        try:
            self.stored = self._store_head(bytes(head)) if pipe is None else self._store_upload(pipe)
        except BaseException:
            self.abort()
            raise
        return self.stored

    def _store_head(self, data: bytes) -> StoredObject:
        return self._store._put_stream([data], self._content_type)  # under a part: stored like any small object

    def _store_upload(self, pipe: _Pipe) -> StoredObject:
        self._finish_upload(pipe)
        sha256 = pipe.digest.hexdigest()
        stored = StoredObject(self._store.bucket, key_for(sha256), sha256, pipe.size)
        try:
            if not self._store._exists(sha256):
                # a server-side copy; compose_object also copies past the 5 GiB limit of a single copy
                metadata = {"Content-Type": self._content_type, "sha256": sha256}
                source = ComposeSource(stored.bucket, self.temporary_key)
                self._store.client.compose_object(stored.bucket, stored.key, [source], metadata=metadata)
                log.info("storage.object_stored", key=stored.key, size=stored.size)
        finally:
            self._store.client.remove_object(stored.bucket, self.temporary_key)
        return stored

    def abort(self) -> None:
        """Store nothing: stop the upload and delete what it sent. Idempotent; a no-op once committed."""
        with self._state:
            if self._aborted or self.stored is not None:
                return
            self._aborted = True
            self._head = bytearray()
            pipe = self._pipe
        if pipe is None:
            return
        pipe.fail()
        assert self._upload is not None
        self._upload.join()  # the SDK aborts the multipart upload when a read fails
        try:
            self._store.client.remove_object(self._store.bucket, self.temporary_key)  # in case it had completed
        except Exception:  # an abort runs on error paths: it must not replace their error
            log.warning("storage.temporary_object_left", key=self.temporary_key, exc_info=True)


class _Pipe:
    """Bytes passed from a writing thread to the SDK's uploading thread, which reads them like a file, hashing them;
    at most about ``limit`` bytes are held (a writer ahead of the upload waits)."""

    def __init__(self, limit: int) -> None:
        self._chunks: deque[memoryview] = deque()
        self._held, self._limit = 0, limit
        self._closed = self._failed = False
        self._changed = threading.Condition()
        self.digest, self.size = hashlib.sha256(), 0

    def put(self, data: bytes) -> None:
        with self._changed:
            while self._held >= self._limit and not self._failed:
                self._changed.wait()
            if self._failed:
                raise WriteAborted("the upload stopped")
            self._chunks.append(memoryview(data))
            self._held += len(data)
            self._changed.notify_all()

    def close(self) -> None:
        """No more bytes: reads return the rest, then the end."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def fail(self) -> None:
        """Stop both sides: reads and writes raise."""
        with self._changed:
            self._failed = True
            self._chunks.clear()
            self._changed.notify_all()

    def read(self, size: int = -1) -> bytes:
        """``size`` bytes (all the rest when negative), fewer only at the end; waits for the writer."""
        with self._changed:
            while (size < 0 or self._held < size) and not (self._closed or self._failed):
                self._changed.wait()
            if self._failed:
                raise WriteAborted("the write was aborted")
            wanted = self._held if size < 0 else min(size, self._held)
            pieces, left = [], wanted
            while left:
                chunk = self._chunks[0]
                if len(chunk) <= left:
                    pieces.append(self._chunks.popleft())
                    left -= len(chunk)
                else:
                    pieces.append(chunk[:left])
                    self._chunks[0] = chunk[left:]
                    left = 0
            self._held -= wanted
            self._changed.notify_all()
        data = b"".join(pieces)
        self.digest.update(data)
        self.size += len(data)
        return data
