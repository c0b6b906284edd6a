"""Training examples: made from a dataset version's rows (optionally rendered through a prompt version) by the worker,
then read and checked against TRL's dataset shapes by the training process before any heavy work starts.

Rows come as the canonical JSONL lines of the version (one split of it). Each dataset format maps to one of TRL's
dataset shapes: ``chat`` -> ``messages``, ``instruction`` -> ``prompt``/``completion``, ``text`` -> ``text``.
``classification`` cannot train a causal language model with supervised fine-tuning and is refused up front.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from llmops.prompts import PromptTemplate, RenderError, as_text, render

TRAINABLE_FORMATS = frozenset({"chat", "instruction", "text"})


class ExampleError(ValueError):
    """A row that cannot become a training example (says which line and why)."""


def _rendered(template: PromptTemplate, variables: dict[str, Any], line: int) -> str | list[dict[str, str]]:
    try:
        return render(template, variables)
    except RenderError as exc:
        raise ExampleError(f"line {line}: the prompt version cannot render this row: {exc}") from exc


def to_example(row: dict[str, Any], fmt: str, template: PromptTemplate | None, line: int) -> dict[str, Any]:
    """One row as a TRL example (see the module docstring)."""
    if fmt == "instruction":
        if template is None:
            return {"prompt": row["prompt"], "completion": row["completion"]}
        prompt = _rendered(template, row, line)
        if isinstance(prompt, str):
            return {"prompt": prompt, "completion": row["completion"]}
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": row["completion"]}]}
    if fmt == "text":
        return {"text": row["text"] if template is None else as_text(_rendered(template, row, line))}
    if fmt == "chat":
        if template is None:
            return {"messages": row["messages"]}
        rendered = _rendered(template, {k: v for k, v in row.items() if k != "messages"}, line)
        if isinstance(rendered, str):
            rendered = [{"role": "system", "content": rendered}]
        return {"messages": [*rendered, *row["messages"]]}
    raise ExampleError(f"the {fmt!r} format cannot train a language model (trainable: {sorted(TRAINABLE_FORMATS)})")


def iter_examples(lines: Iterable[bytes], fmt: str, template: PromptTemplate | None = None) -> Iterator[dict[str, Any]]:
    """The examples of ``lines`` (canonical JSONL rows of one split), one at a time; raises :class:`ExampleError`."""
    for number, line in enumerate(lines, start=1):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ExampleError(f"line {number}: not JSON ({exc})") from exc
        try:
            yield to_example(row, fmt, template, number)
        except KeyError as exc:
            raise ExampleError(f"line {number}: a {fmt!r} row needs the field {exc.args[0]!r}") from exc


def to_examples(lines: Iterable[bytes], fmt: str, template: PromptTemplate | None = None) -> list[dict[str, Any]]:
    """The examples of ``lines``, all in a list; raises :class:`ExampleError`."""
    examples = list(iter_examples(lines, fmt, template))
    if not examples:
        raise ExampleError("the dataset split has no rows to train on")
    return examples


def write_examples(lines: Iterable[bytes], fmt: str, template: PromptTemplate | None, out: BinaryIO) -> int:
    """Write the examples of ``lines`` to ``out`` as JSONL, one at a time (the caller holds one row, not the split,
    whatever its size); returns how many. Raises :class:`ExampleError`."""
    count = 0
    for example in iter_examples(lines, fmt, template):
        out.write(orjson.dumps(example) + b"\n")
        count += 1
    if not count:
        raise ExampleError("the dataset split has no rows to train on")
    return count


# -- in the training process ---------------------------------------------------------------------------------------
Shape = Literal["text", "prompt_completion", "messages"]

COLUMNS: dict[Shape, tuple[str, ...]] = {
    "text": ("text",),
    "prompt_completion": ("prompt", "completion"),
    "messages": ("messages",),
}


class TrainingError(Exception):
    """The data or configuration of a training job cannot train; the message says why."""


def read_examples(path: Path) -> list[dict]:
    """The examples of a JSONL file (one object a line), as the worker streamed them to the training process."""
    with Path(path).open("rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def shape_of(example: object) -> Shape:
    """The TRL dataset shape of one example: ``text``, ``prompt_completion`` or ``messages``."""
    if not isinstance(example, dict):
        raise TrainingError(f"an example must be a JSON object, got {type(example).__name__}")
    if "messages" in example:
        return "messages"
    if "prompt" in example and "completion" in example:
        return "prompt_completion"
    if "text" in example:
        return "text"
    raise TrainingError(
        f"an example needs 'text', 'prompt' and 'completion', or 'messages'; got keys {sorted(example)}"
    )


def _check_messages(value: object, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise TrainingError(f"{where}: messages must be a non-empty list")
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise TrainingError(f"{where}: every message needs a 'role' and a 'content'")


def _check_text(value: object, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise TrainingError(f"{where}: must be a non-empty string")


def check_examples(examples: Sequence[dict]) -> tuple[Shape, list[dict]]:
    """Validate that all examples share one shape; return it with the examples reduced to that shape's columns."""
    if not examples:
        raise TrainingError("no training examples")
    shape = shape_of(examples[0])
    rows = []
    for index, example in enumerate(examples):
        found = shape_of(example)
        if found != shape:
            raise TrainingError(f"examples mix shapes: #0 is {shape}, #{index} is {found}")
        row = {column: example[column] for column in COLUMNS[shape]}
        if shape == "messages":
            _check_messages(row["messages"], f"example #{index}")
        elif shape == "text":
            _check_text(row["text"], f"example #{index} text")
        else:
            conversational = isinstance(row["prompt"], list)
            for column in ("prompt", "completion"):
                check = _check_messages if conversational else _check_text
                check(row[column], f"example #{index} {column}")
        rows.append(row)
    return shape, rows
