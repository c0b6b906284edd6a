"""Training examples from a dataset version's rows, optionally rendered through a prompt version.

Rows come as the canonical JSONL lines of the version (one split of it). Each dataset format maps to one of TRL's
dataset shapes: ``chat`` -> ``messages``, ``instruction`` -> ``prompt``/``completion``, ``text`` -> ``text``.
``classification`` cannot train a causal language model with supervised fine-tuning and is refused up front.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

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
