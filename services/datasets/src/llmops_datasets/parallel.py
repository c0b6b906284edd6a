"""JSONL ingest on several cores: the file is cut into blocks at line ends, worker processes clean blocks, and a merge
puts the parts together in the file's order, exactly as one pass over the whole file would have.

A worker cleans one block as :func:`~llmops_datasets.ingest.ingest` would (validation, normalisation, filters,
de-duplication within the block, stats) and writes a part file and the digest of each row it kept, in order. The
merge drops the rows whose digest an earlier block already kept (first occurrence wins, as in one pass), sums the
reports, and concatenates the parts into the canonical file (or upload) while hashing it, block by block as the
workers finish them. Blocks can be cut while an upload is still arriving (:class:`Blocks` is fed chunk by chunk), so
cleaning overlaps receiving.

Workers are plain subprocesses (``python -m llmops_datasets.parallel``) rather than a multiprocessing pool: a
spawned pool re-imports the parent's ``__main__`` (the whole web service) in every worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

import orjson

from llmops_datasets.formats import Format, RowError
from llmops_datasets.ingest import (
    CHARS,
    MAX_REPORTED_ERRORS,
    Cleaner,
    Cleaning,
    CleaningConfig,
    IngestResult,
    Output,
    Stats,
    jsonl_rows,
    write_digests,
)
from llmops_schemas.splits import DIGEST, SplitConfig

BLOCK_BYTES = 16 * 1024 * 1024  # enough rows per block to amortise a round trip, few enough to spread the work
COPY = 1024 * 1024


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


class ParallelIngest:
    """Worker processes cleaning the blocks of one JSONL file, and the merge of their parts."""

    def __init__(
        self,
        source: Path,
        row_format: Format,
        workdir: Path,
        *,
        cleaning: CleaningConfig,
        split: SplitConfig,
        workers: int,
        out: Output | None = None,
    ) -> None:
        self.source, self.row_format, self.workdir, self.out = source, row_format, workdir, out
        self.cleaning, self.split = cleaning, split
        self.tasks: queue.Queue[tuple[int, dict, Future] | None] = queue.Queue()
        self.results: list[Future] = []
        # The merge follows the workers block by block, so the canonical file (or upload) grows while they work.
        self.merge = _Merge(row_format, cleaning, split, workdir, out)
        self.merging: queue.Queue[Future | None] = queue.Queue()
        self.merge_failure: BaseException | None = None
        self.merger = threading.Thread(target=self._merge_in_order, name="ingest-merge", daemon=True)
        self.merger.start()
        config = orjson.dumps(
            {
                "source": str(source),
                "format": row_format.value,
                "cleaning": cleaning.model_dump(mode="json"),
                "split": split.model_dump(),
            }
        ).decode()
        self.processes: list[subprocess.Popen] = []
        self.threads: list[threading.Thread] = []
        for n in range(workers):
            errors = (workdir / f"worker-{n}.log").open("wb")
            process = subprocess.Popen(
                [sys.executable, "-m", "llmops_datasets.parallel", config],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
            errors.close()
            self.processes.append(process)
            thread = threading.Thread(target=self._feed, args=(process, n), daemon=True)
            thread.start()
            self.threads.append(thread)

    def submit(self, start: int, end: int, first_line: int) -> None:
        """Queue the block [start, end) of the source, whose first line has the number ``first_line``."""
        index = len(self.results)
        future: Future = Future()
        self.results.append(future)
        part = str(self.workdir / f"part-{index:05d}")
        self.tasks.put((index, {"start": start, "end": end, "first_line": first_line, "part": part}, future))
        self.merging.put(future)

    def _merge_in_order(self) -> None:
        try:
            while (future := self.merging.get()) is not None:
                self.merge.add(future.result())
        except BaseException as exc:  # finish() re-raises it
            self.merge_failure = exc

    def _feed(self, process: subprocess.Popen, n: int) -> None:
        assert process.stdin is not None and process.stdout is not None
        while (task := self.tasks.get()) is not None:
            _, block, future = task
            try:
                process.stdin.write(orjson.dumps(block) + b"\n")
                process.stdin.flush()
                reply = process.stdout.readline()
                if not reply:
                    log = (self.workdir / f"worker-{n}.log").read_text(errors="replace")
                    raise RuntimeError(f"ingest worker {n} stopped: {log[-2000:]}")
                future.set_result(orjson.loads(reply))
            except BaseException as exc:  # the merge re-raises it
                future.set_exception(exc)
                return

    def finish(self) -> IngestResult:
        """Wait for every block to be cleaned and merged, in order, into the canonical file."""
        for _ in self.threads:
            self.tasks.put(None)
        self.merging.put(None)
        self.merger.join()
        self.close()
        if self.merge_failure is not None:
            raise self.merge_failure
        return self.merge.result()

    def close(self) -> None:
        """Stop the workers and the merge (after :meth:`finish`, or to abandon the ingest: a merge waiting to write
        to an ``out`` that no longer reads is not waited for)."""
        for _ in self.threads:
            self.tasks.put(None)
        for process in self.processes:
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
        for future in self.results:
            with contextlib.suppress(InvalidStateError):  # done meanwhile
                future.set_exception(RuntimeError("the ingest was abandoned"))
        self.merging.put(None)
        self.merger.join(5)
        self.merge.close()


class StreamedIngest:
    """The parallel ingest of a JSONL file fed to it as it is written (an upload arriving): blocks go to the workers
    as soon as they are cut. Workers start with the first block; a file smaller than a block starts none (``started``
    is then False and the caller cleans it in-process)."""

    def __init__(
        self,
        source: Path,
        row_format: Format,
        workdir: Path,
        *,
        cleaning: CleaningConfig,
        split: SplitConfig,
        workers: int,
        block_bytes: int = BLOCK_BYTES,
        out: Output | None = None,
    ) -> None:
        self._start = lambda: ParallelIngest(
            source, row_format, workdir, cleaning=cleaning, split=split, workers=workers, out=out
        )
        self.job: ParallelIngest | None = None
        self.blocks = Blocks(self._submit, block_bytes)

    @property
    def started(self) -> bool:
        return self.job is not None

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the file, once written to it."""
        self.blocks.feed(chunk)

    def _submit(self, start: int, end: int, first_line: int) -> None:
        if self.job is None:
            self.job = self._start()
        self.job.submit(start, end, first_line)

    def finish(self) -> IngestResult:
        """The whole file was fed: clean the rest and merge."""
        self.blocks.close()
        assert self.job is not None
        return self.job.finish()

    def __enter__(self) -> StreamedIngest:
        return self

    def __exit__(self, *exc) -> None:
        if self.job is not None:
            self.job.close()


class _Merge:
    def __init__(
        self, row_format: Format, cleaning: CleaningConfig, split: SplitConfig, workdir: Path, out: Output | None
    ) -> None:
        self.row_format, self.cleaning, self.split = row_format, cleaning, split
        self.report, self.stats, self.errors = Cleaning(), Stats(), []
        self.split_counts: Counter = Counter()
        self.seen: set[bytes] = set()
        self.content = hashlib.sha256()
        self.size = 0
        self.hashes = workdir / "row_hashes.bin"
        self.cleaned = workdir / "cleaned.jsonl" if out is None else None
        self.out = self.cleaned.open("wb") if self.cleaned is not None else out

    def close(self) -> None:
        if self.cleaned is not None:
            self.out.close()

    def add(self, block: dict[str, Any]) -> None:
        part, digests_path = Path(block["part"] + ".jsonl"), Path(block["part"] + ".digests")
        data = digests_path.read_bytes()
        digests = [data[i : i + DIGEST] for i in range(0, len(data), DIGEST)]
        report, stats = block_report(block)
        self.report.merge(report)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.extend(RowError(**e) for e in block["errors"])
        if not self.cleaning.dedupe or self.seen.isdisjoint(digests):
            self.seen.update(digests)
            self.stats.merge(stats)
            self.split_counts.update(block["split_counts"])
            with part.open("rb") as handle:
                while chunk := handle.read(COPY):
                    self._write(chunk)
        else:
            self._add_dropping_seen(part, digests)
        part.unlink()
        digests_path.unlink()

    def _add_dropping_seen(self, part: Path, digests: list[bytes]) -> None:
        """A block holding rows an earlier block kept: keep only the others, and describe those again."""
        chars_of, seen = CHARS[self.row_format], self.seen
        with part.open("rb") as handle:
            for line, digest in zip(handle, digests, strict=True):
                if digest in seen:
                    self.report.duplicates_removed += 1
                    continue
                seen.add(digest)
                row = orjson.loads(line)
                self.stats.add(row, self.row_format, chars_of(row))
                self.split_counts[self.split.split_of(digest)] += 1
                self._write(line)

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.content.update(data)
        self.size += len(data)

    def result(self) -> IngestResult:
        write_digests(self.hashes, self.seen)
        cleaner = Cleaner(self.row_format, self.cleaning, self.split)
        cleaner.report, cleaner.stats, cleaner.errors = self.report, self.stats, self.errors[:MAX_REPORTED_ERRORS]
        cleaner.split_counts, cleaner.size = self.split_counts, self.size
        return cleaner.result(self.cleaned, self.content.hexdigest(), self.hashes)


def block_report(block: dict[str, Any]) -> tuple[Cleaning, Stats]:
    """A worker's report and stats of one block, from its reply."""
    report = Cleaning(**(block["report"] | {"pii": Counter(block["report"]["pii"])}))
    stats = Stats(
        **(block["stats"] | {"labels": Counter(block["stats"]["labels"]), "roles": Counter(block["stats"]["roles"])})
    )
    return report, stats


def clean_block(source: Path, block: dict[str, Any], row_format: Format, cleaner: Cleaner) -> dict[str, Any]:
    """Clean the block [start, end) of ``source`` into ``part``.jsonl and ``part``.digests (in row order)."""
    with source.open("rb") as handle:
        handle.seek(block["start"])
        data = handle.read(block["end"] - block["start"])
    kept: list[bytes] = []
    rows = jsonl_rows(io.BytesIO(data), block["first_line"], row_format, cleaner.report, cleaner.errors)
    with Path(block["part"] + ".jsonl").open("wb") as out:
        cleaner.clean(rows, out, kept=kept)
    Path(block["part"] + ".digests").write_bytes(b"".join(kept))
    return {
        "part": block["part"],
        "report": vars(cleaner.report),
        "stats": vars(cleaner.stats),
        "split_counts": cleaner.split_counts,
        "errors": [e.as_dict() for e in cleaner.errors],
    }


def main() -> None:
    """A worker: cleans the blocks named on stdin (one JSON object a line), replying one JSON line each."""
    config = orjson.loads(sys.argv[1])
    source, row_format = Path(config["source"]), Format(config["format"])
    cleaning, split = CleaningConfig.model_validate(config["cleaning"]), SplitConfig(**config["split"])
    for line in sys.stdin.buffer:
        cleaner = Cleaner(row_format, cleaning, split)
        reply = clean_block(source, orjson.loads(line), row_format, cleaner)
        sys.stdout.buffer.write(orjson.dumps(reply, option=orjson.OPT_NON_STR_KEYS) + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
