"""The ingest pipeline as a pure function over files: normalisation, splits, diffs."""

from __future__ import annotations

import orjson
import pytest

from llmops_datasets.formats import FileType, Format
from llmops_datasets.ingest import CleaningConfig, SplitConfig, diff, ingest, normalize_text


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

    def test_ratios_that_do_not_sum_to_one_are_refused(self):
        with pytest.raises(ValueError, match="must be 1"):
            SplitConfig(train=0.5, validation=0.1, test=0.1)
