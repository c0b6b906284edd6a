"""The fast JSONL parser accepts only what the format's TypeAdapter accepts, and yields the same row."""

from __future__ import annotations

import pytest

from llmops_datasets.formats import ADAPTERS, Format, RawRow, jsonl_parser, validate

LINES = [
    b'{"text": "a"}',
    b'{"text": "a", "text": "b"}',
    b'{"text": "a\\u0000\\ud83d\\ude00"}\r\n',
    b'{"text": "\\ud800"}',
    b'{"text": "\xff"}',
    b'\xef\xbb\xbf{"text": "a"}',
    b'{"text": "a"} trailing',
    b'{"text": 1}',
    b'{"text": "a", "extra": 1}',
    b'{"text": "a", "label": 1}',
    b'{"text": "a", "label": true}',
    b'{"text": "a", "label": 1.0}',
    b'{"text": "a", "label": 99999999999999999999999}',
    b'{"text": "a", "label": -9223372036854775808}',
    b'{"prompt": "p", "completion": "c"}',
    b'{"prompt": "p", "completion": null}',
    b'{"messages": []}',
    b'{"messages": [{"role": "user", "content": "x"}]}',
    b'{"messages": [{"role": "robot", "content": "x"}]}',
    b'{"messages": [{"role": ["user"], "content": "x"}]}',
    b'{"messages": [{"role": "user", "content": "x", "name": "n"}]}',
    b'{"messages": [{"role": "user"}]}',
    b"[1, 2]",
    b'"a row"',
]


@pytest.mark.parametrize("row_format", list(Format))
@pytest.mark.parametrize("line", LINES)
def test_the_fast_parser_never_accepts_what_validation_refuses(row_format, line):
    fast = jsonl_parser(row_format)(line)
    row, errors = validate(RawRow(1, raw_json=line), row_format)
    if fast is not None:
        assert fast == row and not errors
        assert fast == ADAPTERS[row_format].validate_json(line)


def test_an_integer_label_past_64_bits_is_refused_on_its_field():
    row, errors = validate(
        RawRow(7, raw_json=b'{"text": "a", "label": 99999999999999999999999}'), Format.CLASSIFICATION
    )
    assert row is None
    assert {(e.line, e.field.split(".")[0]) for e in errors} == {(7, "label")}
    assert any("less than or equal to 18446744073709551615" in e.message for e in errors), errors
    row, errors = validate(RawRow(1, raw_json=b'{"text": "a", "label": 18446744073709551615}'), Format.CLASSIFICATION)
    assert row == {"text": "a", "label": 2**64 - 1} and not errors
