"""Dataset formats and the readers of uploaded files (JSONL, CSV, Parquet), row by row, never whole in memory.

A format is a pydantic model every row must satisfy; more formats can be added to :data:`FORMATS`. Text files are
UTF-8, with or without the byte-order mark spreadsheets write ("CSV UTF-8"); any other encoding refuses the upload
(:class:`NotUtf8`), found where decoding fails anyway, so valid files pay nothing for the check.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
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


BOM = codecs.BOM_UTF8
#: Byte-order marks of the encodings an upload is most often in by mistake (UTF-32's first: it starts with UTF-16's).
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
RESAVE = "the file must be UTF-8: re-save it as UTF-8 (in a spreadsheet, 'CSV UTF-8')"


class NotUtf8(ValueError):
    """An upload that is not UTF-8 text: refused whole (its rows are not a few to drop), naming the first line that
    shows it and the problem there (``problem`` follows "line N")."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line} {problem}; {RESAVE}")
        self.line, self.problem = line, problem


def foreign_encoding(data: bytes) -> str | None:
    """Whether ``data`` (a file's first line, or any line) looks like UTF-16 or UTF-32: a byte-order mark, or NUL
    bytes beside the characters (what ASCII text in those encodings is); in words, else None."""
    for bom, encoding in _FOREIGN_BOMS:
        if data.startswith(bom):
            return f"is not UTF-8: the file looks like {encoding} (it starts with a {encoding} byte-order mark)"
    nuls = data.count(b"\x00")
    if nuls and nuls * 3 >= len(data):
        encoding = "UTF-32" if b"\x00\x00\x00" in data else "UTF-16"
        return f"is not UTF-8: the file looks like {encoding} (NUL bytes between its characters)"
    return None


def encoding_problem(line: bytes) -> str | None:
    """What keeps ``line`` (the bytes of one line) from being UTF-8 text, in words (see :class:`NotUtf8`); None if
    nothing does. The column is counted in characters, from 1."""
    foreign = foreign_encoding(line)
    if foreign is not None:
        return foreign
    try:
        line.decode()
    except UnicodeDecodeError as exc:
        column = len(line[: exc.start].decode()) + 1
        return f"is not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {column})"
    return None


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


def read_rows(path: Path, file_type: FileType, row_format: Format, delimiter: str | None = None) -> Iterator[RawRow]:
    """The rows of an uploaded file, in order, streamed; a CSV file's columns are split at ``delimiter`` (one of
    :data:`DELIMITERS`), by default at the one its header shows (:func:`csv_delimiter`). Raises :class:`NotUtf8`."""
    if file_type is FileType.JSONL:
        yield from _read_jsonl(path)
    elif file_type is FileType.CSV:
        yield from _read_csv(path, row_format, delimiter)
    else:
        yield from _read_parquet(path, row_format)


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # blank lines are not rows
            yield RawRow(number, raw_json=line)  # parsed and validated in one step by validate()


def _read_csv(path: Path, row_format: Format, delimiter: str | None) -> Iterator[RawRow]:
    try:
        yield from _csv_rows(path, row_format, delimiter)
    except UnicodeDecodeError:
        # The decoder reads ahead of the CSV reader, so its error does not say which line: look for it (once).
        raise first_not_utf8(path) from None


def _csv_rows(path: Path, row_format: Format, asked: str | None) -> Iterator[RawRow]:
    required = FORMATS[row_format].__annotations__
    with path.open("rb") as raw:
        first = raw.readline(_SNIFF_BYTES)
        foreign = foreign_encoding(first)
        if foreign is not None:
            raise NotUtf8(1, foreign)
        raw.seek(len(BOM) if first.startswith(BOM) else 0)
        lines = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        line = 0
        try:
            header = lines.readline()
            delimiter = asked or csv_delimiter(header, required) or ","
            reader = csv.DictReader(chain([header], lines), delimiter=delimiter)
            if not set(required) <= set(reader.fieldnames or ()):
                yield RawRow(1, error=_lacking(required, header, asked))
                return
            for row in reader:
                line = reader.line_num
                yield RawRow(line, _from_columns(row, row_format))
        except csv.Error as exc:
            yield RawRow(line + 1, error=f"unreadable CSV: {exc}")


_SNIFF_BYTES = 4096  # of the first line, looked at for another encoding's byte-order mark or NUL bytes

#: The delimiters a CSV upload may use, by name; the first is the default.
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def csv_delimiter(header: str, required: Collection[str]) -> str | None:
    """The delimiter of :data:`DELIMITERS` (in their order) that splits a CSV ``header`` into columns holding all of
    ``required``; None if none does."""
    for delimiter in DELIMITERS:
        if set(required) <= set(next(csv.reader([header], delimiter=delimiter), ())):
            return delimiter
    return None


def _lacking(required: Collection[str], header: str, asked: str | None) -> str:
    """Why a CSV header does not do: the columns it lacks split at the delimiter asked for (and which other one would
    give them, if any), or at the one it seems to use."""
    if asked is not None:
        other = csv_delimiter(header, required)
        hint = f"; split at {DELIMITERS[other]}s it has them: pass delimiter={_QUERY[other]}" if other else ""
        return f"{_columns(header, asked, required)}, split at {DELIMITERS[asked]}s as asked{hint}"
    try:  # the delimiter the header seems to use, to show what it gives
        found = csv.Sniffer().sniff(header[:_SNIFF_BYTES], delimiters="".join(DELIMITERS)).delimiter  # regexes: bounded
    except csv.Error:
        found = ","
    return (
        f"{_columns(header, found, required)}, split at {DELIMITERS[found]}s (what it seems to use); no delimiter "
        f"({', '.join(DELIMITERS.values())}) gives them all (the upload's delimiter= names one: , ; | or %09 for a "
        "tab)"
    )


_QUERY = {",": ",", ";": ";", "\t": "%09", "|": "|"}  # each delimiter as a query parameter's value


def _columns(header: str, delimiter: str, required: Collection[str], shown: int = 8) -> str:
    columns = next(csv.reader([header], delimiter=delimiter), [])
    listed = ", ".join(repr(c[:40]) for c in columns[:shown]) + (", ..." if len(columns) > shown else "")
    missing = ", ".join(sorted(set(required) - set(columns)))
    return f"the CSV header lacks the column(s) {missing}: its columns are {listed}"


def first_not_utf8(path: Path) -> NotUtf8:
    """Where a text file stops being UTF-8, as the CSV reader numbers lines (\\r, \\n and \\r\\n end one)."""
    number = 0
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.isascii():
                data = line.encode("utf-8", "surrogateescape")
                problem = encoding_problem(data[len(BOM) :] if number == 1 and data.startswith(BOM) else data)
                if problem is not None:
                    return NotUtf8(number, problem)
    return NotUtf8(number, "is not valid UTF-8")


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
    """The row as a plain dict if it satisfies the format, else the errors naming its line and fields. A JSON line
    that is not UTF-8 raises :class:`NotUtf8`; the first line may start with a byte-order mark."""
    if raw.error is not None:
        return None, [RowError(raw.line, "<row>", raw.error)]
    adapter = ADAPTERS[row_format]
    data = raw.raw_json
    if data is not None and raw.line == 1 and data.startswith(BOM):
        data = data[len(BOM) :]  # a JSONL file's byte-order mark (its first line fails the fast path: it comes here)
    try:
        if data is not None:
            return adapter.validate_json(data), []
        if not isinstance(raw.value, dict):
            return None, [RowError(raw.line, "<row>", "a row must be a JSON object")]
        return adapter.validate_python(raw.value), []
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0]["type"] == "json_invalid":
            problem = encoding_problem(data) if data is not None else None
            if problem is not None:
                raise NotUtf8(raw.line, problem) from None
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
