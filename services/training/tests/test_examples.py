"""Training examples from a split's rows: streamed to a file a row at a time, whatever the split's size."""

from __future__ import annotations

import tracemalloc

import orjson

from llmops_training.examples import read_examples, to_examples, write_examples


def rows(count: int, size: int = 1024):
    """Canonical JSONL lines, made one at a time (the test holds none of them)."""
    for i in range(count):
        yield orjson.dumps({"prompt": f"Question {i}: " + "x" * size, "completion": f" answer {i}"}) + b"\n"


class TestWritingExamples:
    def test_holds_one_row_at_a_time_whatever_the_split_s_size(self, tmp_path):
        # 20,000 rows of 1 KB: the split is 20 MB, what the writer holds at any time must not grow with it
        tracemalloc.start()
        try:
            with (tmp_path / "examples.jsonl").open("wb") as out:
                count = write_examples(rows(20_000), "instruction", None, out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == 20_000
        assert peak < 1024 * 1024, f"the writer held {peak} bytes at its peak"

    def test_writes_every_example_in_order(self, tmp_path):
        with (tmp_path / "examples.jsonl").open("wb") as out:
            assert write_examples(rows(300, size=10), "instruction", None, out) == 300
        assert read_examples(tmp_path / "examples.jsonl") == to_examples(rows(300, size=10), "instruction")
