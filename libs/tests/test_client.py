"""The command line's shared client plumbing (llmops.client), and what `llmops` imports when it starts."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys

import httpx
import pytest
import typer
from rich.table import Table

from llmops import auth, client, tokens
from llmops.errors import PROBLEM_JSON


def problem(status: int, detail: str, **extra) -> httpx.Response:
    body = {"type": "about:blank", "title": "t", "status": status, "detail": detail} | extra
    return httpx.Response(status, json=body, headers={"content-type": PROBLEM_JSON})


def exit_code(call) -> int:
    with pytest.raises(typer.Exit) as exit_:
        call()
    return exit_.value.exit_code


class TestFail:
    def test_prints_the_message_and_each_detail_and_exits_with_the_code(self, capsys):
        assert exit_code(lambda: client.fail("it broke [here]", "one", "two", code=2)) == 2
        assert capsys.readouterr().err.splitlines() == ["error: it broke [here]", "  one", "  two"]


class TestParams:
    def test_values_that_are_none_are_left_out(self):
        assert client.params(a=1, b=None, c=False, d="") == {"a": 1, "c": False, "d": ""}


class TestCheck:
    def test_success_passes_through(self):
        response = httpx.Response(200, json={})
        assert client.check(response) is response

    def test_the_media_type_is_the_services(self):
        assert client.PROBLEM_JSON == PROBLEM_JSON

    def test_a_problem_prints_its_detail_each_field_and_the_hint_for_its_type(self, capsys):
        errors = [{"field": "limit", "message": "too small"}, {"field": "q", "message": "too long"}]
        response = problem(422, "invalid input", errors=errors, type="urn:x")
        assert exit_code(lambda: client.check(response, hints={"urn:x": "try less", "urn:y": "no"})) == 1
        assert capsys.readouterr().err.splitlines() == [
            "error: 422 invalid input",
            "  limit: too small",
            "  q: too long",
            "  hint: try less",
        ]

    def test_a_problem_without_detail_prints_its_title(self, capsys):
        response = httpx.Response(404, json={"title": "Not Found"}, headers={"content-type": PROBLEM_JSON})
        assert exit_code(lambda: client.check(response)) == 1
        assert "404 Not Found" in capsys.readouterr().err

    def test_errors_table_shows_the_errors_when_it_builds_a_table(self, capsys):
        def lines(problem, errors):
            if not all("line" in e for e in errors):
                return None
            table = Table("line", "message", title=f"{problem['detail']}!")
            for e in errors:
                table.add_row(str(e["line"]), e["message"])
            return table

        rows = problem(422, "bad rows", errors=[{"line": 7, "message": "no text"}], type="urn:x")
        assert exit_code(lambda: client.check(rows, hints={"urn:x": "fix them"}, errors_table=lines)) == 1
        stderr = capsys.readouterr().err
        assert "error: 422 bad rows" in stderr and "bad rows!" in stderr and "no text" in stderr
        assert stderr.splitlines()[-1] == "hint: fix them"

        fields = problem(422, "bad input", errors=[{"field": "f", "message": "m"}])
        assert exit_code(lambda: client.check(fields, errors_table=lines)) == 1
        assert capsys.readouterr().err.splitlines() == ["error: 422 bad input", "  f: m"]

    def test_a_response_that_is_not_a_problem_prints_its_status_and_text(self, capsys):
        assert exit_code(lambda: client.check(httpx.Response(502, text="bad gateway"))) == 1
        assert "502 Bad Gateway: bad gateway" in capsys.readouterr().err


class TestConnect:
    def test_no_token_exits_1_with_the_hint(self, monkeypatch, capsys):
        monkeypatch.delenv("LLMOPS_CLIENT_TOKEN", raising=False)

        def call():
            with client.connect("audit", None, None, issue_hint="llmops token issue --role auditor"):
                pass

        assert exit_code(call) == 1
        stderr = capsys.readouterr().err
        assert "no bearer token" in stderr and "LLMOPS_CLIENT_TOKEN" in stderr and "--role auditor" in stderr

    def test_the_token_and_url_are_sent(self, monkeypatch):
        monkeypatch.setenv("LLMOPS_CLIENT_TOKEN", "from-env")
        monkeypatch.setenv("LLMOPS_CLIENT_DATASETS_URL", "http://datasets.example:1")
        with client.connect("datasets", None, None) as http:
            assert http.headers["authorization"] == "Bearer from-env"
            assert str(http.base_url) == "http://datasets.example:1"
        with client.connect("datasets", None, "given", default_url="http://other.example:2") as http:
            assert http.headers["authorization"] == "Bearer given"
            assert str(http.base_url) == "http://other.example:2"

    def test_an_unreachable_service_exits_1_naming_it(self, capsys):
        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"

            def call():
                with client.connect("datasets", url, "t") as http:
                    http.get("/")

            assert exit_code(call) == 1
        assert f"cannot reach the datasets service at {url}" in capsys.readouterr().err

    def test_the_url_option_names_the_setting_and_its_default(self):
        option = client.url_option("audit").__metadata__[0]
        assert option.help == (
            "the audit service's base URL (default: LLMOPS_CLIENT_AUDIT_URL, else http://127.0.0.1:8007)"
        )


class TestSave:
    def test_the_chunks_are_written_and_counted(self, tmp_path):
        path = tmp_path / "out.jsonl"
        saved = client.save([b'{"a": 1}\n{"a"', b": 2}\n"], path, total=16, label="downloading [x]")
        assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
        assert (saved.path, saved.size, saved.lines) == (path, 18, 2)
        assert saved.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]

    def test_a_cut_off_download_leaves_no_file(self, tmp_path):
        def chunks():
            yield b"some"
            raise httpx.ReadError("cut off")

        path = tmp_path / "out.jsonl"
        path.write_bytes(b"an older download")
        with pytest.raises(httpx.ReadError):
            client.save(chunks(), path)
        assert path.read_bytes() == b"an older download"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]

    def test_a_download_verify_refuses_is_not_kept(self, tmp_path):
        def verify(saved: client.Saved) -> None:
            client.fail(f"wrong sha256 {saved.sha256[:8]}")

        assert exit_code(lambda: client.save([b"x\n"], tmp_path / "out.jsonl", verify=verify)) == 1
        assert list(tmp_path.iterdir()) == []


class TestTokens:
    def test_auth_re_exports_the_token_types(self):
        for name in ("ALL_PROJECTS", "AuthError", "Permission", "Principal", "Role", "TokenVerifier", "issue_token"):
            assert getattr(auth, name) is getattr(tokens, name)


def test_the_command_line_starts_without_fastapi_sqlalchemy_or_the_services_apps():
    """`llmops` loads every service's commands at start: none may import a web framework, a database layer or a
    service's app or models (that is seconds per call)."""
    code = (
        "import sys\n"
        "from llmops.cli import _add_service_commands\n"
        "_add_service_commands()\n"
        "heavy = ('fastapi', 'starlette', 'sqlalchemy', 'asyncpg', 'faststream', 'aiokafka', 'uvicorn', 'jwt')\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "    or m.startswith('llmops_') and m.rsplit('.', 1)[-1] in ('app', 'api', 'models', 'service'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.split() == []
