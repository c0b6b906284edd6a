"""Uploaded base model archives: only a plain tar of files and directories within the limits is unpacked, and a
model directory's description reads safetensors headers within theirs (the API's tests cover the upload itself)."""

from __future__ import annotations

import json
import struct
import tarfile
import time
import tracemalloc

import pytest

from llmops.errors import Problem
from llmops_training.archives import describe, extract

from .conftest import CONFIG, member, safetensors_claiming, tar_with

LIMITS = {"max_bytes": 1024**2, "max_members": 100}


def unpack(tmp_path, archive: bytes, **limits):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "upload.tar").write_bytes(archive)
    return extract(tmp_path / "upload.tar", tmp_path / "model", **(LIMITS | limits))


def refusal(tmp_path, archive: bytes, **limits) -> Problem:
    with pytest.raises(Problem) as refused:
        unpack(tmp_path, archive, **limits)
    assert not (tmp_path / "model").exists()  # nothing unpacked
    return refused.value


def model_dir(tmp_path, weights: bytes):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors").write_bytes(weights)
    return tmp_path


def safetensors_of(shapes: dict[str, list[int]]) -> bytes:
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + bytes(offset)


class TestExtracting:
    def test_a_plain_tar_of_a_model_directory_is_unpacked_to_its_root(self, tmp_path):
        root = unpack(tmp_path, tar_with(CONFIG, member("model/sub/readme.txt", b"hi")))
        assert root == tmp_path / "model" / "model" and (root / "sub" / "readme.txt").read_bytes() == b"hi"

    @pytest.mark.parametrize(("mode", "kind"), [("w:gz", "gzip"), ("w:bz2", "bzip2"), ("w:xz", "xz")])
    def test_a_compressed_tar_is_refused_by_its_format(self, tmp_path, mode, kind):
        problem = refusal(tmp_path, tar_with(CONFIG, mode=mode))
        assert problem.status == 422 and f"the upload is {kind}-compressed" in problem.detail

    def test_zstd_is_refused_by_its_magic_bytes(self, tmp_path):
        problem = refusal(tmp_path, b"\x28\xb5\x2f\xfd" + bytes(100))
        assert problem.status == 422 and "compressed archives are refused" in problem.detail

    @pytest.mark.parametrize(
        ("entry", "kind"),
        [
            (member("model/pipe", type=tarfile.FIFOTYPE), "a FIFO"),
            (member("model/tty", type=tarfile.CHRTYPE), "a device"),
            (member("model/disk", type=tarfile.BLKTYPE), "a device"),
        ],
        ids=["fifo", "character device", "block device"],
    )
    def test_a_special_file_is_refused_naming_it(self, tmp_path, entry, kind):
        problem = refusal(tmp_path, tar_with(CONFIG, entry))
        assert problem.status == 422 and f"{entry[0].name!r} is {kind}" in problem.detail

    def test_the_size_limit_counts_every_file(self, tmp_path):
        archive = tar_with(CONFIG, member("model/a.bin", bytes(600)), member("model/b.bin", bytes(600)))
        problem = refusal(tmp_path, archive, max_bytes=1000)
        assert problem.status == 413 and "'model/b.bin'" in problem.detail and "limit of 1000 bytes" in problem.detail

    def test_the_member_limit_counts_directories_too(self, tmp_path):
        directory = member("model", type=tarfile.DIRTYPE)
        assert unpack(tmp_path / "two", tar_with(directory, CONFIG), max_members=2).name == "model"
        problem = refusal(tmp_path / "three", tar_with(directory, CONFIG, member("model/x", b"x")), max_members=2)
        assert problem.status == 422 and "more than 2 members" in problem.detail


class TestDescribing:
    def test_parameters_are_counted_from_the_safetensors_headers(self, tmp_path):
        directory = model_dir(tmp_path, safetensors_of({"w": [2, 3], "b": [3]}))
        assert describe(directory) == {"architecture": "llama", "parameters": 9}

    def test_a_header_claiming_a_terabyte_is_refused_without_allocating_it(self, tmp_path):
        directory = model_dir(tmp_path, safetensors_claiming(1024**4))
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(Problem) as refused:
                describe(directory)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert refused.value.status == 422 and "model.safetensors" in refused.value.detail
        assert peak < 1024**2 and time.monotonic() - started < 10  # the header is never read whole

    def test_a_header_larger_than_its_file_is_refused(self, tmp_path):
        directory = model_dir(tmp_path, safetensors_claiming(1000))
        with pytest.raises(Problem) as refused:
            describe(directory)
        assert refused.value.status == 422 and "model.safetensors is not a readable safetensors file" in str(
            refused.value.detail
        )

    @pytest.mark.parametrize(
        ("config", "reason"),
        [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"), (" " * 1024**2 + "{}", "larger than")],
        ids=["malformed", "not an object", "too large"],
    )
    def test_a_config_that_is_not_a_model_s_is_refused(self, tmp_path, config, reason):
        directory = model_dir(tmp_path, safetensors_of({"w": [1]}))
        (directory / "config.json").write_text(config)
        with pytest.raises(Problem) as refused:
            describe(directory)
        assert refused.value.status == 422 and reason in refused.value.detail
