"""What the services' commands share beyond the HTTP plumbing (llmops.cli_kit)."""

from __future__ import annotations

import httpx
import pytest
import typer
from rich.table import Table

from llmops import cli_kit


class TestApiPath:
    def test_every_part_is_quoted(self):
        assert cli_kit.api_path("p 1", "models", "a/b", 3) == "/projects/p%201/models/a%2Fb/3"


class TestKeyValues:
    def test_json_values_are_parsed_and_the_rest_kept_as_text(self):
        assert cli_kit.key_values(["n=3", "xs=[1, 2]", "on=true", "name=tiny", "empty="]) == {
            "n": 3,
            "xs": [1, 2],
            "on": True,
            "name": "tiny",
            "empty": "",
        }

    @pytest.mark.parametrize("pair", ["novalue", "=3"])
    def test_a_pair_without_key_or_sign_is_refused_by_name(self, pair):
        with pytest.raises(ValueError) as refused:
            cli_kit.key_values(["a=1", pair])
        assert refused.value.args == (pair,)


class TestWhen:
    def test_a_time_to_the_second(self):
        assert cli_kit.when("2026-11-28T11:59:49.430678Z") == "2026-11-28 11:59:49"
        assert cli_kit.when(None) == ""


class TestPrintItems:
    def table(self, items):
        table = Table("name")
        for item in items:
            table.add_row(item["name"])
        return table

    def test_json_prints_a_line_per_item(self, capsys):
        cli_kit.print_items([{"name": "a"}, {"name": "b"}], True, self.table, "none")
        assert capsys.readouterr().out.splitlines() == ['{"name": "a"}', '{"name": "b"}']

    def test_nothing_says_so_on_stderr(self, capsys):
        cli_kit.print_items([], False, self.table, "no things")
        captured = capsys.readouterr()
        assert captured.out == "" and "no things" in captured.err

    def test_items_make_a_table(self, capsys):
        cli_kit.print_items([{"name": "alpha"}], False, self.table, "none")
        assert "alpha" in capsys.readouterr().out


class TestPostFile:
    def test_the_file_is_the_streamed_body(self, tmp_path):
        file = tmp_path / "data.bin"
        file.write_bytes(b"x" * (cli_kit.CHUNK + 10))
        received = {}

        def handler(request: httpx.Request) -> httpx.Response:
            received["body"] = request.read()
            received["type"] = request.headers["content-type"]
            return httpx.Response(201)

        with httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler)) as client:
            response = cli_kit.post_file(client, "/up", file, waiting="storing", headers={"content-type": "x/y"})
        assert response.status_code == 201
        assert received == {"body": file.read_bytes(), "type": "x/y"}

    def test_a_broken_connection_ends_the_command_saying_how_much_was_sent(self, tmp_path, capsys):
        file = tmp_path / "data.bin"
        file.write_bytes(b"x" * 100)

        def handler(request: httpx.Request) -> httpx.Response:
            request.read()
            raise httpx.WriteError("peer closed")

        transport = httpx.MockTransport(handler)
        with httpx.Client(base_url="http://service", transport=transport) as client, pytest.raises(typer.Exit) as exit_:
            cli_kit.post_file(client, "/up", file, waiting="storing", headers={})
        assert exit_.value.exit_code == 1
        err = capsys.readouterr().err
        assert "broke during the upload (after 100 bytes sent)" in err and "peer closed" in err
