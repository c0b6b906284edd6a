"""How a dataset version's train/validation/test splits are derived: part of the ``dataset.version.created`` contract.

Splits are never stored: any consumer recomputes them from the version's canonical JSONL (one row per line) with the
``splits`` recorded in the event (fractions and seed), so the datasets service and a training worker always agree.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

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

    @functools.cached_property
    def _keyed(self) -> Any:
        """BLAKE2b with the seed as key, absorbed once: each row copies this state (split_index runs for every row)."""
        return hashlib.blake2b(digest_size=8, key=self.seed.to_bytes(8, "big"))

    def split_index(self, row_digest: bytes) -> int:
        """The split of a row as its index in :data:`SPLITS`: a keyed hash (BLAKE2b, key = seed) of its digest, as
        a point in [0, 1) (scaled by 2**-64, exactly the float of dividing by 2**64)."""
        state = self._keyed.copy()
        state.update(row_digest)
        point = int.from_bytes(state.digest(), "big") * 2.0**-64
        return 0 if point < self.train else 1 if point < self.train + self.validation else 2

    def split_of(self, row_digest: bytes) -> str:
        """The name of a row's split (see :meth:`split_index`)."""
        return SPLITS[self.split_index(row_digest)]


def row_digest(line: bytes) -> bytes:
    """The digest of one canonical row (its line in the cleaned file, newline included)."""
    return hashlib.sha256(line).digest()[:DIGEST]


def split_lines(lines: Iterable[bytes], split: SplitConfig, name: str) -> Iterator[bytes]:
    """The lines (newline included) of one split, from the lines of a version's canonical JSONL."""
    for line in lines:
        if split.split_of(row_digest(line)) == name:
            yield line
