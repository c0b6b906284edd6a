"""`llmops prompts ...` against a real prompts service over HTTP (the installed command, as users run it)."""

from __future__ import annotations

import json
from functools import partial

import pytest

from llmops import testing
from llmops.auth import Role, issue_token
from llmops.testing import serve
from llmops_prompts.cli import parse_vars

from .test_api import CHAT, VARIABLES

llmops = partial(testing.llmops, "prompts")


def test_vars_are_json_when_they_parse_and_text_otherwise():
    assert parse_vars(["n=3", "name=Ada", "tags=[1, 2]", "flag=true", "eq=a=b"]) == {
        "n": 3,
        "name": "Ada",
        "tags": [1, 2],
        "flag": True,
        "eq": "a=b",
    }


@pytest.fixture
async def server(prompts):
    async with serve(prompts.app) as url:
        yield url


def env_for(server, role: Role) -> dict[str, str]:
    return {"LLMOPS_CLIENT_PROMPTS_URL": server, "LLMOPS_CLIENT_TOKEN": issue_token("cli-user", [role], ["p1"])}


@pytest.mark.integration
class TestPromptsCommand:
    async def test_create_version_label_render_diff_and_test(self, server, tmp_path):
        env = env_for(server, Role.ADMIN)
        assert (await llmops("create", "support", "-p", "p1", env=env))[0] == 0
        template = tmp_path / "v1.json"
        template.write_text(json.dumps({"template": CHAT, "parameters": {"temperature": 0.1}}))
        code, stdout, _ = await llmops("version", "support", "-p", "p1", "-f", str(template), "-m", "first", env=env)
        assert code == 0 and "committed version 1" in stdout
        code, stdout, _ = await llmops("version", "support", "-p", "p1", "-f", str(template), "-m", "again", env=env)
        assert code == 0 and "unchanged" in stdout
        second = tmp_path / "v2.json"
        changed = CHAT | {
            "messages": [{"role": "system", "content": "Hi from {{ company }} in {{ language }}."}, CHAT["messages"][1]]
        }
        second.write_text(json.dumps(changed))
        assert (await llmops("version", "support", "-p", "p1", "-f", str(second), "-m", "second", env=env))[0] == 0

        code, stdout, _ = await llmops(
            "label", "support", "production", "-p", "p1", "1", "--reason", "go live", "--protect", env=env
        )
        assert code == 0 and "production: - -> 1 (protected)" in stdout
        code, stdout, _ = await llmops("label", "support", "production", "-p", "p1", "--history", "--json", env=env)
        assert json.loads(stdout)[0]["reason"] == "go live"

        args = ["--var", "company=ACME", "--var", "language=English", "--var", "question=Hi?", "--label", "production"]
        code, stdout, _ = await llmops("render", "support", "-p", "p1", *args, "--json", env=env)
        assert code == 0 and json.loads(stdout)["messages"][0]["content"].startswith("You are the assistant of ACME")

        code, stdout, _ = await llmops("diff", "support", "1", "2", "-p", "p1", env=env)
        assert code == 0 and "+Hi from {{ company }}" in stdout

        cases = tmp_path / "cases.json"
        cases.write_text(
            json.dumps(
                [
                    {"name": "acme", "variables": VARIABLES, "expect": {"contains": ["ACME"]}},
                    {"name": "json", "variables": VARIABLES, "expect": {"json_schema": {}}},
                ]
            )
        )
        assert (await llmops("test", "support", "-p", "p1", "--add", str(cases), env=env))[0] == 0
        code, stdout, _ = await llmops("test", "support", "-p", "p1", "--version", "1", env=env)
        assert code == 1 and "FAIL" in stdout and "pass" in stdout

    async def test_a_bad_render_names_the_variables_and_exits_1(self, server, tmp_path):
        env = env_for(server, Role.ML_ENGINEER)
        await llmops("create", "support", "-p", "p1", env=env)
        template = tmp_path / "t.json"
        template.write_text(json.dumps(CHAT))
        await llmops("version", "support", "-p", "p1", "-f", str(template), "-m", "m", env=env)
        code, _, stderr = await llmops("render", "support", "-p", "p1", "--var", "company=3", env=env)
        assert code == 1 and "variables.company" in stderr and "variables.question" in stderr

    async def test_a_protected_label_refuses_an_ml_engineer(self, server, tmp_path):
        admin, engineer = env_for(server, Role.ADMIN), env_for(server, Role.ML_ENGINEER)
        await llmops("create", "support", "-p", "p1", env=admin)
        template = tmp_path / "t.json"
        template.write_text(json.dumps(CHAT))
        await llmops("version", "support", "-p", "p1", "-f", str(template), "-m", "m", env=admin)
        await llmops("label", "support", "production", "-p", "p1", "1", "--reason", "r", "--protect", env=admin)
        code, _, stderr = await llmops("label", "support", "production", "-p", "p1", "1", "--reason", "r", env=engineer)
        assert code == 1 and "403" in stderr and "protected" in stderr
