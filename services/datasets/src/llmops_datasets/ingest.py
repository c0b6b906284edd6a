"""The ingest pipeline: read, validate, clean, deduplicate, hash, split and describe an uploaded file, streamed.

Runs on a file on disk (the upload, spooled), writes the cleaned rows as canonical JSONL (keys sorted, one row per
line) whose sha256 is the version's content address, and the sorted row hashes used to diff against a parent. Memory
grows only with the number of distinct rows (a 16-byte digest each, for exact de-duplication).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmops_datasets.formats import FileType, Format, RowError, read_rows, texts, validate

MAX_REPORTED_ERRORS = 20
DIGEST = 16  # bytes of a row's sha256 kept for de-duplication and diffs
SPLITS = ("train", "validation", "test")


class CleaningConfig(BaseModel):
    """The cleaning an upload asks for; recorded with the version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    normalize: bool = Field(default=True, description="Unicode NFC and whitespace normalisation")
    drop_empty: bool = Field(default=True, description="remove rows whose text is empty after normalisation")
    dedupe: bool = Field(default=True, description="remove exact duplicate rows")
    min_chars: int | None = Field(default=None, ge=0, description="remove rows with fewer characters of text")
    max_chars: int | None = Field(default=None, ge=1, description="remove rows with more characters of text")
    redact_pii: frozenset[str] = Field(default=frozenset(), description="PII kinds to redact (empty: none)")

    @field_validator("redact_pii")
    @classmethod
    def _known_kinds(cls, kinds: frozenset[str]) -> frozenset[str]:
        from llmops_datasets.pii import ALL_KINDS

        unknown = kinds - ALL_KINDS
        if unknown:
            raise ValueError(f"unknown PII kind(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(ALL_KINDS))}")
        return kinds

    @model_validator(mode="after")
    def _bounds(self) -> CleaningConfig:
        if self.min_chars is not None and self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars must be at least min_chars")
        return self


class SplitConfig(BaseModel):
    """Deterministic train/validation/test assignment by row hash and seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)
    seed: int = Field(default=42, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-9:
            raise ValueError("train + validation + test must be 1")
        return self

    @property
    def _key(self) -> bytes:
        return self.seed.to_bytes(8, "big")

    def split_of(self, row_digest: bytes) -> str:
        """The split of a row: a keyed hash (BLAKE2b, key = seed) of its digest, as a point in [0, 1)."""
        point = int.from_bytes(hashlib.blake2b(row_digest, digest_size=8, key=self._key).digest(), "big") / 2**64
        if point < self.train:
            return "train"
        return "validation" if point < self.train + self.validation else "test"


@dataclass
class Stats:
    """Row count, text lengths, token estimates and label or role distributions of a version."""

    rows: int = 0
    chars_total: int = 0
    chars_min: int | None = None
    chars_max: int = 0
    labels: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    messages_total: int = 0

    def add(self, row: dict[str, Any], row_format: Format, chars: int) -> None:
        self.rows += 1
        self.chars_total += chars
        self.chars_min = chars if self.chars_min is None else min(self.chars_min, chars)
        self.chars_max = max(self.chars_max, chars)
        if row_format is Format.CLASSIFICATION:
            self.labels[str(row["label"])] += 1
        elif row_format is Format.CHAT:
            self.messages_total += len(row["messages"])
            roles = self.roles
            for message in row["messages"]:
                roles[message["role"]] += 1

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "rows": self.rows,
            "chars": {
                "total": self.chars_total,
                "min": self.chars_min or 0,
                "max": self.chars_max,
                "mean": round(self.chars_total / self.rows, 1) if self.rows else 0,
            },
            # about 4 characters per token for English text with BPE tokenizers; a planning figure, not a count
            "tokens_estimate": round(self.chars_total / 4),
        }
        if self.labels:
            result["labels"] = dict(sorted(self.labels.items()))
        if self.roles:
            result["roles"] = dict(sorted(self.roles.items()))
            result["messages_per_row"] = round(self.messages_total / self.rows, 2) if self.rows else 0
        return result


@dataclass
class Cleaning:
    """What cleaning did, per step, for the cleaning report."""

    rows_read: int = 0
    invalid: int = 0
    normalized: int = 0
    empty_removed: int = 0
    duplicates_removed: int = 0
    too_short: int = 0
    too_long: int = 0
    pii: Counter = field(default_factory=Counter)
    rows_with_pii: int = 0

    def as_dict(self, config: CleaningConfig, kept: int) -> dict[str, Any]:
        return {
            "config": config.model_dump(mode="json") | {"redact_pii": sorted(config.redact_pii)},
            "rows_read": self.rows_read,
            "rows_kept": kept,
            "invalid_rows": self.invalid,
            "rows_normalized": self.normalized,
            "empty_removed": self.empty_removed,
            "duplicates_removed": self.duplicates_removed,
            "too_short_removed": self.too_short,
            "too_long_removed": self.too_long,
            "pii_redacted": dict(sorted(self.pii.items())),
            "rows_with_pii": self.rows_with_pii,
        }


@dataclass
class IngestResult:
    """The outcome of one ingest: cleaned rows on disk, their hash, and everything recorded with the version."""

    cleaned: Path
    sha256: str
    size: int
    row_hashes: Path
    stats: dict[str, Any]
    cleaning: dict[str, Any]
    splits: dict[str, Any]
    errors: list[RowError]
    invalid_rows: int

    @property
    def rows(self) -> int:
        return self.stats["rows"]


_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


# Spacing that normalisation would change in ASCII text; substring tests are C-speed (a regex alternation is 10x
# slower, and this runs for every text of every row).
_ASCII_NEEDS_WORK = ("  ", "\t", "\r", "\n ", " \n", "\n\n\n", "\x0b", "\x0c")


def normalize_text(text: str) -> str:
    """NFC, \\r\\n and \\r as \\n, runs of spaces and tabs as one space, at most one blank line, no outer space."""
    if text.isascii():
        # Fast path (most text): ASCII is already NFC, and clean ASCII spacing needs no regex.
        a, b, c, d, e, f, g, h = _ASCII_NEEDS_WORK
        odd_inside = (a in text or b in text or c in text or d in text) or (
            e in text or f in text or g in text or h in text
        )
        if not odd_inside and (not text or not (text[0].isspace() or text[-1].isspace())):
            return text
    else:
        text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _map_texts(row: dict[str, Any], row_format: Format, fn) -> dict[str, Any]:
    if row_format is Format.CHAT:
        return {**row, "messages": [{**m, "content": fn(m["content"])} for m in row["messages"]]}
    if row_format is Format.INSTRUCTION:
        return {**row, "prompt": fn(row["prompt"]), "completion": fn(row["completion"])}
    return {**row, "text": fn(row["text"])}


def ingest(
    source: Path,
    file_type: FileType,
    row_format: Format,
    workdir: Path,
    *,
    cleaning: CleaningConfig,
    split: SplitConfig,
) -> IngestResult:
    """Run the whole pipeline over ``source``; the cleaned file and row hashes are written in ``workdir``."""
    redactor = None
    if cleaning.redact_pii:
        from llmops_datasets.pii import PiiRedactor

        redactor = PiiRedactor(cleaning.redact_pii)
    report, stats, errors = Cleaning(), Stats(), []
    split_counts: Counter = Counter()
    seen: set[bytes] = set()
    cleaned_path, hashes_path = workdir / "cleaned.jsonl", workdir / "row_hashes.bin"
    content = hashlib.sha256()
    size = 0
    with cleaned_path.open("wb") as out:
        for raw in read_rows(source, file_type, row_format):
            report.rows_read += 1
            row, row_errors = validate(raw, row_format)
            if row is None:
                report.invalid += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.extend(row_errors[: MAX_REPORTED_ERRORS - len(errors)])
                continue
            if cleaning.normalize:
                normalized = _map_texts(row, row_format, normalize_text)
                report.normalized += normalized != row
                row = normalized
            if redactor is not None:
                found: Counter = Counter()

                def redact(text: str, found: Counter = found) -> str:
                    result, counts = redactor.redact(text)
                    found.update(counts)
                    return result

                row = _map_texts(row, row_format, redact)
                if found:
                    report.pii.update(found)
                    report.rows_with_pii += 1
            chars = sum(len(t) for t in texts(row, row_format))
            if cleaning.drop_empty and chars == 0:
                report.empty_removed += 1
                continue
            if cleaning.min_chars is not None and chars < cleaning.min_chars:
                report.too_short += 1
                continue
            if cleaning.max_chars is not None and chars > cleaning.max_chars:
                report.too_long += 1
                continue
            line = orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n"
            digest = row_digest(line)
            if digest in seen:
                if cleaning.dedupe:
                    report.duplicates_removed += 1
                    continue
            else:
                seen.add(digest)
            out.write(line)
            content.update(line)
            size += len(line)
            stats.add(row, row_format, chars)
            split_counts[split.split_of(digest)] += 1
    with hashes_path.open("wb") as out:
        for digest in sorted(seen):
            out.write(digest)
    return IngestResult(
        cleaned=cleaned_path,
        sha256=content.hexdigest(),
        size=size,
        row_hashes=hashes_path,
        stats=stats.as_dict(),
        cleaning=report.as_dict(cleaning, stats.rows),
        splits=split.model_dump() | {"counts": {name: split_counts.get(name, 0) for name in SPLITS}},
        errors=errors,
        invalid_rows=report.invalid,
    )


def digests(path: Path) -> Iterator[bytes]:
    """The sorted row digests of a row-hash file, streamed."""
    with path.open("rb") as handle:
        while chunk := handle.read(DIGEST * 4096):
            for i in range(0, len(chunk), DIGEST):
                yield chunk[i : i + DIGEST]


def diff(parent: Path, child: Path) -> dict[str, int]:
    """Rows added and removed between two versions, by merging their sorted row digests (distinct rows)."""
    added = removed = unchanged = 0
    old, new = digests(parent), digests(child)
    a, b = next(old, None), next(new, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a < b):
            removed += 1
            a = next(old, None)
        elif a is None or b < a:
            added += 1
            b = next(new, None)
        else:
            unchanged += 1
            a, b = next(old, None), next(new, None)
    return {"added": added, "removed": removed, "unchanged": unchanged}


def row_digest(line: bytes) -> bytes:
    """The digest of one canonical row (its line in the cleaned file, newline included)."""
    return hashlib.sha256(line).digest()[:DIGEST]


def split_rows(cleaned: Path, split: SplitConfig, name: str) -> Iterator[bytes]:
    """The lines of one split of a cleaned file (recomputed from row hashes and seed: splits are never stored)."""
    with cleaned.open("rb") as handle:
        for line in handle:
            if split.split_of(row_digest(line)) == name:
                yield line
