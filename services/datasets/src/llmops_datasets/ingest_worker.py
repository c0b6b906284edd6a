"""An ingest worker: a process of an :class:`~llmops_datasets.parallel.IngestPool` that cleans JSONL blocks.

Run as ``python -m llmops_datasets.ingest_worker``; it reads one block a line on stdin (the block and its ingest's
configuration, JSON) and answers one JSON line each. It imports only what cleaning needs (not the merge's numpy, nor
the web service), since every worker holds its imports for the life of the service.
"""

from __future__ import annotations

import io
import signal
import sys
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from llmops_datasets.formats import Format, NotUtf8
from llmops_datasets.ingest import Cleaner, CleaningConfig, jsonl_rows
from llmops_schemas.splits import SplitConfig

READ = 1024 * 1024


class _Slice(io.RawIOBase):
    """``length`` bytes of ``handle`` from where it stands, read as a file of their own."""

    def __init__(self, handle: BinaryIO, length: int) -> None:
        super().__init__()
        self._handle, self._left = handle, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        count = self._handle.readinto(memoryview(buffer)[: min(len(buffer), self._left)])
        self._left -= count
        return count


def clean_block(source: Path, block: dict[str, Any], row_format: Format, cleaner: Cleaner) -> dict[str, Any]:
    """Clean the block [start, end) of ``source`` into ``part``.jsonl and ``part``.digests (in row order)."""
    kept: list[bytes] = []
    with source.open("rb", buffering=0) as handle, Path(block["part"] + ".jsonl").open("wb") as out:
        handle.seek(block["start"])
        lines = io.BufferedReader(_Slice(handle, block["end"] - block["start"]), READ)
        rows = jsonl_rows(lines, block["first_line"], row_format, cleaner.report, cleaner.errors)
        cleaner.clean(rows, out, kept=kept)
    Path(block["part"] + ".digests").write_bytes(b"".join(kept))
    return {
        "part": block["part"],
        "report": vars(cleaner.report),
        "stats": vars(cleaner.stats),
        "split_counts": cleaner.split_counts,
        "errors": [e.as_dict() for e in cleaner.errors],
    }


def clean_task(task: dict[str, Any]) -> dict[str, Any]:
    """One block of a pool's work: the block and the configuration of its ingest."""
    row_format = Format(task["format"])
    cleaning, split = CleaningConfig.model_validate(task["cleaning"]), SplitConfig(**task["split"])
    return clean_block(Path(task["source"]), task, row_format, Cleaner(row_format, cleaning, split))


def main() -> None:
    """A worker: cleans the blocks named on stdin (one JSON object a line), replying one JSON line each (the reply
    of :func:`clean_block`, ``{"not_utf8": [line, problem]}`` for a block that is not UTF-8 (see
    :class:`~llmops_datasets.formats.NotUtf8`), or ``{"error": ...}``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service stops its workers (Ctrl-C reaches the whole group)
    for line in sys.stdin.buffer:
        try:
            reply = clean_task(orjson.loads(line))
        except NotUtf8 as exc:  # the upload is refused: the worker did its job
            reply = {"not_utf8": [exc.line, exc.problem]}
        except Exception as exc:  # the block fails, the worker goes on
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.buffer.write(orjson.dumps(reply, option=orjson.OPT_NON_STR_KEYS) + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
