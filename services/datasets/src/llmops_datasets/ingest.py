"""The ingest pipeline: read, validate, clean, deduplicate, hash, split and describe an uploaded file, streamed.

Runs on a file on disk (the upload, spooled; JSONL even while it is still arriving), writes the cleaned rows as
canonical JSONL (keys sorted, one row per line) whose sha256 is the version's content address, to a file or straight
to the object store, and the sorted row hashes used to diff against a parent. Memory grows only with the number of
distinct rows (a 16-byte digest each, for exact de-duplication).

Every row goes through this module's loops, so they are written for speed (measured per row, ~10 µs for a 1 KB chat
row): helpers are inlined where a call showed in a profile, with a comment naming what was inlined.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import orjson

from llmops_datasets.cleaning import CleaningConfig, already_normal, map_texts, normalize_row
from llmops_datasets.digests import write_digests
from llmops_datasets.formats import FAST_CHECKS, FileType, Format, RawRow, RowError, read_rows, validate
from llmops_datasets.report import Cleaning, IngestResult, Stats
from llmops_schemas.splits import DIGEST, SPLITS, SplitConfig, split_lines

MAX_REPORTED_ERRORS = 20


class Output(Protocol):
    """Where cleaned rows go: a binary file, or a :class:`llmops.object_writer.ObjectWriter` uploading them."""

    def write(self, data: bytes, /) -> int: ...


@runtime_checkable
class HashingOutput(Output, Protocol):
    """An output that hashes what it is given (an :class:`~llmops.object_writer.ObjectWriter`): the ingest asks it for
    the content's sha256 rather than hashing the cleaned rows a second time."""

    def hexdigest(self) -> str: ...


def content_hash(out: Output | None) -> Any:
    """A sha256 to feed the cleaned rows to, unless ``out`` hashes them itself (then None)."""
    return None if isinstance(out, HashingOutput) else hashlib.sha256()


def content_digest(content: Any, out: Output | None) -> str:
    """The sha256 of the cleaned rows, from ``content`` (see :func:`content_hash`) or from ``out``."""
    return out.hexdigest() if content is None else content.hexdigest()  # type: ignore[union-attr]


_content, _role = itemgetter("content"), itemgetter("role")
CHARS = {
    Format.CHAT: lambda row: sum(map(len, map(_content, row["messages"]))),
    Format.INSTRUCTION: lambda row: len(row["prompt"]) + len(row["completion"]),
    Format.TEXT: lambda row: len(row["text"]),
    Format.CLASSIFICATION: lambda row: len(row["text"]),
}


_TEXTS = {
    Format.INSTRUCTION: itemgetter("prompt", "completion"),
    Format.TEXT: lambda row: (row["text"],),
    Format.CLASSIFICATION: lambda row: (row["text"],),
}


#: Validated rows, in batches, each batch with whether normalisation would leave each of its rows as it is.
Batches = Iterator[tuple[list[dict[str, Any]], Iterable[bool]]]
BLOCK_BYTES = 64 * 1024  # JSONL lines read, parsed and cleaned together
RAW_BATCH = 1024  # CSV and Parquet rows per batch
# Cleaned rows are written in small batches: holding thousands of lines between writes made the allocator hand memory
# back to the system and fault it in again, batch after batch, which cost more than validating the rows (measured).
WRITE_ROWS = 64


def jsonl_rows(lines: BinaryIO, first_line: int, row_format: Format, report: Cleaning, errors: list) -> Batches:
    """The valid rows of JSONL read from ``lines`` (numbered from ``first_line``), in blocks of about
    :data:`BLOCK_BYTES`; invalid ones are counted and reported. Blank lines are not rows."""
    loads, decode_error, fits, all_normal = orjson.loads, orjson.JSONDecodeError, FAST_CHECKS[row_format], repeat(True)
    read = invalid = 0
    number = first_line
    while block := lines.readlines(BLOCK_BYTES):
        blank = 0
        rows: list[dict[str, Any]] = []
        append = rows.append
        # Per row only when the block as a whole is not already normal (a row that is may sit beside one that is not)
        normal: list[bool] | None = None if already_normal(b"".join(block)) else []
        for number, line in enumerate(block, number):  # noqa: B020 (numbering goes on from block to block)
            try:  # jsonl_parser(row_format)(line), inlined: this runs for every row
                row = loads(line)
            except decode_error:
                row = None
            if row is not None and fits(row):
                append(row)
                if normal is not None:
                    normal.append(already_normal(line))
                continue
            if line.isspace():
                blank += 1
                continue
            row, row_errors = validate(RawRow(number, raw_json=line), row_format)
            if row is None:
                invalid += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.extend(row_errors[: MAX_REPORTED_ERRORS - len(errors)])
            elif normal is None:  # rare (what the fast check refuses but the format accepts): a batch of its own
                yield rows, all_normal
                yield [row], (False,)
                rows = []
                append = rows.append
            else:
                append(row)
                normal.append(False)
        number += 1
        read += len(block) - blank
        yield rows, all_normal if normal is None else normal
    report.rows_read += read
    report.invalid += invalid


def _raw_rows(raws: Iterable[RawRow], row_format: Format, report: Cleaning, errors: list) -> Batches:
    rows: list[dict[str, Any]] = []
    for raw in raws:
        report.rows_read += 1
        row, row_errors = validate(raw, row_format)
        if row is None:
            report.invalid += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.extend(row_errors[: MAX_REPORTED_ERRORS - len(errors)])
            continue
        rows.append(row)
        if len(rows) == RAW_BATCH:
            yield rows, repeat(False)
            rows = []
    yield rows, repeat(False)


@dataclass
class Cleaner:
    """Cleans, de-duplicates, hashes and describes validated rows, writing them canonical to ``out``."""

    row_format: Format
    cleaning: CleaningConfig
    split: SplitConfig
    report: Cleaning = field(default_factory=Cleaning)
    stats: Stats = field(default_factory=Stats)
    errors: list[RowError] = field(default_factory=list)
    split_counts: Counter = field(default_factory=Counter)
    seen: set[bytes] = field(default_factory=set)
    size: int = 0

    def clean(self, batches: Batches, out, content=None, kept: list[bytes] | None = None) -> None:
        """Write the kept rows of ``batches`` to ``out``; ``content`` (a hash) sees the bytes written and ``kept``
        receives the digest of each row written, in order."""
        row_format, cleaning, report = self.row_format, self.cleaning, self.report
        redactor = None
        if cleaning.redact_pii:
            from llmops.pii import PiiRedactor  # loads phone metadata: only when redacting

            redactor = PiiRedactor(cleaning.redact_pii, locales=cleaning.pii_locales)
        normalize, dedupe, drop_empty = cleaning.normalize, cleaning.dedupe, cleaning.drop_empty
        min_chars, max_chars = cleaning.min_chars, cleaning.max_chars
        chars_of, dumps, option = CHARS[row_format], orjson.dumps, orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
        sha256, seen, split_index = hashlib.sha256, self.seen, self.split.split_index
        split_counts = [0, 0, 0]  # in the order of SPLITS
        chat, classification = row_format is Format.CHAT, row_format is Format.CLASSIFICATION
        stats = self.stats
        labels = stats.labels
        turns: dict[tuple[str, ...], int] = {}  # role sequences of chat rows, counted: a few distinct ones in practice
        normalized = empty = short = long = duplicates = 0
        kept_rows = chars_total = 0
        chars_min, chars_max = stats.chars_min, stats.chars_max
        pending: list[bytes] = []
        # Rows outside [low, high] are dropped; which bound tells why (below).
        low, high = max(min_chars or 0, 1 if drop_empty else 0), sys.maxsize if max_chars is None else max_chars
        for batch, normal in batches:
            for row, is_normal in zip(batch, normal):  # noqa: B905 (normal may be endless: repeat(True))
                if normalize and not is_normal:
                    normalized += normalize_row(row, row_format)
                if redactor is not None:
                    row = _redact(row, row_format, redactor, report)
                if chat:
                    messages = row["messages"]
                    chars = sum(map(len, map(_content, messages)))  # CHARS[CHAT], inlined
                else:
                    chars = chars_of(row)
                if not low <= chars <= high:
                    if drop_empty and chars == 0:
                        empty += 1
                    elif min_chars is not None and chars < min_chars:
                        short += 1
                    else:
                        long += 1
                    continue
                line = dumps(row, option=option)
                digest = sha256(line).digest()[:DIGEST]  # row_digest(line), inlined: this runs for every row
                if digest in seen:
                    if dedupe:
                        duplicates += 1
                        continue
                else:
                    seen.add(digest)
                pending.append(line)
                if kept is not None:
                    kept.append(digest)
                if len(pending) == WRITE_ROWS:
                    self._write(pending, out, content)
                kept_rows += 1
                chars_total += chars
                if chars_min is None or chars < chars_min:
                    chars_min = chars
                if chars > chars_max:
                    chars_max = chars
                if chat:
                    sequence = tuple(map(_role, messages))
                    turns[sequence] = turns.get(sequence, 0) + 1
                elif classification:
                    labels[str(row["label"])] += 1
                split_counts[split_index(digest)] += 1
        self._write(pending, out, content)
        report.normalized += normalized
        report.empty_removed += empty
        report.too_short += short
        report.too_long += long
        report.duplicates_removed += duplicates
        stats.rows += kept_rows
        stats.chars_total += chars_total
        for sequence, count in turns.items():
            stats.messages_total += len(sequence) * count
            for role in sequence:
                stats.roles[role] += count
        stats.chars_min, stats.chars_max = chars_min, chars_max
        self.split_counts.update(dict(zip(SPLITS, split_counts, strict=True)))

    def result(self, cleaned: Path | None, sha256: str, row_hashes: Path) -> IngestResult:
        return IngestResult(
            cleaned=cleaned,
            sha256=sha256,
            size=self.size,
            row_hashes=row_hashes,
            stats=self.stats.as_dict(),
            cleaning=self.report.as_dict(self.cleaning, self.stats.rows),
            splits=self.split.model_dump() | {"counts": {name: self.split_counts.get(name, 0) for name in SPLITS}},
            errors=self.errors,
            invalid_rows=self.report.invalid,
        )

    def _write(self, pending: list[bytes], out, content) -> None:
        data = b"".join(pending)
        pending.clear()
        out.write(data)
        if content is not None:
            content.update(data)
        self.size += len(data)


def _redact(row: dict[str, Any], row_format: Format, redactor, report: Cleaning) -> dict[str, Any]:
    texts = map(_content, row["messages"]) if row_format is Format.CHAT else _TEXTS[row_format](row)
    if not redactor.may_hold_pii("\n".join(texts)):
        return row  # most rows: one cheap test instead of one redaction per text
    found: Counter = Counter()

    def redact(text: str) -> str:
        result, counts = redactor.redact(text)
        if counts:
            found.update(counts)
        return result

    row = map_texts(row, row_format, redact)
    if found:
        report.pii.update(found)
        report.rows_with_pii += 1
    return row


def ingest(
    source: Path,
    file_type: FileType,
    row_format: Format,
    workdir: Path,
    *,
    cleaning: CleaningConfig,
    split: SplitConfig,
    out: Output | None = None,
    delimiter: str | None = None,
) -> IngestResult:
    """Run the whole pipeline over ``source``; the cleaned rows go to ``out`` (by default ``workdir``/cleaned.jsonl)
    and the row hashes to ``workdir``. A CSV file's ``delimiter`` is by default the one its header shows. (Cleaning
    on several cores is the service's choice: :mod:`llmops_datasets.parallel`.)"""
    if file_type is FileType.JSONL:
        with source.open("rb") as handle:
            return ingest_jsonl(handle, row_format, workdir, cleaning=cleaning, split=split, out=out)
    cleaner = Cleaner(row_format, cleaning, split)
    rows = _raw_rows(read_rows(source, file_type, row_format, delimiter), row_format, cleaner.report, cleaner.errors)
    return _clean_into(cleaner, rows, workdir, out)


def ingest_jsonl(
    lines: BinaryIO,
    row_format: Format,
    workdir: Path,
    *,
    cleaning: CleaningConfig,
    split: SplitConfig,
    out: Output | None = None,
) -> IngestResult:
    """:func:`ingest` of JSONL read from ``lines``: a file, or an upload still arriving
    (:class:`~llmops_datasets.arriving.ArrivingFile`)."""
    cleaner = Cleaner(row_format, cleaning, split)
    return _clean_into(cleaner, jsonl_rows(lines, 1, row_format, cleaner.report, cleaner.errors), workdir, out)


def _clean_into(cleaner: Cleaner, rows: Batches, workdir: Path, out: Output | None) -> IngestResult:
    hashes = workdir / "row_hashes.bin"
    if out is None:
        content, cleaned = hashlib.sha256(), workdir / "cleaned.jsonl"
        with cleaned.open("wb") as file:
            cleaner.clean(rows, file, content)
    else:
        content, cleaned = content_hash(out), None
        cleaner.clean(rows, out, content)
    write_digests(hashes, cleaner.seen)
    return cleaner.result(cleaned, content_digest(content, out), hashes)


def split_rows(cleaned: Path, split: SplitConfig, name: str) -> Iterator[bytes]:
    """The lines of one split of a cleaned file (recomputed from row hashes and seed: splits are never stored)."""
    with cleaned.open("rb") as handle:
        yield from split_lines(handle, split, name)
