"""`llmops eval ...`: the pure helpers, then the installed command against the real evaluation service over HTTP."""

from __future__ import annotations

import json
from functools import partial

import pytest
import typer

from llmops import testing
from llmops.auth import Role, issue_token
from llmops.testing import serve
from llmops_evaluation.cli import runs as runs_cli

from .conftest import finished_run, noisy, seed_dataset, seed_model_version

evaluate = partial(testing.llmops, "eval")


class TestRunRequests:
    def test_a_version_or_an_alias(self):
        assert runs_cli.parse_model("tiny-lora:2") == {"name": "tiny-lora", "version": 2}
        assert runs_cli.parse_model("tiny-lora@production") == {"name": "tiny-lora", "alias": "production"}

    @pytest.mark.parametrize("value", ["tiny", "tiny:", ":2", "tiny:0", "tiny@", "@prod"])
    def test_anything_else_is_a_usage_error(self, value):
        with pytest.raises(typer.BadParameter, match="NAME:VERSION or NAME@ALIAS"):
            runs_cli.parse_model(value)

    def test_exactly_one_target(self):
        common = {"suite_version": None, "endpoint_model": None, "pool": "cpu"}
        body = runs_cli.run_body("s", model=None, base_model=None, endpoint="http://h/v1", **common)
        assert body == {"suite": "s", "pool": "cpu", "endpoint": {"url": "http://h/v1"}}
        with pytest.raises(typer.BadParameter, match="exactly one"):
            runs_cli.run_body("s", model="m:1", base_model="b", endpoint=None, **common)


@pytest.fixture
async def server(evaluation):
    async with serve(evaluation.app) as url:
        yield url


def env_for(server: str, role: Role = Role.ML_ENGINEER) -> dict[str, str]:
    return {"LLMOPS_CLIENT_EVALUATION_URL": server, "LLMOPS_CLIENT_TOKEN": issue_token("cli-user", [role], ["p1"])}


@pytest.mark.integration
async def test_suites_runs_comparisons_gates_and_overrides_from_the_command_line(evaluation, server, tmp_path):
    await seed_dataset(evaluation)
    one = await seed_model_version(evaluation, version=1)
    two = await seed_model_version(evaluation, version=2)
    suite_file = tmp_path / "suite.json"
    suite_file.write_text(
        json.dumps(
            {
                "name": "cli-suite",
                "dataset": {"name": "qa", "version": 1},
                "scorers": [{"type": "bleu"}, {"type": "rouge"}],
                "gates": ["bleu >= 20"],
            }
        )
    )
    code, stdout, stderr = await evaluate("suites", "create", "-p", "p1", str(suite_file), env=env_for(server))
    assert code == 0, stderr
    assert "cli-suite" in stdout and "bleu >= 20" in stdout
    code, stdout, _ = await evaluate("suites", "list", "-p", "p1", "--json", env=env_for(server, Role.VIEWER))
    suite = json.loads(stdout)
    assert suite["version"] == 1

    code, stdout, stderr = await evaluate(
        "run", "-p", "p1", "cli-suite", "--model", "tiny-lora:1", "--json", env=env_for(server)
    )
    assert code == 0, stderr
    assert json.loads(stdout)["status"] == "queued"
    code, _, stderr = await evaluate("run", "-p", "p1", "cli-suite", "--model", "tiny-lora:9", env=env_for(server))
    assert code == 1 and "no model version" in stderr

    first = await finished_run(evaluation, suite, one, {"bleu": noisy(30, 2, 1), "rouge_l": noisy(0.5, 0.1, 2)})
    second = await finished_run(evaluation, suite, two, {"bleu": noisy(10, 2, 3), "rouge_l": noisy(0.5, 0.1, 4)})
    code, stdout, stderr = await evaluate("show", "-p", "p1", first, env=env_for(server, Role.VIEWER))
    assert code == 0, stderr
    assert "bleu" in stdout and "95% interval" in stdout
    code, stdout, stderr = await evaluate("compare", "-p", "p1", first, second, env=env_for(server, Role.VIEWER))
    assert code == 0, stderr
    assert "0/0/40" in stdout  # BLEU: every example lost
    code, stdout, stderr = await evaluate(
        "gates", "-p", "p1", "--model", "tiny-lora", "--version", "2", env=env_for(server, Role.VIEWER)
    )
    assert code == 0, stderr
    assert "FAIL" in stdout and "is below 20" in stdout
    code, stdout, _ = await evaluate("gates", "-p", "p1", "--run", second, "--json", env=env_for(server))
    decision = json.loads(stdout)
    code, _, stderr = await evaluate(
        "override", "-p", "p1", decision["id"], "--reason", "accepted risk", env=env_for(server)
    )
    assert (code == 1 and "403" in stderr) or "not allowed" in stderr.lower()
    code, _, stderr = await evaluate(
        "override", "-p", "p1", decision["id"], "--reason", "accepted risk", env=env_for(server, Role.ADMIN)
    )
    assert code == 0, stderr
    assert "recorded: pass" in stderr
    code, stdout, _ = await evaluate("gates", "-p", "p1", "--run", second, env=env_for(server))
    assert "overridden to pass by cli-user: accepted risk" in " ".join(stdout.split())
