"""How a dataset version's train/validation/test splits are derived: part of the ``dataset.version.created`` contract.

Splits are never stored: any consumer recomputes them from the version's canonical JSONL (one row per line) with the
``splits`` recorded in the event (fractions and seed), so the datasets service and a training worker always agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field, model_validator

DIGEST = 16  # bytes of a row's sha256 kept for de-duplication, diffs and split assignment
SPLITS = ("train", "validation", "test")


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

    @classmethod
    def of_version(cls, splits: dict) -> SplitConfig:
        """The split configuration recorded in a version's ``splits`` (which also holds the counts)."""
        return cls(**{key: splits[key] for key in ("train", "validation", "test", "seed")})

    @property
    def _key(self) -> bytes:
        return self.seed.to_bytes(8, "big")

    def split_of(self, row_digest: bytes) -> str:
        """The split of a row: a keyed hash (BLAKE2b, key = seed) of its digest, as a point in [0, 1)."""
        point = int.from_bytes(hashlib.blake2b(row_digest, digest_size=8, key=self._key).digest(), "big") / 2**64
        if point < self.train:
            return "train"
        return "validation" if point < self.train + self.validation else "test"


def row_digest(line: bytes) -> bytes:
    """The digest of one canonical row (its line in the cleaned file, newline included)."""
    return hashlib.sha256(line).digest()[:DIGEST]


def split_lines(lines: Iterable[bytes], split: SplitConfig, name: str) -> Iterator[bytes]:
    """The lines (newline included) of one split, from the lines of a version's canonical JSONL."""
    for line in lines:
        if split.split_of(row_digest(line)) == name:
            yield line
