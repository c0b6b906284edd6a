"""The merge of a parallel ingest: the parts the workers cleaned, block by block, into one canonical file, exactly as
one pass over the whole file would have written it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from llmops_datasets.digest_set import DigestSet
from llmops_datasets.formats import Format, RowError
from llmops_datasets.ingest import (
    CHARS,
    MAX_REPORTED_ERRORS,
    Cleaner,
    CleaningConfig,
    Output,
    content_digest,
    content_hash,
)
from llmops_datasets.report import Cleaning, IngestResult, Stats
from llmops_schemas.splits import DIGEST, SplitConfig

COPY = 1024 * 1024  # bytes of a part copied at once


class Merge:
    """The cleaned blocks of one file put together in order: rows an earlier block kept are dropped (first occurrence
    wins, as in one pass), reports and stats summed, parts copied into the canonical file (or ``out``) and hashed."""

    def __init__(
        self, row_format: Format, cleaning: CleaningConfig, split: SplitConfig, workdir: Path, out: Output | None
    ) -> None:
        self.row_format, self.cleaning, self.split = row_format, cleaning, split
        self.report, self.stats, self.errors = Cleaning(), Stats(), []
        self.split_counts: Counter = Counter()
        self.seen, self.content, self.size = DigestSet(), content_hash(out), 0
        self.hashes = workdir / "row_hashes.bin"
        self.cleaned = workdir / "cleaned.jsonl" if out is None else None
        self.out = self.cleaned.open("wb") if self.cleaned is not None else out

    def close(self) -> None:
        if self.cleaned is not None:
            self.out.close()

    def add(self, block: dict[str, Any]) -> None:
        part, digests_path = Path(block["part"] + ".jsonl"), Path(block["part"] + ".digests")
        digests = digests_path.read_bytes()
        report, stats = block_report(block)
        self.report.merge(report)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.extend(RowError(**e) for e in block["errors"])
        known = self.seen.known(digests)
        if not self.cleaning.dedupe or not known.any():
            self.seen.add(digests, known)
            self.stats.merge(stats)
            self.split_counts.update(block["split_counts"])
            with part.open("rb") as handle:
                while chunk := handle.read(COPY):
                    self._write(chunk)
        else:
            self._add_dropping_seen(part, digests, known)
        part.unlink()
        digests_path.unlink()

    def _add_dropping_seen(self, part: Path, digests: bytes, known) -> None:
        """A block holding rows an earlier block kept (``known``, row by row): keep only the others, and describe
        those again. (The worker dropped the block's own repeats.)"""
        chars_of = CHARS[self.row_format]
        with part.open("rb") as handle:
            for n, (line, seen) in enumerate(zip(handle, known.tolist(), strict=True)):
                if seen:
                    self.report.duplicates_removed += 1
                    continue
                row = orjson.loads(line)
                self.stats.add(row, self.row_format, chars_of(row))
                self.split_counts[self.split.split_of(digests[n * DIGEST : (n + 1) * DIGEST])] += 1
                self._write(line)
        self.seen.add(digests, known)

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        if self.content is not None:
            self.content.update(data)
        self.size += len(data)

    def result(self) -> IngestResult:
        self.seen.write(self.hashes)
        cleaner = Cleaner(self.row_format, self.cleaning, self.split)
        cleaner.report, cleaner.stats, cleaner.errors = self.report, self.stats, self.errors[:MAX_REPORTED_ERRORS]
        cleaner.split_counts, cleaner.size = self.split_counts, self.size
        return cleaner.result(self.cleaned, content_digest(self.content, self.out), self.hashes)


def block_report(block: dict[str, Any]) -> tuple[Cleaning, Stats]:
    """A worker's report and stats of one block, from its reply."""
    report = Cleaning(**(block["report"] | {"pii": Counter(block["report"]["pii"])}))
    stats = Stats(
        **(block["stats"] | {"labels": Counter(block["stats"]["labels"]), "roles": Counter(block["stats"]["roles"])})
    )
    return report, stats
