"""The fast JSONL parser accepts only what the format's TypeAdapter accepts, and yields the same row; files that are
not UTF-8 are refused naming the line; a CSV file's delimiter is the one its header shows."""

from __future__ import annotations

import pytest

from llmops_datasets.formats import (
    ADAPTERS,
    FileType,
    Format,
    NotUtf8,
    RawRow,
    csv_delimiter,
    encoding_problem,
    jsonl_parser,
    read_rows,
    validate,
)

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
    try:
        row, errors = validate(RawRow(1, raw_json=line), row_format)
    except NotUtf8 as refused:
        row, errors = None, [refused]
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


class TestEncodings:
    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            ("prompt,café".encode("latin-1"), "is not valid UTF-8 (byte 0xe9 at column 11)"),
            ("é,caf\xe9".encode()[:-1], "is not valid UTF-8 (byte 0xc3 at column 6)"),
            ("prompt\n".encode("utf-16"), "the file looks like UTF-16 (it starts with a UTF-16 byte-order mark)"),
            ("prompt\n".encode("utf-16-be"), "the file looks like UTF-16 (NUL bytes between its characters)"),
            ("prompt\n".encode("utf-32"), "the file looks like UTF-32 (it starts with a UTF-32 byte-order mark)"),
            ("prompt\n".encode("utf-32-le"), "the file looks like UTF-32 (NUL bytes between its characters)"),
        ],
        ids=["latin-1", "cut-short", "utf-16-bom", "utf-16-be", "utf-32-bom", "utf-32-le"],
    )
    def test_a_line_that_is_not_utf8_is_described(self, line, problem):
        assert problem in encoding_problem(line)

    def test_utf8_is_not_a_problem(self):
        assert encoding_problem("prompt,café\r\n".encode()) is None

    def test_a_jsonl_line_that_is_not_utf8_refuses_the_file_naming_its_line(self):
        with pytest.raises(NotUtf8) as refused:
            validate(RawRow(3, raw_json='{"text": "café"}'.encode("latin-1")), Format.TEXT)
        assert (refused.value.line, refused.value.problem) == (3, "is not valid UTF-8 (byte 0xe9 at column 14)")
        assert str(refused.value).startswith("line 3 is not valid UTF-8") and "re-save it as UTF-8" in str(
            refused.value
        )

    def test_the_first_jsonl_line_may_start_with_a_byte_order_mark(self):
        assert validate(RawRow(1, raw_json=b'\xef\xbb\xbf{"text": "a"}\n'), Format.TEXT) == ({"text": "a"}, [])


class TestCsv:
    @pytest.mark.parametrize(
        ("header", "delimiter"),
        [
            ("prompt,completion", ","),
            ("prompt;completion", ";"),
            ("prompt\tcompletion", "\t"),
            ("completion|prompt", "|"),
        ],
    )
    def test_the_delimiter_is_the_one_that_gives_the_required_columns(self, header, delimiter):
        assert csv_delimiter(header + "\r\n", {"prompt", "completion"}) == delimiter

    def test_a_comma_wins_when_every_delimiter_gives_the_columns(self):
        assert csv_delimiter("text\n", {"text"}) == ","

    def test_no_delimiter_when_none_gives_the_columns(self):
        assert csv_delimiter("prompt;answer\n", {"prompt", "completion"}) is None

    def test_a_byte_order_mark_is_not_part_of_the_first_column(self, tmp_path):
        path = tmp_path / "bom.csv"
        path.write_bytes(b"\xef\xbb\xbfprompt;completion\r\na;b\r\n")
        assert [(r.line, r.value) for r in read_rows(path, FileType.CSV, Format.INSTRUCTION)] == [
            (2, {"prompt": "a", "completion": "b"})
        ]

    def test_a_line_past_the_decoder_s_first_read_is_named(self, tmp_path):
        path = tmp_path / "latin-1.csv"
        path.write_bytes(b"text\n" + b"fine\r\n" * 5000 + "café\n".encode("latin-1"))
        rows = read_rows(path, FileType.CSV, Format.TEXT)
        with pytest.raises(NotUtf8) as refused:
            list(rows)
        assert (refused.value.line, refused.value.problem) == (5002, "is not valid UTF-8 (byte 0xe9 at column 4)")

    def test_an_asked_delimiter_that_does_not_give_the_columns_names_the_one_that_does(self, tmp_path):
        path = tmp_path / "semicolons.csv"
        path.write_bytes(b"prompt;completion\na;b\n")
        [row] = read_rows(path, FileType.CSV, Format.INSTRUCTION, "|")
        assert (
            row.line == 1 and "split at pipes as asked; split at semicolons it has them: pass delimiter=;" in row.error
        )
