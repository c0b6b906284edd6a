"""What an ingest reports: the version's stats (rows, lengths, labels, roles), what cleaning did, and the result."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_datasets.cleaning import CleaningConfig
from llmops_datasets.formats import Format, RowError

#: Stats count at most this many distinct labels (the most common) and this many characters of each: they travel in
#: the version's event, which must stay far below the broker's message size whatever the data.
MAX_STAT_LABELS = 1000
MAX_STAT_LABEL_CHARS = 200


def label_stats(labels: Counter) -> dict[str, Any]:
    """The label distribution as the version's stats show it: at most :data:`MAX_STAT_LABELS` labels (the most
    common), each cut to :data:`MAX_STAT_LABEL_CHARS` characters, and how many distinct labels there are."""
    shown: Counter = Counter()
    for label, count in labels.most_common(MAX_STAT_LABELS):
        shown[label[:MAX_STAT_LABEL_CHARS]] += count
    result: dict[str, Any] = {"labels": dict(sorted(shown.items()))}
    if len(labels) > MAX_STAT_LABELS:
        result["labels_distinct"] = len(labels)
        result["labels_truncated"] = True
    return result


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

    def merge(self, other: Stats) -> None:
        """Add the rows ``other`` describes (rows that follow this one's)."""
        self.rows += other.rows
        self.chars_total += other.chars_total
        if other.chars_min is not None:
            self.chars_min = other.chars_min if self.chars_min is None else min(self.chars_min, other.chars_min)
        self.chars_max = max(self.chars_max, other.chars_max)
        self.labels.update(other.labels)
        self.roles.update(other.roles)
        self.messages_total += other.messages_total

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
            result |= label_stats(self.labels)
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

    def merge(self, other: Cleaning) -> None:
        for name in ("rows_read", "invalid", "normalized", "empty_removed", "duplicates_removed", "too_short"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.too_long += other.too_long
        self.pii.update(other.pii)
        self.rows_with_pii += other.rows_with_pii

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
    """The outcome of one ingest: the cleaned rows' hash and size, and everything recorded with the version."""

    cleaned: Path | None  # the cleaned rows, unless they went to a caller's ``out``
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
