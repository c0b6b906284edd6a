"""Dataset formats and the readers of uploaded files (JSONL, CSV, Parquet), row by row, never whole in memory.

A format is a pydantic model every row must satisfy; more formats can be added to :data:`FORMATS`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict


class Format(StrEnum):
    CHAT = "chat"
    INSTRUCTION = "instruction"
    TEXT = "text"
    CLASSIFICATION = "classification"


_STRICT = ConfigDict(extra="forbid", strict=True)


Role = Literal["system", "user", "assistant", "tool"]


@with_config(_STRICT)
class Message(TypedDict):
    role: Role
    content: str


@with_config(_STRICT)
class ChatRow(TypedDict):
    messages: Annotated[list[Message], Field(min_length=1)]


@with_config(_STRICT)
class InstructionRow(TypedDict):
    prompt: str
    completion: str


@with_config(_STRICT)
class TextRow(TypedDict):
    text: str


#: An integer label fits in 64 bits (what JSON tools and the canonical form agree on); larger ones must be strings.
Label64 = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]


@with_config(_STRICT)
class ClassificationRow(TypedDict):
    text: str
    label: str | Label64


#: Each format's row type; validation goes through a TypeAdapter (rows stay plain dicts: no model objects).
FORMATS: dict[Format, type] = {
    Format.CHAT: ChatRow,
    Format.INSTRUCTION: InstructionRow,
    Format.TEXT: TextRow,
    Format.CLASSIFICATION: ClassificationRow,
}
ADAPTERS: dict[Format, TypeAdapter] = {name: TypeAdapter(row) for name, row in FORMATS.items()}


class FileType(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


#: Accepted Content-Types of an upload; anything else is 415.
CONTENT_TYPES: dict[str, FileType] = {
    "application/jsonl": FileType.JSONL,
    "application/x-ndjson": FileType.JSONL,
    "application/x-jsonlines": FileType.JSONL,
    "application/json-lines": FileType.JSONL,
    "text/csv": FileType.CSV,
    "application/vnd.apache.parquet": FileType.PARQUET,
    "application/x-parquet": FileType.PARQUET,
}


@dataclass(frozen=True)
class RowError:
    """Why one row was refused: its line (row number for Parquet), the field and the message."""

    line: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class RawRow:
    """A row as read from the file, before validation: its line number and either a value or a parse error."""

    line: int
    value: Any = None
    error: str | None = None
    raw_json: bytes | None = None


def read_rows(path: Path, file_type: FileType, row_format: Format) -> Iterator[RawRow]:
    """The rows of an uploaded file, in order, streamed."""
    if file_type is FileType.JSONL:
        yield from _read_jsonl(path)
    elif file_type is FileType.CSV:
        yield from _read_csv(path, row_format)
    else:
        yield from _read_parquet(path, row_format)


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # blank lines are not rows
            yield RawRow(number, raw_json=line)  # parsed and validated in one step by validate()


def _read_csv(path: Path, row_format: Format) -> Iterator[RawRow]:
    with path.open(newline="", encoding="utf-8", errors="strict") as handle:
        reader = csv.DictReader(handle)
        expected = set(FORMATS[row_format].__annotations__)
        missing = expected - set(reader.fieldnames or ())
        if missing:
            yield RawRow(1, error=f"the CSV header lacks the column(s) {', '.join(sorted(missing))}")
            return
        try:
            for row in reader:
                yield RawRow(reader.line_num, _from_columns(row, row_format))
        except (csv.Error, UnicodeDecodeError) as exc:
            yield RawRow(reader.line_num + 1, error=f"unreadable CSV: {exc}")


def _read_parquet(path: Path, row_format: Format) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        yield RawRow(1, error=f"not a Parquet file: {exc}")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            number += 1
            yield RawRow(number, _from_columns(row, row_format))


def _from_columns(row: dict[str, Any], row_format: Format) -> Any:
    """Columns of a CSV or Parquet row as the row's fields; chat messages may be a JSON string."""
    if row_format is Format.CHAT and isinstance(row.get("messages"), str | bytes):
        try:
            return {**row, "messages": orjson.loads(row["messages"])}
        except orjson.JSONDecodeError:
            return row
    return row


def validate(raw: RawRow, row_format: Format) -> tuple[dict[str, Any] | None, list[RowError]]:
    """The row as a plain dict if it satisfies the format, else the errors naming its line and fields."""
    if raw.error is not None:
        return None, [RowError(raw.line, "<row>", raw.error)]
    adapter = ADAPTERS[row_format]
    try:
        if raw.raw_json is not None:
            return adapter.validate_json(raw.raw_json), []
        if not isinstance(raw.value, dict):
            return None, [RowError(raw.line, "<row>", "a row must be a JSON object")]
        return adapter.validate_python(raw.value), []
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0]["type"] == "json_invalid":
            return None, [RowError(raw.line, "<row>", f"not valid JSON: {errors[0]['msg']}")]
        if errors[0]["type"] in {"dict_type", "model_type"} and not errors[0]["loc"]:
            return None, [RowError(raw.line, "<row>", "a row must be a JSON object")]
        return None, [RowError(raw.line, ".".join(str(p) for p in e["loc"]) or "<row>", e["msg"]) for e in errors[:5]]


_ROLES = frozenset(get_args(Role))


def _is_chat(row: Any) -> bool:
    if type(row) is not dict or len(row) != 1:
        return False
    messages = row.get("messages")
    if type(messages) is not list or not messages:
        return False
    for message in messages:
        if type(message) is not dict or len(message) != 2 or type(message.get("content")) is not str:
            return False
        role = message.get("role")
        if type(role) is not str or role not in _ROLES:
            return False
    return True


def _is_instruction(row: Any) -> bool:
    return type(row) is dict and len(row) == 2 and type(row.get("prompt")) is str and type(row.get("completion")) is str


def _is_text(row: Any) -> bool:
    return type(row) is dict and len(row) == 1 and type(row.get("text")) is str


def _is_classification(row: Any) -> bool:
    # ``type(...) is int`` leaves out bool, as strict validation does; floats (and integers orjson reads as floats
    # because they pass 64 bits) take the slow path, which decides.
    return type(row) is dict and len(row) == 2 and type(row.get("text")) is str and type(row.get("label")) in (str, int)


#: Plain-Python checks that accept only rows the format's TypeAdapter accepts unchanged: the fast path of
#: :func:`jsonl_parser`. They may refuse a valid row (the TypeAdapter then decides); they never accept an invalid one.
FAST_CHECKS = {
    Format.CHAT: _is_chat,
    Format.INSTRUCTION: _is_instruction,
    Format.TEXT: _is_text,
    Format.CLASSIFICATION: _is_classification,
}


def jsonl_parser(row_format: Format):
    """A function from one JSONL line to the row (a plain dict), or None when the line needs :func:`validate`.

    orjson and a plain check are about four times faster than the TypeAdapter; anything they do not accept (invalid
    JSON, a wrong shape, an integer past 64 bits) goes through the TypeAdapter, which also words the errors.
    """
    loads, check, decode_error = orjson.loads, FAST_CHECKS[row_format], orjson.JSONDecodeError

    def parse(line: bytes) -> dict[str, Any] | None:
        try:
            row = loads(line)
        except decode_error:
            return None
        return row if check(row) else None

    return parse


def texts(row: dict[str, Any], row_format: Format) -> list[str]:
    """The free-text fields of a row (what lengths, token estimates and cleaning look at)."""
    if row_format is Format.CHAT:
        return [m["content"] for m in row["messages"]]
    if row_format is Format.INSTRUCTION:
        return [row["prompt"], row["completion"]]
    return [row["text"]]


def csv_text(rows: list[dict[str, Any]]) -> str:
    """A small CSV of ``rows`` (tests and previews)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
