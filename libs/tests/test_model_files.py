"""Model files written back out: checked, atomic, inside their directory; an adapter's base rewritten; merges cached
once per pair of contents; presigned links fetched (and their expiry told apart) on the real object store."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta

import httpx
import pytest

from llmops import model_files
from llmops.model_files import (
    DestinationNotEmpty,
    LinkExpired,
    ModelFile,
    ModelFilesError,
    merge_adapter,
    merged_cache_path,
    point_adapter_at,
    presigned_fetch,
    store_fetch,
    write_hf_directory,
)
from llmops.storage import ObjectStore


def file_of(path: str, data: bytes, **overrides) -> ModelFile:
    fields = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} | overrides
    return ModelFile(path, **fields)


def serving(contents: dict[str, bytes]):
    """A fetch that serves ``contents`` by path, in two chunks."""

    async def fetch(file: ModelFile):
        data = contents[file.path]
        yield data[: len(data) // 2]
        yield data[len(data) // 2 :]

    return fetch


CONTENTS = {"config.json": b'{"a": 1}', "sub/model.safetensors": b"weights" * 100}
FILES = [file_of(path, data) for path, data in CONTENTS.items()]


def leftovers(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


class TestWritingADirectory:
    async def test_every_file_is_written_where_its_path_says(self, tmp_path):
        seen: list[int] = []
        dest = await write_hf_directory(FILES, tmp_path / "model", serving(CONTENTS), on_bytes=seen.append)
        assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == CONTENTS
        assert sum(seen) == sum(map(len, CONTENTS.values()))
        assert leftovers(tmp_path) == ["model"]  # no temporary directory left beside it

    async def test_an_existing_empty_directory_is_filled(self, tmp_path):
        (tmp_path / "model").mkdir()
        await write_hf_directory(FILES, tmp_path / "model", serving(CONTENTS))
        assert (tmp_path / "model" / "config.json").read_bytes() == CONTENTS["config.json"]

    async def test_finish_sees_the_complete_directory_before_it_is_in_place(self, tmp_path):
        def finish(staging):
            assert not (tmp_path / "model").exists() and (staging / "sub" / "model.safetensors").is_file()
            (staging / "config.json").write_text("rewritten")

        await write_hf_directory(FILES, tmp_path / "model", serving(CONTENTS), finish=finish)
        assert (tmp_path / "model" / "config.json").read_text() == "rewritten"

    async def test_a_directory_that_holds_anything_is_refused_and_left_alone(self, tmp_path):
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "mine.txt").write_text("keep")
        with pytest.raises(DestinationNotEmpty):
            await write_hf_directory(FILES, tmp_path / "model", serving(CONTENTS))
        assert leftovers(tmp_path / "model") == ["mine.txt"] and leftovers(tmp_path) == ["model"]

    @pytest.mark.parametrize(
        "override", [{"sha256": "0" * 64}, {"size": 3}, {"size": 10_000}], ids=["hash", "longer", "shorter"]
    )
    async def test_bytes_that_are_not_the_files_leave_nothing_behind(self, tmp_path, override):
        files = [FILES[0], file_of("sub/model.safetensors", CONTENTS["sub/model.safetensors"], **override)]
        with pytest.raises(ModelFilesError, match=r"sub/model\.safetensors"):
            await write_hf_directory(files, tmp_path / "model", serving(CONTENTS))
        assert leftovers(tmp_path) == []

    @pytest.mark.parametrize("path", ["../evil", "/etc/evil", "a/../../evil", "a\\b", "", "./a", "a//b"])
    async def test_a_path_leaving_the_directory_is_refused_before_anything_is_written(self, tmp_path, path):
        with pytest.raises(ModelFilesError, match="unsafe path"):
            await write_hf_directory([file_of(path, b"x")], tmp_path / "model", serving({path: b"x"}))
        assert leftovers(tmp_path) == []

    async def test_a_path_named_twice_is_refused(self, tmp_path):
        with pytest.raises(ModelFilesError, match="named twice"):
            await write_hf_directory([FILES[0], FILES[0]], tmp_path / "model", serving(CONTENTS))


class TestPointingAnAdapterAtItsBase:
    def adapter(self, tmp_path):
        (tmp_path / "adapter_config.json").write_text(
            json.dumps({"base_model_name_or_path": "/worker/cache/abc", "r": 8, "revision": None})
        )
        return tmp_path

    def test_a_hub_base_is_named_by_id_and_revision(self, tmp_path):
        point_adapter_at(self.adapter(tmp_path), "org/base", revision="abc123")
        config = json.loads((tmp_path / "adapter_config.json").read_text())
        assert config == {"base_model_name_or_path": "org/base", "r": 8, "revision": "abc123"}

    def test_a_downloaded_base_is_named_by_its_absolute_path(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        point_adapter_at(self.adapter(tmp_path), model_files.Path("out/base"), revision="ignored")
        config = json.loads((tmp_path / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tmp_path / "out" / "base") and config["revision"] is None

    def test_a_full_model_has_nothing_to_rewrite(self, tmp_path):
        point_adapter_at(tmp_path, "org/base")
        assert leftovers(tmp_path) == []


class TestMergeCache:
    def test_one_path_per_pair_of_contents(self, tmp_path):
        a, b = "a" * 64, "b" * 64
        assert merged_cache_path(tmp_path, a, b) == merged_cache_path(tmp_path, a, b)
        assert merged_cache_path(tmp_path, a, b) != merged_cache_path(tmp_path, b, a)
        assert merged_cache_path(tmp_path, a, b).parent == tmp_path / "merged"

    def test_a_completed_merge_is_not_merged_again(self, tmp_path, monkeypatch):
        out = tmp_path / "merged" / "key"
        out.mkdir(parents=True)
        (out / model_files.COMPLETE).write_text("pair")

        def must_not_merge(*args):
            raise AssertionError("merged again")

        monkeypatch.setattr(model_files, "_merge", must_not_merge)
        assert merge_adapter(tmp_path / "base", tmp_path / "adapter", out, marker="pair") == out

    def test_a_merge_finished_first_elsewhere_wins_and_this_one_is_discarded(self, tmp_path, monkeypatch):
        out = tmp_path / "merged" / "key"

        def merge_while_another_finishes(base, adapter, staging, revision):
            (staging / "model.safetensors").write_bytes(b"mine")
            out.mkdir(parents=True)  # the other process renamed its merge into place meanwhile
            (out / "model.safetensors").write_bytes(b"theirs")
            (out / model_files.COMPLETE).write_text("pair")

        monkeypatch.setattr(model_files, "_merge", merge_while_another_finishes)
        assert merge_adapter(tmp_path / "base", tmp_path / "adapter", out, marker="pair") == out
        assert (out / "model.safetensors").read_bytes() == b"theirs"
        assert leftovers(out.parent) == ["key"]

    def test_a_failed_merge_leaves_nothing(self, tmp_path, monkeypatch):
        def broken(base, adapter, staging, revision):
            (staging / "half").write_bytes(b"x")
            raise OSError("disk full")

        monkeypatch.setattr(model_files, "_merge", broken)
        with pytest.raises(OSError, match="disk full"):
            merge_adapter(tmp_path / "base", tmp_path / "adapter", tmp_path / "out", marker="pair")
        assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def store(infra_up):
    return ObjectStore()


@pytest.mark.integration
class TestFetching:
    async def test_a_worker_fetches_straight_from_the_store(self, store, tmp_path):
        data = b"stored bytes " * 1000
        await store.put_bytes(data)
        await write_hf_directory([file_of("w.bin", data)], tmp_path / "m", store_fetch(store))
        assert (tmp_path / "m" / "w.bin").read_bytes() == data

    async def test_a_file_is_fetched_from_its_link(self, store, tmp_path):
        data = b"presigned bytes " * 1000
        stored = await store.put_bytes(data)
        url = await store.presigned_url(stored.sha256, expires=timedelta(minutes=1))
        async with httpx.AsyncClient() as http:
            await write_hf_directory([file_of("w.bin", data, url=url)], tmp_path / "m", presigned_fetch(http))
        assert (tmp_path / "m" / "w.bin").read_bytes() == data

    async def test_an_expired_link_is_told_apart(self, store, tmp_path):
        stored = await store.put_bytes(b"soon gone")
        url = await store.presigned_url(stored.sha256, expires=timedelta(seconds=1))
        await asyncio.sleep(2.1)
        async with httpx.AsyncClient() as http:
            with pytest.raises(LinkExpired):
                await write_hf_directory([file_of("f", b"soon gone", url=url)], tmp_path / "m", presigned_fetch(http))
        assert leftovers(tmp_path) == []
