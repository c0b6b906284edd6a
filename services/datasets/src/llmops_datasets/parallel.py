"""JSONL ingest on several cores: the file is cut into blocks at line ends, worker processes clean blocks, and a merge
puts the parts together in the file's order, exactly as one pass over the whole file would have.

A worker cleans one block as :func:`~llmops_datasets.ingest.ingest` would (validation, normalisation, filters,
de-duplication within the block, stats) and writes a part file and the digest of each row it kept, in order. The
merge drops the rows whose digest an earlier block already kept (first occurrence wins, as in one pass), sums the
reports, and concatenates the parts into the canonical file (or upload) while hashing it, block by block as the
workers finish them. Blocks can be cut while an upload is still arriving (:class:`Blocks` is fed chunk by chunk), so
cleaning overlaps receiving.

Workers are plain subprocesses (``python -m llmops_datasets.ingest_worker``, see :mod:`llmops_datasets.ingest_worker`)
rather than a multiprocessing pool: a spawned pool re-imports the parent's ``__main__`` (the whole web service) in
every worker.
They are started once, by an :class:`IngestPool` the service holds, and serve every upload.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from llmops.logging import get_logger
from llmops_datasets.formats import Format, NotUtf8
from llmops_datasets.ingest import CleaningConfig, Output
from llmops_datasets.merge import Merge
from llmops_datasets.report import IngestResult
from llmops_schemas.splits import SplitConfig

log = get_logger(__name__)

BLOCK_BYTES = 4 * 1024 * 1024  # enough rows per block to amortise a round trip, few enough to start the merge early


class Blocks:
    """Cuts a stream of bytes into blocks that end at a line end, at least ``size`` bytes each (the last may be
    shorter), and hands each to ``submit(start, end, first_line)`` as soon as it is complete."""

    def __init__(self, submit: Callable[[int, int, int], None], size: int = BLOCK_BYTES) -> None:
        self.submit, self.size = submit, size
        self.start, self.first_line, self.offset, self.lines = 0, 1, 0, 0
        self.cut = 0  # blocks submitted

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the stream (already written where the workers read)."""
        newlines = chunk.count(b"\n")
        chunk_start, self.offset = self.offset, self.offset + len(chunk)
        if newlines and self.offset - self.start >= self.size:
            end = chunk_start + chunk.rfind(b"\n") + 1
            if end - self.start >= self.size:
                self._submit(end, self.lines + newlines + 1)
        self.lines += newlines

    def close(self) -> None:
        """The end of the stream: the rest is the last block."""
        if self.offset > self.start:
            self._submit(self.offset, self.first_line)

    def _submit(self, end: int, next_first_line: int) -> None:
        self.submit(self.start, end, self.first_line)
        self.start, self.first_line, self.cut = end, next_first_line, self.cut + 1


class WorkerFailed(RuntimeError):
    """An ingest worker could not clean a block (its error, or its end, is in the message)."""


class IngestPool:
    """Worker processes cleaning JSONL blocks for any number of ingests: started once (with the service) and reused,
    since starting one costs about 0.7 s of CPU (Python, pydantic and the formats imported), more than cleaning a
    block. Whichever worker is free takes the next block; the ingests waiting take turns, a block each (a small
    upload is not queued behind every block of a large one), and each one's blocks go in the order submitted. A
    worker that dies fails its block and is started again for the next one."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("an ingest pool needs at least one worker")
        # The blocks waiting, by ingest, in the order the ingests take their turns.
        self._waiting: OrderedDict[object, deque[tuple[dict[str, Any], Future]]] = OrderedDict()
        self._changed = threading.Condition()
        self._closed = False
        self._logs: list[BinaryIO | None] = [None] * workers
        # Started at once (each imports in the background), so that the first upload finds them ready.
        self.processes: list[subprocess.Popen] = []
        for n in range(workers):
            self.processes.append(self._start(n))
        self._threads = [
            threading.Thread(target=self._serve, args=(n,), name=f"ingest-worker-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: dict[str, Any], owner: object = None) -> Future:
        """Clean one block (see :func:`llmops_datasets.ingest_worker.clean_block`) for ``owner`` (an ingest: its
        blocks take turns with other owners'); the future holds the worker's reply."""
        future: Future = Future()
        with self._changed:
            if self._closed:
                raise RuntimeError("the ingest pool is closed")
            self._waiting.setdefault(owner, deque()).append((task, future))
            self._changed.notify()
        return future

    def _next(self) -> tuple[dict[str, Any], Future] | None:
        """The next block to clean (the first owner's, who then goes last), or None once closed and drained."""
        with self._changed:
            while not self._waiting and not self._closed:
                self._changed.wait()
            if not self._waiting:
                return None
            owner, blocks = next(iter(self._waiting.items()))
            block = blocks.popleft()
            if blocks:
                self._waiting.move_to_end(owner)
            else:
                del self._waiting[owner]
            return block

    def close(self, timeout: float = 60) -> None:
        """Stop the workers once the blocks already submitted are done; a worker still busy after ``timeout``
        seconds is killed (its block fails)."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        deadline = time.monotonic() + timeout
        for n, thread in enumerate(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.processes[n].kill()
                thread.join()

    def __enter__(self) -> IngestPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _serve(self, n: int) -> None:
        process = self.processes[n]
        try:
            while (item := self._next()) is not None:
                task, future = item
                if not future.set_running_or_notify_cancel():
                    continue  # its ingest was abandoned
                if process.poll() is not None:
                    log.warning("datasets.ingest_worker.restarted", worker=n, ended=_ended(process.returncode))
                    process = self._start(n)
                try:
                    future.set_result(self._ask(process, task, n))
                except BaseException as exc:
                    future.set_exception(exc)
        finally:
            _stop(process)
            if self._logs[n] is not None:
                self._logs[n].close()

    def _start(self, n: int) -> subprocess.Popen:
        log = self._logs[n]
        if log is not None:
            log.close()
        log = self._logs[n] = tempfile.TemporaryFile()  # noqa: SIM115 (a worker's stderr, read back when it dies)
        command = [sys.executable, "-m", "llmops_datasets.ingest_worker"]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        if n < len(self.processes):
            self.processes[n] = process
        return process

    def _ask(self, process: subprocess.Popen, task: dict[str, Any], n: int) -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(orjson.dumps(task) + b"\n")
            process.stdin.flush()
            reply = process.stdout.readline()
        except OSError:
            reply = b""
        if not reply:
            process.kill()
            process.wait()
            raise WorkerFailed(f"ingest worker {n} stopped: {_ended(process.returncode)}; {self._stderr(n)}")
        answer = orjson.loads(reply)
        if "not_utf8" in answer:  # the block's bytes refuse the upload (422), not the worker (503)
            raise NotUtf8(*answer["not_utf8"])
        if "error" in answer:
            raise WorkerFailed(f"ingest worker {n} failed on a block: {answer['error']}")
        return answer

    def _stderr(self, n: int) -> str:
        log = self._logs[n]
        if log is None:
            return ""
        log.seek(0)
        return log.read()[-2000:].decode(errors="replace")


def _ended(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


def _stop(process: subprocess.Popen) -> None:
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


class ParallelIngest:
    """The blocks of one JSONL file cleaned by a pool's workers, and the merge of their parts."""

    def __init__(
        self,
        source: Path,
        row_format: Format,
        workdir: Path,
        *,
        cleaning: CleaningConfig,
        split: SplitConfig,
        pool: IngestPool,
        out: Output | None = None,
    ) -> None:
        self.workdir, self.pool = workdir, pool
        self.config = {
            "source": str(source),
            "format": row_format.value,
            "cleaning": cleaning.model_dump(mode="json"),
            "split": split.model_dump(),
        }
        self.results: list[Future] = []
        # The merge follows the workers block by block, so the canonical file (or upload) grows while they work.
        self.merge = Merge(row_format, cleaning, split, workdir, out)
        self.merging: queue.Queue[Future | None] = queue.Queue()
        self.merge_failure: BaseException | None = None
        self.merger = threading.Thread(target=self._merge_in_order, name="ingest-merge", daemon=True)
        self.merger.start()

    def submit(self, start: int, end: int, first_line: int) -> None:
        """Queue the block [start, end) of the source, whose first line has the number ``first_line``."""
        part = str(self.workdir / f"part-{len(self.results):05d}")
        block = {"start": start, "end": end, "first_line": first_line, "part": part}
        future = self.pool.submit(self.config | block, owner=self)
        self.results.append(future)
        self.merging.put(future)

    def _merge_in_order(self) -> None:
        try:
            while (future := self.merging.get()) is not None:
                self.merge.add(future.result())
        except BaseException as exc:  # finish() re-raises it
            self.merge_failure = exc

    def finish(self) -> IngestResult:
        """Wait for every block to be cleaned and merged, in order, into the canonical file."""
        self.merging.put(None)
        self.merger.join()
        self.close()
        if self.merge_failure is not None:
            raise self.merge_failure
        return self.merge.result()

    def close(self) -> None:
        """Abandon what is left (after :meth:`finish`, a no-op): blocks not started are dropped, blocks being cleaned
        are waited for (they write in the work directory), and the merge stops (a merge waiting to write to an
        ``out`` that no longer reads is not waited for)."""
        for future in self.results:
            future.cancel()  # only those not started
        wait(self.results, timeout=60)
        self.merging.put(None)
        self.merger.join(5)
        self.merge.close()


class StreamedIngest:
    """The parallel ingest of a JSONL file fed to it as it is written (an upload arriving): blocks go to the workers
    of ``pool`` as soon as they are cut (without a pool, ``workers`` processes of its own, started with the first
    block and stopped at the end). A file smaller than a block uses none (``started`` is then False and the caller
    cleans it in-process)."""

    def __init__(
        self,
        source: Path,
        row_format: Format,
        workdir: Path,
        *,
        cleaning: CleaningConfig,
        split: SplitConfig,
        pool: IngestPool | None = None,
        workers: int = 2,
        block_bytes: int | None = None,
        out: Output | None = None,
    ) -> None:
        self.pool, self._own_pool = pool, None
        self._start = lambda pool: ParallelIngest(
            source, row_format, workdir, cleaning=cleaning, split=split, pool=pool, out=out
        )
        self.workers = workers
        self.job: ParallelIngest | None = None
        self.blocks = Blocks(self._submit, block_bytes or BLOCK_BYTES)

    @property
    def started(self) -> bool:
        return self.job is not None

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the file, once written to it."""
        self.blocks.feed(chunk)

    def _submit(self, start: int, end: int, first_line: int) -> None:
        if self.job is None:
            pool = self.pool
            if pool is None:
                pool = self._own_pool = IngestPool(self.workers)
            self.job = self._start(pool)
        self.job.submit(start, end, first_line)

    def finish(self) -> IngestResult:
        """The whole file was fed: clean the rest and merge."""
        self.blocks.close()
        assert self.job is not None
        try:
            return self.job.finish()
        finally:
            self._close_own_pool()

    def __enter__(self) -> StreamedIngest:
        return self

    def __exit__(self, *exc) -> None:
        if self.job is not None:
            self.job.close()
        self._close_own_pool()

    def _close_own_pool(self) -> None:
        if self._own_pool is not None:
            self._own_pool.close()
