"""An upload read while it is still being spooled to disk, so that cleaning it overlaps receiving it.

The spooled file is the buffer between the two: the request is never slowed by the reader (nothing waits on the
event loop), and a reader that falls behind holds no more memory, only more of the file in the page cache.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import BinaryIO


class UploadAborted(Exception):
    """The upload stopped before its end (refused, or the client went away)."""


class ArrivingFile(io.RawIOBase):
    """The bytes of ``path`` as its writer reports them written: a read past them waits for more, until the writer
    calls :meth:`end` (the rest of the file is read, then its end) or :meth:`abort` (reads raise
    :class:`UploadAborted`). The writer's methods never block."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._file: BinaryIO | None = None  # opened at the first read: the writer creates the file
        self._written = self._read = 0
        self._ended = self._aborted = False
        self._changed = threading.Condition()

    # -- the writer's side: the event loop, as chunks land in the file ---------------------------------------------
    def wrote(self, chunk: bytes) -> None:
        """``chunk`` is now in the file (flushed)."""
        with self._changed:
            self._written += len(chunk)
            self._changed.notify()

    def end(self) -> None:
        """The file is complete."""
        with self._changed:
            self._ended = True
            self._changed.notify()

    def abort(self) -> None:
        """The file will not be completed: the reader stops with :class:`UploadAborted`."""
        with self._changed:
            self._aborted = True
            self._changed.notify()

    # -- the reader's side -----------------------------------------------------------------------------------------
    def reader(self, buffer_size: int = 1024 * 1024) -> io.BufferedReader:
        """A buffered reader of the arriving bytes (lines can be iterated)."""
        return io.BufferedReader(self, buffer_size)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with self._changed:
            while self._written == self._read and not (self._ended or self._aborted):
                self._changed.wait()
            if self._aborted:
                raise UploadAborted("the upload stopped before its end")
            available = self._written - self._read
        if available == 0:
            return 0  # ended: the end of the file
        if self._file is None:
            self._file = self._path.open("rb")
        count = self._file.readinto(memoryview(buffer)[: min(len(buffer), available)])
        self._read += count
        return count

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        super().close()
