"""Checks training examples against TRL's dataset shapes before any heavy work starts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import orjson

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
