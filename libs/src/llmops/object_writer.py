"""Bytes uploaded to the object store while they are written, stored under their sha256 once complete."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import deque

from minio.commonconfig import ComposeSource

from llmops.logging import get_logger
from llmops.storage import INCOMING, WRITER_PART_SIZE, ObjectStore, StoredObject, WriteAborted, key_for

log = get_logger(__name__)


class ObjectWriter:
    """Bytes uploaded as they are written, stored under their sha256 once complete: for content whose hash is known
    only at its end (a dataset cleaned as it arrives), with no second pass over it.

    Until a part is full the bytes stay in memory, and :meth:`commit` stores them directly under their hash. Past it,
    a thread uploads them in parts (multipart, one part in flight; a writer ahead of the upload waits) to a temporary
    key under :data:`INCOMING`; :meth:`commit` then copies that object to its content address server-side (no copy
    when the content is already stored) and deletes it. :meth:`abort`, or leaving a ``with`` block without a commit,
    stores nothing. Methods block: call them from threads. One thread writes; :meth:`abort` may come from another.
    """

    def __init__(
        self, store: ObjectStore, *, content_type: str = "application/octet-stream", part_size: int = WRITER_PART_SIZE
    ) -> None:
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
