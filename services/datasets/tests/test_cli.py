"""`llmops datasets ...`: its pure helpers, its errors without a service, and every command against the real app."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from functools import partial
from pathlib import Path

import httpx
import orjson
import pytest
import typer
from typer.testing import CliRunner

from llmops import testing
from llmops.errors import PROBLEM_JSON
from llmops.testing import serve
from llmops.tokens import Role, issue_token
from llmops_datasets.cli import app, commands, tables
from llmops_datasets.formats import CONTENT_TYPES, FileType

runner = CliRunner()


# -- pure helpers ------------------------------------------------------------------------------------------------
class TestFileTypes:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("rows.jsonl", FileType.JSONL),
            ("rows.ndjson", FileType.JSONL),
            ("ROWS.JSONL", FileType.JSONL),
            ("a.b.csv", FileType.CSV),
            ("rows.parquet", FileType.PARQUET),
        ],
    )
    def test_the_type_comes_from_the_extension(self, name, expected):
        assert commands.file_type_of(Path(name)) is expected

    @pytest.mark.parametrize("name", ["rows.json", "rows.txt", "rows", "rows.jsonl.gz"])
    def test_an_unknown_extension_asks_for_type(self, name):
        with pytest.raises(typer.BadParameter, match="pass --type"):
            commands.file_type_of(Path(name))

    @pytest.mark.parametrize("file_type", list(FileType))
    def test_each_type_is_sent_with_a_content_type_the_service_accepts_as_that_type(self, file_type):
        assert CONTENT_TYPES[commands.CONTENT_TYPE[file_type]] is file_type

    def test_an_unknown_extension_without_type_is_a_usage_error(self, tmp_path):
        path = tmp_path / "rows.txt"
        path.write_text('{"text": "a"}\n')
        result = runner.invoke(app, ["upload", "d", str(path), "-p", "p1", "--token", "t"])
        assert result.exit_code == 2
        assert "pass --type" in result.output


class TestUploadParams:
    def test_nothing_chosen_sends_nothing_so_the_services_defaults_apply(self):
        assert commands.upload_params() == {}

    def test_choices_are_sent_and_switches_only_when_turned_off(self):
        assert commands.upload_params(
            redact_pii="email,phone",
            pii_locales="de_DE",
            min_chars=3,
            max_chars=100,
            dedupe=False,
            normalize=False,
            drop_empty=False,
            keep_valid=True,
            train=0.7,
            validation=0.2,
            test=0.1,
            seed=0,
        ) == {
            "redact_pii": "email,phone",
            "pii_locales": "de_DE",
            "min_chars": 3,
            "max_chars": 100,
            "dedupe": False,
            "normalize": False,
            "drop_empty": False,
            "keep_valid": True,
            "train": 0.7,
            "validation": 0.2,
            "test": 0.1,
            "seed": 0,
        }

    @pytest.mark.parametrize(("given", "sent"), [(";", ";"), ("|", "|"), ("tab", "\t"), ("\t", "\t")])
    def test_a_delimiter_is_sent_as_the_character_itself(self, given, sent):
        assert commands.upload_params(delimiter=given) == {"delimiter": sent}


class TestFormatting:
    def test_a_cell_shows_strings_as_they_are_and_other_values_as_compact_json(self):
        assert tables.cell("héllo") == "héllo"
        assert tables.cell([{"role": "user", "content": "é"}]) == '[{"role":"user","content":"é"}]'
        assert tables.cell(3) == "3"

    def test_a_long_cell_is_cut(self):
        assert tables.cell("x" * 500, 10) == "x" * 9 + "…"
        assert tables.cell("x" * 10, 10) == "x" * 10

    def test_paths_are_quoted(self):
        assert commands.dataset_path("p1") == "/projects/p1/datasets"
        assert commands.dataset_path("p 1", "d/x", "versions", 3) == "/projects/p%201/datasets/d%2Fx/versions/3"

    def test_cleaning_settings_in_one_line(self):
        config = {"normalize": True, "drop_empty": True, "dedupe": False, "min_chars": 3, "max_chars": None}
        assert tables.cleaning_settings(config | {"redact_pii": ["email", "phone"]}) == (
            "normalize, drop_empty, no dedupe, min_chars=3, redact_pii=email,phone"
        )
        assert tables.cleaning_settings(config | {"redact_pii": []}).endswith("no PII redaction")

    def test_splits_and_diffs_in_words(self):
        assert tables.splits_text({"counts": {"train": 1200, "validation": 3}}) == "train 1,200  validation 3  test 0"
        assert tables.diff_text({"added": 7, "removed": 5, "unchanged": 25}) == "+7 -5 =25"
        assert tables.diff_text(None) == ""


def problem(status: int, detail: str, **extra) -> httpx.Response:
    body = {"type": "about:blank", "title": "t", "status": status, "detail": detail} | extra
    return httpx.Response(status, json=body, headers={"content-type": PROBLEM_JSON})


class TestCheck:
    def test_success_passes_through(self):
        response = httpx.Response(201, json={"ok": True})
        assert commands.check(response) is response

    def test_row_errors_are_a_table_of_line_field_and_message(self, capsys):
        errors = [
            {"line": 2, "field": "completion", "message": "Field required"},
            {"line": 7, "field": "<row>", "message": "not valid JSON: unexpected end"},
        ]
        with pytest.raises(typer.Exit) as exit_:
            commands.check(
                problem(422, "2 row(s) do not match", errors=errors, invalid_rows=40, type="urn:x:invalid-rows"),
                hints={"urn:x:invalid-rows": "pass --keep-valid"},
            )
        assert exit_.value.exit_code == 1
        stderr = capsys.readouterr().err
        assert "hint: pass --keep-valid" in stderr
        assert "422 2 row(s) do not match" in stderr
        assert "40 invalid rows; the first 2 errors" in stderr
        for text in ("line", "field", "message", "completion", "Field required", "<row>", "not valid JSON"):
            assert text in stderr
        assert any(line.split("│")[1].strip() == "7" for line in stderr.splitlines() if line.count("│") >= 3)

    @pytest.mark.parametrize(
        ("status", "detail"),
        [
            (413, "the upload (3000000 bytes) is larger than the limit of 2097152 bytes"),
            (415, "unsupported content type 'application/pdf'"),
        ],
    )
    def test_a_problem_prints_its_detail_and_exits_1(self, capsys, status, detail):
        with pytest.raises(typer.Exit) as exit_:
            commands.check(problem(status, detail))
        assert exit_.value.exit_code == 1
        assert f"{status} {detail}" in capsys.readouterr().err

    def test_field_errors_are_listed(self, capsys):
        errors = [{"field": "redact_pii", "location": "query", "message": "unknown PII kind(s): dna"}]
        with pytest.raises(typer.Exit):
            invalid = problem(422, "invalid input: redact_pii", errors=errors)
            commands.check(invalid, hints={"urn:other": "not this one"})
        stderr = capsys.readouterr().err
        assert "redact_pii: unknown PII kind(s): dna" in stderr and "hint" not in stderr

    def test_a_response_that_is_not_a_problem_prints_its_status_and_text(self, capsys):
        with pytest.raises(typer.Exit):
            commands.check(httpx.Response(502, text="<html>bad gateway</html>"))
        assert "502 Bad Gateway: <html>bad gateway</html>" in capsys.readouterr().err


class TestWithoutAService:
    def test_no_token_exits_1_saying_how_to_get_one(self, monkeypatch):
        monkeypatch.delenv("LLMOPS_CLIENT_TOKEN", raising=False)
        result = runner.invoke(app, ["list", "-p", "p1"])
        assert result.exit_code == 1
        assert "no bearer token" in result.stderr and "LLMOPS_CLIENT_TOKEN" in result.stderr

    @pytest.mark.parametrize(
        "command",
        [
            ["create", "d", "--format", "text"],
            ["upload", "d", "rows.jsonl"],
            ["list"],
            ["show", "d"],
            ["preview", "d", "1"],
            ["download", "d", "1", "-o", "out.jsonl"],
            ["deprecate", "d", "1", "--reason", "r"],
        ],
    )
    def test_an_unreachable_service_exits_1(self, tmp_path, monkeypatch, command):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "rows.jsonl").write_text('{"text": "a"}\n')
        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            result = runner.invoke(app, [*command, "-p", "p1", "--url", url, "--token", "t"])
        assert result.exit_code == 1, result.output
        assert f"cannot reach the datasets service at {url}" in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # download leaves no file behind

    def test_the_url_defaults_from_the_environment(self, monkeypatch):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            monkeypatch.setenv("LLMOPS_CLIENT_DATASETS_URL", url)
            result = runner.invoke(app, ["list", "-p", "p1", "--token", "t"])
        assert result.exit_code == 1 and url in result.stderr

    def test_download_needs_an_output_unless_presigned(self):
        result = runner.invoke(app, ["download", "d", "1", "-p", "p1", "--token", "t"])
        assert result.exit_code == 2
        assert "--output" in result.output


# -- against a real server ---------------------------------------------------------------------------------------
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TEXT_ROWS = [{"text": f"A sentence about item {i}."} for i in range(30)]


def jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


@pytest.fixture
async def server(datasets):
    """The datasets app served by uvicorn on a free local port, in this test's event loop (where its runtime lives)."""
    async with serve(datasets.app) as url:
        yield url


@pytest.fixture
def env(server) -> dict[str, str]:
    """The client's settings as a user sets them: a data steward's token for p1 and the service's URL."""
    token = issue_token("cli-steward", [Role.DATA_STEWARD], ["p1"])
    return {"LLMOPS_CLIENT_TOKEN": token, "LLMOPS_CLIENT_DATASETS_URL": server}


#: Run the installed `llmops datasets` command (the real entry point) without blocking the server's event loop.
llmops = partial(testing.llmops, "datasets")


@pytest.fixture
async def uploaded(env, tmp_path) -> Path:
    """Dataset ``d`` (text) in p1 with version 1: the 30 rows of TEXT_ROWS, written to a file, seeded over HTTP (the
    CLI's create and upload have tests of their own)."""
    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl(TEXT_ROWS))
    headers = {"authorization": f"Bearer {env['LLMOPS_CLIENT_TOKEN']}"}
    async with httpx.AsyncClient(base_url=env["LLMOPS_CLIENT_DATASETS_URL"], headers=headers, timeout=60) as http:
        body = {"name": "d", "format": "text", "description": "about items"}
        assert (await http.post("/projects/p1/datasets", json=body)).status_code == 201
        answer = await http.post(
            "/projects/p1/datasets/d/versions", content=path.read_bytes(), headers={"content-type": "application/jsonl"}
        )
        assert answer.status_code == 201, answer.text
    return path


@pytest.mark.integration
class TestCommands:
    async def test_create_then_upload_prints_the_version_and_cleaning_report(self, env, tmp_path):
        code, out, err = await llmops("create", "d", "--format", "text", "-p", "p1", env=env)
        assert code == 0, err
        assert "created dataset d (text) in project p1" in out
        rows = [*TEXT_ROWS, TEXT_ROWS[0], {"text": "   "}]  # one duplicate, one empty
        path = tmp_path / "rows.jsonl"
        path.write_bytes(jsonl(rows))
        code, out, err = await llmops("upload", "d", str(path), "-p", "p1", "--seed", "7", env=env)
        assert code == 0, err
        assert "created version 1 of d" in out
        assert "version 1" in out and "rows" in out and " 30 " in out
        assert "train " in out and "validation " in out and "test " in out
        assert "cleaning report" in out
        assert "duplicates removed" in out and "empty rows removed" in out and "rows read" in out
        assert "uploading rows.jsonl" in err

    async def test_the_same_content_again_says_unchanged(self, env, uploaded):
        code, out, err = await llmops("upload", "d", str(uploaded), "-p", "p1", env=env)
        assert code == 0, err
        assert "unchanged: same content as version 1 of d" in out
        assert "cleaning report" not in out
        code, out, err = await llmops("upload", "d", str(uploaded), "-p", "p1", "--json", env=env)
        assert code == 0, err
        assert "unchanged" in err and json.loads(out)["version"] == 1

    async def test_upload_json_prints_the_version(self, env, uploaded, tmp_path):
        path = tmp_path / "more.ndjson"
        path.write_bytes(jsonl([*TEXT_ROWS[5:], {"text": "new"}]))
        code, out, err = await llmops("upload", "d", str(path), "-p", "p1", "--json", env=env)
        assert code == 0, err
        version = json.loads(out)
        assert (version["version"], version["row_count"], version["source_type"]) == (2, 26, "jsonl")
        assert version["diff"] == {"added": 1, "removed": 5, "unchanged": 25}
        assert "created version 2 of d" in err

    async def test_a_bad_file_exits_1_listing_each_bad_line(self, env, uploaded, tmp_path):
        path = tmp_path / "bad.jsonl"
        path.write_bytes(b'{"text": "fine"}\n{"txt": "typo"}\n{"text": "ok"}\n{"text": "broken\n')
        code, out, err = await llmops("upload", "d", str(path), "-p", "p1", env=env)
        assert code == 1
        assert "422" in err and "nothing was stored" in err and "--keep-valid" in err
        table = [[c.strip() for c in line.split("│")[1:-1]] for line in err.splitlines() if line.count("│") == 4]
        assert ["2", "text", "Field required"] in table
        assert any(row[:2] == ["4", "<row>"] and "not valid JSON" in row[2] for row in table)
        code, out, err = await llmops("show", "d", "-p", "p1", "--json", env=env)
        assert [v["version"] for v in json.loads(out)["versions"]] == [1]

    async def test_keep_valid_stores_the_valid_rows_and_lists_the_dropped_ones(self, env, uploaded, tmp_path):
        path = tmp_path / "bad.jsonl"
        path.write_bytes(b'{"text": "fine"}\n{"txt": "typo"}\n')
        code, out, err = await llmops("upload", "d", str(path), "-p", "p1", "--keep-valid", env=env)
        assert code == 0, err
        assert "created version 2 of d" in out and "invalid rows dropped" in out and "Field required" in out

    async def test_cleaning_options_are_sent(self, env, tmp_path):
        code, _, err = await llmops("create", "d", "--format", "text", "-p", "p1", env=env)
        assert code == 0, err
        path = tmp_path / "rows.jsonl"
        path.write_bytes(jsonl([{"text": "mail jane.doe@example.com"}, {"text": "hi"}, {"text": "hi"}]))
        args = ("--redact-pii", "email", "--pii-locales", "de_DE,fr_FR", "--min-chars", "1", "--no-dedupe")
        args += ("--train", "0.5", "--validation", "0.5")
        code, out, err = await llmops("upload", "d", str(path), "-p", "p1", *args, "--test", "0", "--json", env=env)
        assert code == 0, err
        version = json.loads(out)
        assert version["row_count"] == 3  # duplicates kept
        assert version["cleaning"]["pii_redacted"] == {"email": 1}
        assert version["cleaning"]["config"]["min_chars"] == 1
        assert version["cleaning"]["config"]["pii_locales"] == ["de_DE", "fr_FR"]
        assert (version["splits"]["train"], version["splits"]["test"]) == (0.5, 0)

    async def test_bad_options_print_the_field_and_exit_1(self, env, uploaded):
        code, _, err = await llmops("upload", "d", str(uploaded), "-p", "p1", "--redact-pii", "dna", env=env)
        assert code == 1
        assert "422" in err and "redact_pii" in err and "dna" in err
        args = ("--redact-pii", "all", "--pii-locales", "xx_XX")
        code, _, err = await llmops("upload", "d", str(uploaded), "-p", "p1", *args, env=env)
        assert code == 1
        assert "422" in err and "pii_locales" in err and "xx_XX" in err

    async def test_split_ratios_that_do_not_sum_to_1_are_refused_in_words(self, env, uploaded):
        args = ("-p", "p1", "--train", "0.5", "--validation", "0.5")
        code, _, err = await llmops("upload", "d", str(uploaded), *args, env=env)
        assert code == 1
        assert "422" in err and "train + validation + test must be 1" in err

    async def test_a_file_over_the_limit_is_refused_with_the_services_words(self, env, uploaded, tmp_path):
        path = tmp_path / "big.jsonl"  # about 3 MB; the test service's limit is 2 MiB
        path.write_bytes(jsonl({"text": "x" * 1000 + str(i)} for i in range(3000)))
        code, _, err = await llmops("upload", "d", str(path), "-p", "p1", env=env)
        assert code == 1
        # refused from the declared Content-Length: the file is streamed with its size
        assert f"413 the upload ({path.stat().st_size} bytes) is larger than the limit" in err

    async def test_csv_and_parquet_are_sent_as_such(self, env, uploaded, tmp_path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        csv = tmp_path / "rows.csv"
        csv.write_text("text\n" + "".join(f"row {i}\n" for i in range(10)))
        code, out, err = await llmops("upload", "d", str(csv), "-p", "p1", "--json", env=env)
        assert code == 0, err
        assert (json.loads(out)["source_type"], json.loads(out)["row_count"]) == ("csv", 10)
        table = tmp_path / "rows.data"
        pq.write_table(pa.Table.from_pylist([{"text": f"other {i}"} for i in range(5)]), table)
        code, out, err = await llmops("upload", "d", str(table), "-p", "p1", "--type", "parquet", "--json", env=env)
        assert code == 0, err
        assert (json.loads(out)["source_type"], json.loads(out)["row_count"]) == ("parquet", 5)

    async def test_a_named_csv_delimiter_is_sent(self, env, uploaded, tmp_path):
        csv = tmp_path / "rows.csv"
        csv.write_text("text\n" + "".join(f"row {i}, with a comma\n" for i in range(10)))
        code, out, err = await llmops("upload", "d", str(csv), "-p", "p1", "--delimiter", "tab", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["row_count"] == 10

    async def test_list_search_and_format(self, env, uploaded):
        code, _, err = await llmops("create", "chats", "--format", "chat", "-p", "p1", env=env)
        assert code == 0, err
        code, out, err = await llmops("list", "-p", "p1", env=env)
        assert code == 0, err
        assert "chats" in out and "about items" in out and "name" in out
        code, out, err = await llmops("list", "-p", "p1", "--search", "items", "--json", env=env)
        assert [(d["name"], d["latest_version"]) for d in map(json.loads, out.splitlines())] == [("d", 1)]
        code, out, err = await llmops("list", "-p", "p1", "--format", "chat", "--json", env=env)
        assert [json.loads(line)["name"] for line in out.splitlines()] == ["chats"]
        code, out, err = await llmops("list", "-p", "p1", "--search", "nothing-like-it", env=env)
        assert code == 0 and "no datasets" in err

    async def test_show_prints_the_dataset_and_its_versions(self, env, uploaded):
        code, out, err = await llmops("show", "d", "-p", "p1", env=env)
        assert code == 0, err
        assert "d (text) in project p1" in out and "about items" in out
        shown = json.loads((await llmops("show", "d", "-p", "p1", "--json", env=env))[1])
        assert shown["versions"][0]["sha256"][:12] in out
        assert "cli-steward" in out

    async def test_preview_prints_rows(self, env, uploaded):
        code, out, err = await llmops("preview", "d", "1", "-p", "p1", "--rows", "3", env=env)
        assert code == 0, err
        assert "A sentence about item 0." in out and "A sentence about item 2." in out
        assert "item 3." not in out
        code, out, err = await llmops("preview", "d", "1", "-p", "p1", "--rows", "50", "--json", env=env)
        assert [json.loads(line) for line in out.splitlines()] == TEXT_ROWS
        code, out, err = await llmops("preview", "d", "1", "-p", "p1", "--split", "test", "--json", env=env)
        shown = json.loads((await llmops("show", "d", "-p", "p1", "--json", env=env))[1])
        assert len(out.splitlines()) == shown["versions"][0]["splits"]["counts"]["test"]

    async def test_a_missing_version_is_404_in_words(self, env, uploaded):
        code, _, err = await llmops("preview", "d", "9", "-p", "p1", env=env)
        assert code == 1
        assert "404 dataset 'd' has no version 9" in err

    async def test_download_is_stable_and_complete(self, env, uploaded, tmp_path):
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        for output in (first, second):
            code, _, err = await llmops("download", "d", "1", "-p", "p1", "--output", str(output), env=env)
            assert code == 0, err
            assert "wrote" in err and "(30 rows)" in err
        assert first.read_bytes() == second.read_bytes()
        assert [json.loads(line) for line in first.read_bytes().splitlines()] == TEXT_ROWS
        assert not list(tmp_path.glob("*.part"))

    async def test_the_splits_download_into_the_whole_version(self, env, uploaded, tmp_path):
        shown = json.loads((await llmops("show", "d", "-p", "p1", "--json", env=env))[1])
        lines = []
        for split in ("train", "validation", "test"):
            output = tmp_path / f"{split}.jsonl"
            code, _, err = await llmops("download", "d", "1", "-p", "p1", "-o", str(output), "--split", split, env=env)
            assert code == 0, err
            part = output.read_bytes().splitlines()
            assert len(part) == shown["versions"][0]["splits"]["counts"][split]
            lines += part
        assert sorted(json.loads(line)["text"] for line in lines) == sorted(r["text"] for r in TEXT_ROWS)

    async def test_presigned_prints_a_url_that_serves_the_version(self, env, uploaded):
        import urllib.request

        code, out, err = await llmops("download", "d", "1", "-p", "p1", "--presigned", env=env)
        assert code == 0, err

        def fetch() -> bytes:
            with urllib.request.urlopen(out.strip(), timeout=10) as response:  # noqa: S310 (local test store)
                return response.read()

        assert (await asyncio.to_thread(fetch)).count(b"\n") == 30

    async def test_a_refused_download_writes_no_file(self, env, uploaded, tmp_path):
        output = tmp_path / "out.jsonl"
        code, _, err = await llmops("download", "d", "7", "-p", "p1", "-o", str(output), env=env)
        assert code == 1 and "404" in err
        assert not output.exists() and not list(tmp_path.glob("*.part"))

    async def test_deprecate(self, env, uploaded):
        code, out, err = await llmops("deprecate", "d", "1", "-p", "p1", "--reason", "label noise", env=env)
        assert code == 0, err
        assert "deprecated version 1 of d: label noise" in out
        code, out, err = await llmops("show", "d", "-p", "p1", env=env)
        assert "deprecated" in out and "label noise" in out
        code, _, err = await llmops("deprecate", "d", "1", "-p", "p1", "--reason", "again", env=env)
        assert code == 1 and "409" in err and "already deprecated" in err

    async def test_a_reader_cannot_write(self, env, uploaded):
        viewer = {**env, "LLMOPS_CLIENT_TOKEN": issue_token("v", [Role.VIEWER], ["p1"])}
        code, out, err = await llmops("list", "-p", "p1", "--json", env=viewer)
        assert code == 0, err
        assert [json.loads(line)["name"] for line in out.splitlines()] == ["d"]
        code, _, err = await llmops("deprecate", "d", "1", "-p", "p1", "--reason", "r", env=viewer)
        assert code == 1 and "403" in err

    async def test_another_project_is_refused(self, env, uploaded):
        code, _, err = await llmops("list", "-p", "p2", env=env)
        assert code == 1 and "403" in err

    async def test_a_bad_token_is_401(self, env):
        code, _, err = await llmops("list", "-p", "p1", "--token", "not-a-token", env=env)
        assert code == 1 and "401" in err


@pytest.mark.integration
async def test_a_large_upload_streams_with_a_progress_bar(datasets, env, tmp_path):
    """About 30 MB, sent in chunks with the progress bar drawn as on a terminal; no assertion on memory."""
    datasets.app.state.settings = datasets.settings.model_copy(update={"max_upload_bytes": 64 * 1024**2})
    code, _, err = await llmops("create", "big", "--format", "text", "-p", "p1", env=env)
    assert code == 0, err
    path = tmp_path / "big.jsonl"
    with path.open("wb") as file:
        for i in range(30_000):
            file.write(orjson.dumps({"text": f"row {i} " + "lorem ipsum dolor sit amet " * 37}) + b"\n")
    size = path.stat().st_size
    assert size > 30_000_000
    terminal = {**env, "TTY_COMPATIBLE": "1"}  # rich draws and redraws the bar as on a terminal
    code, out, err = await llmops("upload", "big", str(path), "-p", "p1", "--json", env=terminal)
    assert code == 0, err
    assert (json.loads(out)["version"], json.loads(out)["row_count"]) == (1, 30_000)
    err = ANSI.sub("", err)
    assert "uploading big.jsonl" in err and f"{size / 1e6:.1f}/{size / 1e6:.1f} MB" in err
    assert "created version 1 of big" in err
