"""Evaluation examples made from a dataset split's rows: what the model is given (``input``: a text, or chat messages)
and what it should answer (``reference``, or None).

- ``instruction`` rows ``{prompt, completion}``: the prompt (rendered through the suite's prompt version when it has
  one) and the completion;
- ``chat`` rows ``{messages}``: the messages before the last assistant message, and that message's content;
- ``text`` rows ``{text}``: the text, no reference;
- ``classification`` rows ``{text, label}``: the text (or the rendered row) and ``str(label)``.

A row that cannot become an example is that example's error, recorded with its index; it does not fail the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from llmops.prompts import PromptTemplate, RenderError, as_text, render

Input = str | list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Example:
    """One example of a run: its position in the split, the model's input and the reference answer."""

    index: int
    input: Input
    reference: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    """A row of the split that could not become an example, and why."""

    index: int
    error: str


class UnusableRow(ValueError):
    """A row that cannot become an example (the message says why)."""


def _rendered(template: PromptTemplate, row: dict[str, Any]) -> Input:
    # the row's fields the prompt declares: the others (the completion, a label) are not the prompt's to see
    variables = {name: value for name, value in row.items() if name in template.variables}
    try:
        return render(template, variables)
    except RenderError as exc:
        raise UnusableRow(f"the prompt version cannot render this row: {exc}") from exc


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise UnusableRow(f"{field!r} is not a string")
    return value


def _chat(messages: Any) -> tuple[list[dict[str, str]], str]:
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise UnusableRow("'messages' is not a list of {role, content} messages")
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise UnusableRow("the conversation has no assistant message after a first message")
    return [{"role": m["role"], "content": m["content"]} for m in messages[:last]], messages[last]["content"]


def to_example(index: int, row: Any, fmt: str, template: PromptTemplate | None) -> Example:
    """One row as an example (see the module docstring); raises :class:`UnusableRow`."""
    if not isinstance(row, dict):
        raise UnusableRow("the row is not a JSON object")
    try:
        if fmt == "chat":
            messages, reference = _chat(row["messages"])
            if template is not None:
                rendered = _rendered(template, {k: v for k, v in row.items() if k != "messages"})
                prefix = [{"role": "system", "content": rendered}] if isinstance(rendered, str) else rendered
                messages = [*prefix, *messages]
            return Example(index, messages, reference)
        if fmt == "instruction":
            reference = _text(row["completion"], "completion")
            prompt = _text(row["prompt"], "prompt") if template is None else _rendered(template, row)
            return Example(index, prompt, reference)
        if fmt in ("text", "classification"):
            text = _text(row["text"], "text") if template is None else as_text(_rendered(template, row))
            return Example(index, text, None if fmt == "text" else str(row["label"]))
    except KeyError as exc:
        raise UnusableRow(f"a {fmt!r} row needs the field {exc.args[0]!r}") from exc
    raise UnusableRow(f"the {fmt!r} format cannot be evaluated")


def to_examples(
    lines: Iterable[bytes], fmt: str, template: PromptTemplate | None = None
) -> tuple[list[Example], list[RowError]]:
    """The examples of ``lines`` (one split's canonical JSONL rows) and the rows that could not become one."""
    examples, errors = [], []
    for index, line in enumerate(lines):
        try:
            examples.append(to_example(index, orjson.loads(line), fmt, template))
        except orjson.JSONDecodeError as exc:
            errors.append(RowError(index, f"the row is not JSON ({exc})"))
        except UnusableRow as exc:
            errors.append(RowError(index, str(exc)))
    return examples, errors


def input_text(value: Input) -> str:
    """An input as text, for scorers and the artifact's readers: a chat as ``role: content`` paragraphs."""
    return as_text(value)
