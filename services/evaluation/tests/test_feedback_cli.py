"""`llmops eval feedback ...`: the installed command against the real evaluation service over HTTP."""

from __future__ import annotations

import json
from functools import partial

import pytest

from llmops import testing
from llmops.auth import Role, issue_token
from llmops.testing import serve

pytestmark = pytest.mark.integration
feedback = partial(testing.llmops, "eval", "feedback")


@pytest.fixture
async def server(evaluation):
    async with serve(evaluation.app) as url:
        yield url


def as_(role: Role, server: str) -> dict[str, str]:
    return {"LLMOPS_CLIENT_TOKEN": issue_token("eve", [role], ["p1"]), "LLMOPS_CLIENT_EVALUATION_URL": server}


class TestFeedbackCommands:
    async def test_give_twice_with_one_key_then_summary_then_export(self, server):
        engineer = as_(Role.ML_ENGINEER, server)
        give = ("give", "-p", "p1", "--model-version-id", "mv-1", "--rating", "4", "--idempotency-key", "k1")
        code, first, _ = await feedback(*give, "--correction", "A", "--input", "Q", env=engineer)
        assert code == 0, first
        code, again, notice = await feedback(*give, "--correction", "A", "--input", "Q", env=engineer)
        assert (code, again) == (0, first) and "counted once" in notice

        code, table, _ = await feedback("summary", "-p", "p1", env=as_(Role.VIEWER, server))
        assert code == 0 and "mv-1" in table and "4.00 [4.00, 4.00]" in table
        code, lines, _ = await feedback("summary", "-p", "p1", "--json", env=engineer)
        assert [json.loads(line)["count"] for line in lines.splitlines()] == [1]

        code, exported, _ = await feedback("export", "-p", "p1", "--dataset", "fixes", env=engineer)
        assert code == 0 and exported.startswith("feedback-") and exported.rstrip().endswith("1 rows")

    async def test_invalid_feedback_prints_the_field_and_fails(self, server):
        code, _, error = await feedback("give", "-p", "p1", "--rating", "3", env=as_(Role.ML_ENGINEER, server))
        assert code == 1 and "inference_id" in error

    async def test_nothing_to_export_prints_the_filter_and_fails(self, server):
        args = ("export", "-p", "p1", "--dataset", "fixes", "--run-id", "r1")
        code, _, error = await feedback(*args, env=as_(Role.ML_ENGINEER, server))
        assert code == 1 and "run_id" in error
