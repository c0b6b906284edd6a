"""The parallel ingest gives exactly what one pass over the file gives: hash, rows, report, stats, splits, errors."""

from __future__ import annotations

import io
import os
import time

import orjson
import pytest

from llmops_datasets.formats import FileType, Format
from llmops_datasets.ingest import CleaningConfig, SplitConfig, ingest
from llmops_datasets.parallel import Blocks, IngestPool, StreamedIngest, WorkerFailed


def chat(text: str, role: str = "user") -> bytes:
    return orjson.dumps({"messages": [{"role": role, "content": text}, {"role": "assistant", "content": "ok"}]})


def mixed_rows(count: int) -> list[bytes]:
    """Rows of every kind the cleaning treats differently, with repeats far apart (across blocks)."""
    lines = []
    for i in range(count):
        lines.append(chat(f"question {i % 50}"))  # repeats every 50 rows
        if i % 7 == 0:
            lines.append(chat(f"  spaced   out {i % 30}\r\n\n\n\nend "))  # normalised, repeats too
        if i % 11 == 0:
            lines.append(chat(f"Cafe\u0301 {i}", role="system"))  # non-ASCII, NFC changes it
        if i % 13 == 0:
            lines.append(b"")  # a blank line: not a row, but it counts in line numbers
        if i % 17 == 0:
            lines.append(chat("   "))  # empty after normalisation
        if i % 19 == 0:
            lines.append(b'{"messages": [{"role": "robot", "content": "x"}]}')  # invalid: unknown role
        if i % 23 == 0:
            lines.append(b'{"messages": [')  # invalid: broken JSON
    return lines


def sequential(tmp_path, source, row_format=Format.CHAT, **cleaning):
    work = tmp_path / "sequential"
    work.mkdir()
    return ingest(
        source, FileType.JSONL, row_format, work, cleaning=CleaningConfig(**cleaning), split=SplitConfig(seed=7)
    )


def parallel(tmp_path, source, row_format=Format.CHAT, *, block_bytes=2048, chunk=333, **cleaning):
    work = tmp_path / "parallel"
    work.mkdir()
    config = CleaningConfig(**cleaning)
    with StreamedIngest(
        source, row_format, work, cleaning=config, split=SplitConfig(seed=7), workers=2, block_bytes=block_bytes
    ) as job:
        data = source.read_bytes()
        for start in range(0, len(data), chunk):
            job.feed(data[start : start + chunk])
        assert job.started
        return job.finish()


def same(a, b) -> None:
    assert a.sha256 == b.sha256 and a.size == b.size
    assert a.cleaned.read_bytes() == b.cleaned.read_bytes()
    assert a.row_hashes.read_bytes() == b.row_hashes.read_bytes()
    assert (a.stats, a.cleaning, a.splits, a.invalid_rows) == (b.stats, b.cleaning, b.splits, b.invalid_rows)
    assert a.errors == b.errors


class TestParallelIngest:
    def test_duplicates_across_blocks_errors_and_cleaning_match_one_pass(self, tmp_path):
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(mixed_rows(400)) + b"\n")
        expected, got = sequential(tmp_path, source), parallel(tmp_path, source)
        same(got, expected)
        assert expected.cleaning["duplicates_removed"] > 0 and expected.cleaning["rows_normalized"] > 0
        assert len(expected.errors) == 20 and expected.invalid_rows > 20

    def test_an_error_in_a_later_block_names_its_line_in_the_file(self, tmp_path):
        lines = [chat(f"row {i}") for i in range(300)]
        lines[250] = b'{"messages": "not a list"}'
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(lines))  # and no newline after the last line
        got = parallel(tmp_path, source)
        same(got, sequential(tmp_path, source))
        assert [(e.line, e.field) for e in got.errors] == [(251, "messages")]

    def test_without_deduplication_repeats_are_all_kept(self, tmp_path):
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(mixed_rows(200)) + b"\n")
        got = parallel(tmp_path, source, dedupe=False)
        same(got, sequential(tmp_path, source, dedupe=False))
        assert got.cleaning["duplicates_removed"] == 0

    @pytest.mark.parametrize("row_format", [Format.CLASSIFICATION, Format.INSTRUCTION])
    def test_other_formats_and_length_filters_match_one_pass(self, tmp_path, row_format):
        def row(i: int) -> dict:
            if row_format is Format.CLASSIFICATION:
                return {"text": "word " * (i % 9), "label": i % 3 if i % 2 else f"l{i % 4}"}
            return {"prompt": f"p {i % 40}", "completion": "c" * (i % 12)}

        source = tmp_path / "in.jsonl"
        source.write_bytes(b"".join(orjson.dumps(row(i)) + b"\n" for i in range(600)))
        got = parallel(tmp_path, source, row_format, min_chars=3, max_chars=30)
        same(got, sequential(tmp_path, source, row_format, min_chars=3, max_chars=30))

    def test_the_merge_writes_to_a_given_output_while_the_workers_clean(self, tmp_path):
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(mixed_rows(300)) + b"\n")
        out, work = io.BytesIO(), tmp_path / "out"
        work.mkdir()
        with StreamedIngest(
            source,
            Format.CHAT,
            work,
            cleaning=CleaningConfig(),
            split=SplitConfig(seed=7),
            workers=2,
            block_bytes=2048,
            out=out,
        ) as job:
            job.feed(source.read_bytes())
            got = job.finish()
        expected = sequential(tmp_path, source)
        assert got.cleaned is None and out.getvalue() == expected.cleaned.read_bytes()
        assert (got.sha256, got.stats, got.cleaning, got.splits) == (
            expected.sha256,
            expected.stats,
            expected.cleaning,
            expected.splits,
        )

    def test_an_abandoned_ingest_stops_its_workers_and_its_merge(self, tmp_path):
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(mixed_rows(300)) + b"\n")
        job = StreamedIngest(
            source, Format.CHAT, tmp_path, cleaning=CleaningConfig(), split=SplitConfig(), workers=2, block_bytes=2048
        )
        job.feed(source.read_bytes()[:10_000])
        job.__exit__()
        assert job.job is not None and not job.job.merger.is_alive()
        assert job._own_pool is not None
        assert all(process.returncode is not None for process in job._own_pool.processes)


class TestAnIngestPool:
    """Workers started once serve the blocks of every ingest, and survive what goes wrong with one."""

    @pytest.fixture
    def source(self, tmp_path):
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(mixed_rows(300)) + b"\n")
        return source

    def test_its_workers_serve_one_ingest_after_another_alike(self, tmp_path, source):
        expected = sequential(tmp_path, source)
        with IngestPool(2) as pool:
            first = in_pool(pool, source, tmp_path / "first")
            workers = [process.pid for process in pool.processes]
            second = in_pool(pool, source, tmp_path / "second")
            assert [process.pid for process in pool.processes] == workers  # the same processes
        same(first, expected)
        same(second, expected)
        assert all(process.returncode is not None for process in pool.processes)

    def test_an_abandoned_ingest_leaves_the_pool_serving(self, tmp_path, source):
        with IngestPool(1) as pool:
            (tmp_path / "abandoned").mkdir()
            job = StreamedIngest(
                source,
                Format.CHAT,
                tmp_path / "abandoned",
                cleaning=CleaningConfig(),
                split=SplitConfig(seed=7),
                pool=pool,
                block_bytes=512,
            )
            job.feed(source.read_bytes())
            job.__exit__()
            assert job.job is not None and not job.job.merger.is_alive()
            assert any(future.cancelled() for future in job.job.results)  # queued blocks were dropped
            assert all(future.done() for future in job.job.results)  # and none is still being cleaned
            same(in_pool(pool, source, tmp_path / "next"), sequential(tmp_path, source))

    def test_a_worker_killed_on_a_block_fails_it_and_is_started_again(self, tmp_path, source):
        fifo = tmp_path / "never-written"
        os.mkfifo(fifo)  # the worker waits on it for ever
        with IngestPool(1) as pool:
            future = pool.submit(a_block(fifo, tmp_path))
            while not future.running():
                time.sleep(0.01)
            killed = pool.processes[0]
            killed.kill()
            with pytest.raises(WorkerFailed, match="stopped: killed by SIGKILL"):
                future.result(timeout=60)
            same(in_pool(pool, source, tmp_path / "again"), sequential(tmp_path, source))
            assert pool.processes[0].pid != killed.pid

    def test_a_worker_that_died_idle_is_replaced_before_its_next_block(self, tmp_path, source):
        with IngestPool(1) as pool:
            killed = pool.processes[0]
            killed.kill()
            killed.wait()
            same(in_pool(pool, source, tmp_path / "after"), sequential(tmp_path, source))
            assert pool.processes[0].pid != killed.pid

    def test_a_block_that_fails_names_its_error_and_the_worker_goes_on(self, tmp_path, source):
        with IngestPool(1) as pool:
            with pytest.raises(WorkerFailed, match="FileNotFoundError"):
                pool.submit(a_block(tmp_path / "missing.jsonl", tmp_path)).result(timeout=60)
            same(in_pool(pool, source, tmp_path / "next"), sequential(tmp_path, source))

    def test_ingests_take_turns_so_a_small_one_is_not_queued_behind_a_large_one(self, tmp_path, source):
        served, futures = [], []
        with IngestPool(1) as pool:
            for owner, blocks in (("large", 8), ("small", 2)):
                for n in range(blocks):
                    (tmp_path / f"{owner}-{n}").mkdir()
                    futures.append(pool.submit(a_block(source, tmp_path / f"{owner}-{n}"), owner=owner))
                    futures[-1].add_done_callback(lambda _, label=f"{owner}-{n}": served.append(label))
        assert all(future.exception() is None for future in futures)
        # One worker: the large ingest's first block may already run; after it the two take turns, a block each.
        assert served.index("small-1") < served.index("large-4")
        assert [label for label in served if label.startswith("large")] == [f"large-{n}" for n in range(8)]

    def test_a_closed_pool_takes_no_more_blocks(self):
        pool = IngestPool(1)
        pool.close()
        with pytest.raises(RuntimeError, match="closed"):
            pool.submit({})


def a_block(path, tmp_path) -> dict:
    """A pool task: the first 10 bytes of ``path``, default cleaning."""
    task = {"source": str(path), "format": "chat", "cleaning": {}, "split": {}}
    return task | {"start": 0, "end": 10, "first_line": 1, "part": str(tmp_path / "part")}


def in_pool(pool: IngestPool, source, work):
    work.mkdir()
    with StreamedIngest(
        source, Format.CHAT, work, cleaning=CleaningConfig(), split=SplitConfig(seed=7), pool=pool, block_bytes=2048
    ) as job:
        job.feed(source.read_bytes())
        return job.finish()


class TestBlocks:
    def test_blocks_end_at_line_ends_and_know_their_first_line(self):
        data = b"".join(b"line %d\n" % i for i in range(1, 101)) + b"last"
        cut = []
        blocks = Blocks(lambda start, end, first: cut.append((start, end, first)), size=100)
        for start in range(0, len(data), 37):
            blocks.feed(data[start : start + 37])
        blocks.close()
        assert cut[0][0] == 0 and cut[-1][1] == len(data)
        for (start, end, first), following in zip(cut, [*cut[1:], None], strict=True):
            assert end == len(data) or data[end - 1 : end] == b"\n"
            assert first == data[:start].count(b"\n") + 1
            if following is not None:
                assert following[0] == end and end - start >= 100

    def test_a_stream_smaller_than_a_block_is_one_block(self):
        cut = []
        blocks = Blocks(lambda *block: cut.append(block), size=1000)
        blocks.feed(b'{"text": "a"}\n')
        blocks.close()
        assert cut == [(0, 14, 1)]
