"""An upload read while it is spooled: reads wait for bytes the writer reports, end at its end, stop on abort."""

from __future__ import annotations

import threading

import pytest

from llmops_datasets.arriving import ArrivingFile, UploadAborted


def read_all_in_a_thread(arriving: ArrivingFile) -> tuple[threading.Thread, list]:
    got: list = []

    def read() -> None:
        try:
            with arriving.reader(buffer_size=8) as lines:
                got.extend(lines)
        except UploadAborted as exc:
            got.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    return thread, got


class TestArrivingFile:
    def test_lines_are_read_as_they_are_written_until_the_end(self, tmp_path):
        path = tmp_path / "upload"
        arriving = ArrivingFile(path)
        thread, got = read_all_in_a_thread(arriving)
        with path.open("wb") as out:
            for chunk in (b'{"a": 1}\n{"b"', b": 2}\n", b'{"c": 3}'):
                out.write(chunk)
                out.flush()
                arriving.wrote(chunk)
        thread.join(0.2)
        assert thread.is_alive(), "the reader returned before the end was announced"
        arriving.end()
        thread.join(5)
        assert got == [b'{"a": 1}\n', b'{"b": 2}\n', b'{"c": 3}']

    def test_bytes_written_but_not_reported_are_not_read(self, tmp_path):
        path = tmp_path / "upload"
        path.write_bytes(b"reported\nnot yet\n")
        arriving = ArrivingFile(path)
        arriving.wrote(b"reported\n")
        arriving.end()
        with arriving.reader() as lines:
            assert list(lines) == [b"reported\n"]

    def test_an_abort_stops_a_waiting_reader(self, tmp_path):
        path = tmp_path / "upload"
        path.write_bytes(b"first\n")
        arriving = ArrivingFile(path)
        thread, got = read_all_in_a_thread(arriving)
        arriving.wrote(b"first\n")
        arriving.abort()
        thread.join(5)
        assert not thread.is_alive() and isinstance(got[-1], UploadAborted)

    def test_an_empty_upload_reads_as_empty(self, tmp_path):
        arriving = ArrivingFile(tmp_path / "never-written")
        arriving.end()
        with arriving.reader() as lines:
            assert list(lines) == []

    def test_a_read_after_an_abort_raises(self, tmp_path):
        arriving = ArrivingFile(tmp_path / "upload")
        arriving.abort()
        with pytest.raises(UploadAborted), arriving.reader() as lines:
            lines.read()
