"""``llmops routes|keys|chat``: the pure helpers, the installed command against the real deployment service over
HTTP, and a chat against a real HTTP server that streams answers the way OpenAI's API does."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from typer.testing import CliRunner

from llmops import testing
from llmops.auth import Role, issue_token
from llmops.testing import serve
from llmops_deployment.cli import keys_app, routes_app
from llmops_deployment.cli.routes import parse_target

from .access_support import add_deployment

#: The commands in this process (a process each would spend seconds starting); one test per group runs the installed
#: ``llmops`` as users do.
COMMANDS = typer.Typer()
COMMANDS.add_typer(routes_app, name="routes")
COMMANDS.add_typer(keys_app, name="keys")


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """A command run in a thread (the event loop keeps serving the service it calls): exit code, stdout, stderr."""
    invoke = partial(CliRunner().invoke, COMMANDS, list(args), env={"COLUMNS": "200", **env})
    result = await asyncio.to_thread(invoke)
    return result.exit_code, result.stdout, result.stderr


routes = partial(run, "routes")
keys = partial(run, "keys")


class TestTargets:
    def test_a_target_with_and_without_its_weight(self):
        assert parse_target("abc=2.5") == {"deployment_id": "abc", "weight": 2.5}
        assert parse_target("abc") == {"deployment_id": "abc", "weight": 1.0}

    @pytest.mark.parametrize("value", ["=3", "abc=heavy"])
    def test_anything_else_is_a_usage_error(self, value):
        with pytest.raises(typer.BadParameter):
            parse_target(value)


# -- against the service -------------------------------------------------------------------------------------------
@pytest.fixture
async def server(deployment):
    async with serve(deployment.app) as url:
        yield url


def env_for(server: str, role: Role = Role.ML_ENGINEER) -> dict[str, str]:
    return {"LLMOPS_CLIENT_DEPLOYMENT_URL": server, "LLMOPS_CLIENT_TOKEN": issue_token("cli-user", [role], ["p1"])}


@pytest.mark.integration
async def test_a_route_is_set_split_shadowed_and_rolled_back_from_the_command_line(deployment, server):
    stable = await add_deployment(deployment, name="stable")
    canary = await add_deployment(deployment, name="canary")
    env, viewer = env_for(server), env_for(server, Role.VIEWER)
    args = ("routes", "set", "-p", "p1", "chat", "--target", f"{stable}=1", "--sticky")
    code, stdout, stderr = await testing.llmops(*args, env=env)
    assert code == 0, stderr
    assert "route chat v1" in stdout and "stable" in stdout and "100%" in stdout
    code, stdout, stderr = await routes("shadow", "-p", "p1", "chat", canary, "--json", env=env)
    assert code == 0, stderr
    assert [s["name"] for s in json.loads(stdout)["shadows"]] == ["canary"]
    code, stdout, stderr = await routes("split", "-p", "p1", "chat", canary, "--percent", "20", "--json", env=env)
    assert code == 0, stderr
    route = json.loads(stdout)
    assert {t["name"]: t["percent"] for t in route["targets"]} == {"stable": 80.0, "canary": 20.0}
    code, _, stderr = await routes("rollback", "-p", "p1", "chat", "--to", "1", "--reason", "errors", env=env)
    assert code == 0, stderr
    assert "route chat is now v4" in stderr
    code, stdout, _ = await routes("show", "-p", "p1", "chat", "--json", env=viewer)
    assert [t["name"] for t in json.loads(stdout)["targets"]] == ["stable"] and json.loads(stdout)["shadows"] == []
    code, stdout, stderr = await routes("history", "-p", "p1", "chat", env=viewer)
    assert code == 0, stderr
    assert "rollback to v1" in stdout and "errors" in stdout and "split" in stdout
    code, stdout, _ = await routes("list", "-p", "p1", env=viewer)
    assert "chat" in stdout and "stable 100%" in stdout
    code, _, stderr = await routes("split", "-p", "p1", "chat", canary, "--percent", "5", env=viewer)
    assert code == 1 and "403" in stderr
    code, _, stderr = await routes("set", "-p", "p1", "chat", "--target", "not-a-deployment", env=env)
    assert code == 1 and "422" in stderr and "targets.0.deployment_id" in stderr


@pytest.mark.integration
async def test_keys_limits_and_budgets_from_the_command_line(deployment, server):
    env, viewer = env_for(server), env_for(server, Role.VIEWER)
    code, stdout, stderr = await testing.llmops("keys", "create", "-p", "p1", "web app", "--rpm", "60", env=env)
    assert code == 0, stderr
    secret = stdout.strip()
    assert secret.startswith("llmk_") and len(secret) == 45
    assert "only time the key is shown" in stderr
    code, stdout, _ = await keys("list", "-p", "p1", "--json", env=viewer)
    [key] = [json.loads(line) for line in stdout.splitlines()]
    assert key["name"] == "web app" and key["requests_per_minute"] == 60 and secret not in stdout
    code, stdout, _ = await keys("list", "-p", "p1", env=viewer)
    assert secret[:12] in stdout and secret not in stdout
    code, stdout, stderr = await keys("limits", "set", "-p", "p1", "--rpm", "600", "--tpm", "90000", env=env)
    assert code == 0, stderr
    code, stdout, _ = await keys("limits", "show", "-p", "p1", env=viewer)
    assert "600 requests/min, 90000 tokens/min" in " ".join(stdout.split())
    budget = ("budget", "set", "-p", "p1", "--scope", "key", "--subject", key["id"], "--period", "day")
    code, stdout, stderr = await keys(*budget, "--max-tokens", "5000", "--json", env=env)
    assert code == 0, stderr
    assert json.loads(stdout)["max_tokens"] == 5000
    code, stdout, _ = await keys("budget", "list", "-p", "p1", env=viewer)
    assert "0/5000" in stdout
    code, _, stderr = await keys("budget", "set", "-p", "p1", "--period", "day", env=env)
    assert code == 1 and "422" in stderr and "max_tokens" in stderr
    code, _, stderr = await keys("revoke", "-p", "p1", key["id"], "--reason", "rotated", env=env)
    assert code == 0 and "revoked" in stderr
    code, _, stderr = await keys("revoke", "-p", "p1", key["id"], env=env)
    assert code == 1 and "409" in stderr


# -- chat ----------------------------------------------------------------------------------------------------------
@contextmanager
def openai_stream_server(replies: dict[str, str]) -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP server on a thread answering ``/v1/chat/completions`` with a stream of server-sent events, word
    by word, from a mapping of the last user message to a reply: "unknown" is a 404 in OpenAI's error form, "break"
    breaks off with an error event. Yields the base URL and the requests received (headers and bodies)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return None

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            received.append(
                {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            )
            question = body["messages"][-1]["content"]
            if question == "unknown":
                error = {"error": {"message": "no route 'nope'", "type": "not_found_error", "code": "route_not_found"}}
                data = json.dumps(error).encode()
                self.send_response(404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            words = replies.get(question, "").split(" ")
            for i, word in enumerate(words):
                delta = {"content": word if i == 0 else " " + word}
                self._event({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})
                if question == "break":
                    self._event({"error": {"message": "the backend died", "type": "server_error"}})
                    return
            self._event({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(words)}})
            self.wfile.write(b"data: [DONE]\n\n")

        def _event(self, payload: dict) -> None:
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


async def chat(*args: str, stdin: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The installed ``llmops chat`` with ``stdin`` as what is typed."""
    environment = {k: v for k, v in os.environ.items() if k != "LLMOPS_CLIENT_TOKEN"} | (env or {})
    process = await asyncio.create_subprocess_exec(
        testing.LLMOPS,
        "chat",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment | {"COLUMNS": "200"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), testing.LLMOPS_TIMEOUT)
    return process.returncode, stdout.decode(), stderr.decode()


class TestChat:
    async def test_answers_stream_in_and_the_conversation_is_kept(self):
        replies = {"hello": "hi there", "and then?": "then we part"}
        with openai_stream_server(replies) as (url, received):
            code, stdout, stderr = await chat(
                "support",
                "--key",
                "llmk_test",
                "--system",
                "be brief",
                "--url",
                url,
                stdin="hello\n\nand then?\n/exit\nignored\n",
            )
        assert code == 0, stderr
        assert stdout.splitlines() == ["hi there", "then we part"]
        assert len(received) == 2
        first, second = (r["body"] for r in received)
        assert received[0]["path"] == "/v1/chat/completions"
        assert received[0]["headers"]["authorization"] == "Bearer llmk_test"
        assert (first["model"], first["stream"]) == ("support", True)
        assert second["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi there"},
            {"role": "user", "content": "and then?"},
        ]

    async def test_a_prompt_by_label_goes_with_every_turn(self):
        with openai_stream_server({"q": "a"}) as (url, received):
            args = ("support", "--prompt", "helper", "--label", "staging", "--var", "tone=kind", "--var", "n=3")
            code, _, stderr = await chat(
                *args, "--url", url, "-p", "p1", stdin="q\nq\n", env={"LLMOPS_CLIENT_TOKEN": "jwt"}
            )
        assert code == 0, stderr
        for request in received:
            assert request["body"]["prompt"] == {
                "name": "helper",
                "label": "staging",
                "variables": {"tone": "kind", "n": 3},
            }
            assert request["headers"]["authorization"] == "Bearer jwt"
            assert request["headers"]["x-llmops-project"] == "p1"

    async def test_errors_are_printed_and_the_failed_turn_left_out(self):
        with openai_stream_server({"break": "partial answer", "fine": "ok"}) as (url, received):
            code, stdout, stderr = await chat("nope", "--key", "llmk_x", "--url", url, stdin="unknown\nbreak\nfine\n")
        assert code == 1
        assert "404 no route 'nope'" in stderr
        assert "the answer broke off: the backend died" in stderr
        assert stdout.splitlines()[-1] == "ok"
        assert [m["content"] for m in received[-1]["body"]["messages"]] == ["fine"]

    async def test_an_unreachable_gateway_is_said_so(self):
        code, _, stderr = await chat("r", "--key", "llmk_x", "--url", "http://127.0.0.1:9", stdin="hi\n")
        assert code == 1 and "cannot reach the gateway" in stderr

    async def test_no_credentials_is_a_usage_error(self):
        code, _, stderr = await chat("r", "--url", "http://127.0.0.1:9", stdin="hi\n")
        assert code == 2 and "no credentials" in stderr
