"""The cleaning an upload asks for, and text normalisation: NFC, one kind of newline, single spaces, at most one
blank line, no outer space. Normalisation runs for every text of every row, so the common case (clean ASCII) is
decided with C-speed scans.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmops.pii import SUPPORTED_LOCALES, parse_kinds, parse_locales
from llmops_datasets.formats import Format


class CleaningConfig(BaseModel):
    """The cleaning an upload asks for; recorded with the version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    normalize: bool = Field(default=True, description="Unicode NFC and whitespace normalisation")
    drop_empty: bool = Field(default=True, description="remove rows whose text is empty after normalisation")
    dedupe: bool = Field(default=True, description="remove exact duplicate rows")
    min_chars: int | None = Field(default=None, ge=0, description="remove rows with fewer characters of text")
    max_chars: int | None = Field(default=None, ge=1, description="remove rows with more characters of text")
    redact_pii: frozenset[str] = Field(default=frozenset(), description="PII kinds to redact (empty: none)")
    pii_locales: tuple[str, ...] = Field(
        default=SUPPORTED_LOCALES, description="locales whose phone formats and national ids redaction reads"
    )

    @field_validator("redact_pii")
    @classmethod
    def _known_kinds(cls, kinds: frozenset[str]) -> frozenset[str]:
        return parse_kinds(kinds)

    @field_validator("pii_locales")
    @classmethod
    def _known_locales(cls, locales: tuple[str, ...]) -> tuple[str, ...]:
        return parse_locales(locales)

    @model_validator(mode="after")
    def _bounds(self) -> CleaningConfig:
        if self.min_chars is not None and self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars must be at least min_chars")
        return self


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


def map_texts(row: dict[str, Any], row_format: Format, fn) -> dict[str, Any]:
    if row_format is Format.CHAT:
        return {**row, "messages": [{**m, "content": fn(m["content"])} for m in row["messages"]]}
    if row_format is Format.INSTRUCTION:
        return {**row, "prompt": fn(row["prompt"]), "completion": fn(row["completion"])}
    return {**row, "text": fn(row["text"])}


def normalize_row(row: dict[str, Any], row_format: Format) -> bool:
    """Normalise the texts of ``row`` in place; whether any changed."""
    changed = False
    if row_format is Format.CHAT:
        for message in row["messages"]:
            text = message["content"]
            clean = normalize_text(text)
            if clean != text:
                message["content"], changed = clean, True
        return changed
    for key in ("prompt", "completion") if row_format is Format.INSTRUCTION else ("text",):
        text = row[key]
        clean = normalize_text(text)
        if clean != text:
            row[key], changed = clean, True
    return changed


def already_normal(data: bytes) -> bool:
    """Whether normalisation leaves every string of JSON lines as it is, judged on their bytes (C-speed scans).

    ASCII without escapes has no tabs, newlines, carriage returns or non-ASCII spaces in its strings; and without a
    double space, nor a space beside a quote, no string has a run of spaces or a space at either end. Quotes read
    as spaces, one search finds all three (and empty strings, ``""``, which then take the slow path: harmless).
    What holds for a block of lines holds for each line in it, so a whole block is judged at once; ``find`` rather
    than ``in``: ``bytes in bytes`` first tries the needle as an integer, raising and clearing an exception."""
    return data.isascii() and data.find(b"\\") < 0 and data.replace(b'"', b" ").find(b"  ") < 0
