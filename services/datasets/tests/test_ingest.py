"""The ingest pipeline as a pure function over files: normalisation, splits, diffs."""

from __future__ import annotations

import hashlib
import io
import os
import random

import orjson
import pytest

from llmops_datasets import ingest as ingest_module
from llmops_datasets.arriving import ArrivingFile
from llmops_datasets.cleaning import normalize_text
from llmops_datasets.digests import diff
from llmops_datasets.formats import FileType, Format
from llmops_datasets.ingest import (
    CleaningConfig,
    SplitConfig,
    ingest,
    ingest_jsonl,
)
from llmops_schemas.splits import SPLITS, point_bound


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("  padded  ", "padded"),
        ("a  b\tc", "a b c"),
        ("line one \r\n line two", "line one\nline two"),
        ("a\n\n\n\nb", "a\n\nb"),
        ("Cafe\u0301", "Café"),
        ("\u00a0non-breaking\u00a0", "non-breaking"),
        ("", ""),
    ],
)
def test_normalisation(raw, clean):
    assert normalize_text(raw) == clean


def write(path, rows):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


class TestIngest:
    def test_the_same_rows_in_any_key_order_hash_the_same(self, tmp_path):
        a = write(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}])
        b = write(tmp_path / "b.jsonl", [{"completion": "c", "prompt": "p"}])
        (tmp_path / "wa").mkdir()
        (tmp_path / "wb").mkdir()
        first = ingest(
            a, FileType.JSONL, Format.INSTRUCTION, tmp_path / "wa", cleaning=CleaningConfig(), split=SplitConfig()
        )
        second = ingest(
            b, FileType.JSONL, Format.INSTRUCTION, tmp_path / "wb", cleaning=CleaningConfig(), split=SplitConfig()
        )
        assert first.sha256 == second.sha256

    def test_splits_follow_the_ratios_and_change_with_the_seed(self, tmp_path):
        source = write(tmp_path / "s.jsonl", [{"text": f"row {i}"} for i in range(5000)])
        counts = []
        for seed in (1, 2):
            work = tmp_path / f"w{seed}"
            work.mkdir()
            result = ingest(
                source,
                FileType.JSONL,
                Format.TEXT,
                work,
                cleaning=CleaningConfig(),
                split=SplitConfig(train=0.7, validation=0.2, test=0.1, seed=seed),
            )
            counts.append(result.splits["counts"])
        for c in counts:
            assert abs(c["train"] / 5000 - 0.7) < 0.03 and abs(c["test"] / 5000 - 0.1) < 0.02
        assert counts[0] != counts[1]

    def test_the_diff_counts_distinct_rows_added_and_removed(self, tmp_path):
        old = write(tmp_path / "old.jsonl", [{"text": str(i)} for i in range(100)])
        new = write(tmp_path / "new.jsonl", [{"text": str(i)} for i in range(10, 130)])
        results = []
        for name, source in (("wo", old), ("wn", new)):
            (tmp_path / name).mkdir()
            results.append(
                ingest(
                    source, FileType.JSONL, Format.TEXT, tmp_path / name, cleaning=CleaningConfig(), split=SplitConfig()
                )
            )
        assert diff(results[0].row_hashes, results[1].row_hashes) == {"added": 30, "removed": 10, "unchanged": 90}

    @pytest.mark.parametrize(
        ("row_format", "rows"),
        [
            (
                Format.CHAT,
                [
                    {
                        "messages": [
                            {"role": "user", "content": "hi, run-1-123456"},
                            {"role": "assistant", "content": "ring +44 20 7946 0958"},
                        ]
                    }
                ],
            ),
            (Format.INSTRUCTION, [{"prompt": "v1.2.3 of 2024", "completion": "mail a@b.com, NINO AB 12 34 56 C"}]),
            (
                Format.CLASSIFICATION,
                [{"text": "SSN 536-90-4399", "label": "x"}, {"text": "nothing at all", "label": "y"}],
            ),
        ],
    )
    def test_pii_in_any_text_of_a_row_is_redacted_and_counted(self, tmp_path, row_format, rows):
        source = write(tmp_path / "s.jsonl", rows)
        cleaning = CleaningConfig(redact_pii=frozenset({"email", "phone", "national_id"}))
        result = ingest(source, FileType.JSONL, row_format, tmp_path, cleaning=cleaning, split=SplitConfig())
        text = result.cleaned.read_text()
        assert result.cleaning["rows_with_pii"] == 1
        assert sum(result.cleaning["pii_redacted"].values()) == (2 if row_format is Format.INSTRUCTION else 1)
        assert "7946" not in text and "a@b.com" not in text and "536-90" not in text and "AB 12" not in text
        assert "run-1-123456" in text or row_format is not Format.CHAT

    def test_ratios_that_do_not_sum_to_one_are_refused(self):
        with pytest.raises(ValueError, match="must be 1"):
            SplitConfig(train=0.5, validation=0.1, test=0.1)

    def test_rows_go_to_the_given_output_rather_than_a_file(self, tmp_path):
        source = write(tmp_path / "s.jsonl", [{"text": f"row {i % 40}"} for i in range(100)])
        (tmp_path / "file").mkdir()
        (tmp_path / "out").mkdir()
        config = {"cleaning": CleaningConfig(), "split": SplitConfig()}
        to_file = ingest(source, FileType.JSONL, Format.TEXT, tmp_path / "file", **config)
        out = io.BytesIO()
        to_out = ingest(source, FileType.JSONL, Format.TEXT, tmp_path / "out", **config, out=out)
        assert to_out.cleaned is None and out.getvalue() == to_file.cleaned.read_bytes()
        assert (to_out.sha256, to_out.size, to_out.stats) == (to_file.sha256, to_file.size, to_file.stats)
        assert to_out.sha256 == hashlib.sha256(out.getvalue()).hexdigest()

    def test_an_upload_cleaned_while_it_arrives_gives_what_the_whole_file_gives(self, tmp_path):
        rows = [{"text": f"  row {i % 70}  "} for i in range(500)] + [{"txt": "invalid"}]
        source = write(tmp_path / "s.jsonl", rows)
        (tmp_path / "whole").mkdir()
        (tmp_path / "arriving").mkdir()
        config = {"cleaning": CleaningConfig(), "split": SplitConfig(seed=3)}
        whole = ingest(source, FileType.JSONL, Format.TEXT, tmp_path / "whole", **config)

        spooled, arriving = tmp_path / "spooled", ArrivingFile(tmp_path / "spooled")
        data = source.read_bytes()
        with spooled.open("wb") as out:
            for start in range(0, len(data), 1000):
                out.write(data[start : start + 1000])
                out.flush()
                arriving.wrote(data[start : start + 1000])
        arriving.end()
        with arriving.reader() as lines:
            streamed = ingest_jsonl(lines, Format.TEXT, tmp_path / "arriving", **config)
        assert streamed.cleaned.read_bytes() == whole.cleaned.read_bytes()
        assert (streamed.sha256, streamed.stats, streamed.cleaning, streamed.splits) == (
            whole.sha256,
            whole.stats,
            whole.cleaning,
            whole.splits,
        )
        assert streamed.errors == whole.errors and streamed.errors[0].line == 501


class TestNormalisationShortcut:
    """Rows whose bytes show normalisation has nothing to do skip it; every other row is normalised."""

    @pytest.mark.parametrize(
        "content",
        [
            "clean words",
            "two  spaces",
            " leading",
            "trailing ",
            "",
            'a "quoted" word',
            'ends with a quote "',
            "tab\there",
            "line\nbreak",
            "Cafe\u0301",
            "caf\u00e9 ",
        ],
    )
    def test_a_chat_row_is_stored_normalised_whatever_its_bytes(self, tmp_path, content):
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "ok"}]
        source = tmp_path / "s.jsonl"
        source.write_bytes(orjson.dumps({"messages": messages}) + b"\n")
        config = {"cleaning": CleaningConfig(drop_empty=False), "split": SplitConfig()}
        result = ingest(source, FileType.JSONL, Format.CHAT, tmp_path, **config)
        stored = orjson.loads(result.cleaned.read_bytes())
        assert stored["messages"][0]["content"] == normalize_text(content)


def varied_chat_rows(count: int, *, every: int = 9) -> list[bytes]:
    """Chat rows, most already normal, one in ``every`` not (spacing, non-ASCII, escapes), and some broken or blank
    lines."""
    odd = ["two  spaces", " leading", "caf\u00e9", 'a "quote"', "tab\there", "Cafe\u0301 ", "line\nbreak"]
    lines = []
    for i in range(count):
        content = f"question {i}" if i % every else f"{odd[i % len(odd)]} {i}"
        lines.append(
            orjson.dumps({"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "ok"}]})
        )
        if i % 101 == 0:
            lines.append(b"")
        if i % 157 == 0:
            lines.append(b'{"messages": [')
    return lines


class TestRowsReadABlockAtATime:
    """Lines are parsed and judged for normalisation a block at a time: the result is that of one line at a time."""

    def run(self, tmp_path, name, source, **cleaning):
        work = tmp_path / name
        work.mkdir()
        config = {"cleaning": CleaningConfig(**cleaning), "split": SplitConfig(seed=5)}
        return ingest(source, FileType.JSONL, Format.CHAT, work, **config)

    def test_blocks_give_what_single_lines_give(self, tmp_path, monkeypatch):
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(varied_chat_rows(3000)) + b"\n")
        assert source.stat().st_size > 3 * ingest_module.BLOCK_BYTES
        blocks = self.run(tmp_path, "blocks", source)
        monkeypatch.setattr(ingest_module, "BLOCK_BYTES", 1)  # every line a block of its own
        lines = self.run(tmp_path, "lines", source)
        assert blocks.cleaned.read_bytes() == lines.cleaned.read_bytes()
        assert (blocks.stats, blocks.cleaning, blocks.splits, blocks.errors) == (
            lines.stats,
            lines.cleaning,
            lines.splits,
            lines.errors,
        )
        assert blocks.cleaning["rows_normalized"] > 0 and blocks.invalid_rows == 20
        originals = [orjson.loads(line) for line in source.read_bytes().splitlines() if line.endswith(b"}")]
        stored = [orjson.loads(line) for line in blocks.cleaned.read_bytes().splitlines()]
        wanted = {normalize_text(row["messages"][0]["content"]) for row in originals}
        assert {row["messages"][0]["content"] for row in stored} == wanted

    @pytest.mark.parametrize("every", [9, 10**6], ids=["some-blocks-need-normalising", "no-block-does"])
    def test_rows_only_the_format_accepts_keep_their_place_and_are_normalised(self, tmp_path, monkeypatch, every):
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(varied_chat_rows(2000, every=every)) + b"\n")
        fast = self.run(tmp_path, "fast", source)
        check = ingest_module.FAST_CHECKS[Format.CHAT]
        # The quick check refuses rows with a 7 in them: the format's validation accepts them instead.
        monkeypatch.setitem(ingest_module.FAST_CHECKS, Format.CHAT, lambda row: "7" not in str(row) and check(row))
        slow = self.run(tmp_path, "slow", source)
        assert slow.cleaned.read_bytes() == fast.cleaned.read_bytes()
        assert (slow.stats, slow.cleaning, slow.errors) == (fast.stats, fast.cleaning, fast.errors)


def reference_split_of(split: SplitConfig, digest: bytes) -> str:
    """The split formula as first written (BLAKE2b keyed by the seed, divided by 2**64), to pin the fast one to."""
    key = split.seed.to_bytes(8, "big")
    point = int.from_bytes(hashlib.blake2b(digest, digest_size=8, key=key).digest(), "big") / 2**64
    return "train" if point < split.train else "validation" if point < split.train + split.validation else "test"


class TestSplitIndex:
    @pytest.mark.parametrize(
        "split",
        [
            SplitConfig(),
            SplitConfig(train=0.7, validation=0.2, test=0.1, seed=12345),
            SplitConfig(train=1, validation=0, test=0, seed=0),
            SplitConfig(train=0, validation=0.5, test=0.5, seed=2**63 - 1),
        ],
        ids=["default", "other-ratios", "all-train", "no-train"],
    )
    def test_it_assigns_every_digest_as_the_split_config_does(self, split):
        for _ in range(20_000):
            digest = os.urandom(16)
            assert SPLITS[split.split_index(digest)] == split.split_of(digest) == reference_split_of(split, digest)


class TestPointBound:
    """Comparing a hash's 8 bytes with the bound is comparing its point (value * 2**-64, a float) with the fraction."""

    @pytest.mark.parametrize(
        "fraction",
        [0.0, 1.0, 0.8, 0.9, 0.1, 0.7 + 0.2, 0.8 + 0.1, 1e-300, 2.0**-64, 2.0**-60 * 3, 1 - 2.0**-53, 0.5, 0.3333],
    )
    def test_values_either_side_of_the_bound_fall_where_their_point_falls(self, fraction):
        bound = point_bound(fraction)
        edge = int.from_bytes(bound, "big") if len(bound) == 8 else 2**64
        for value in {0, 1, edge - 2, edge - 1, edge, edge + 1, 2**64 - 1} | {
            random.randrange(2**64) for _ in range(50)
        }:
            if 0 <= value < 2**64:
                assert (value.to_bytes(8, "big") < bound) == (value * 2.0**-64 < fraction), value
