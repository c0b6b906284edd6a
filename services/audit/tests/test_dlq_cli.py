"""`llmops dlq list|show|replay`, the installed command against the audit service served over real HTTP."""

from __future__ import annotations

import json

import pytest

from llmops.testing import caught_up, llmops, serve
from llmops.tokens import Role, issue_token

from . import test_dlq_api
from .conftest import probes, wait_for_head
from .test_dlq_api import logged_ids, published_count

pytestmark = pytest.mark.integration

# The API tests' fixtures: an ASGI client of the service, and dead letters of an outage.
client, outage = test_dlq_api.client, test_dlq_api.outage


@pytest.fixture
async def server(audit):
    async with serve(audit.app) as url:
        yield url


@pytest.fixture
def dlq(server):
    """Runs `llmops dlq ...` against the served service as an admin of every project."""
    env = {"LLMOPS_CLIENT_TOKEN": issue_token("root", [Role.ADMIN], ["*"])}

    async def run(*args: str, token: str | None = None) -> tuple[int, str, str]:
        return await llmops("dlq", *args, "--url", server, env=env | ({"LLMOPS_CLIENT_TOKEN": token} if token else {}))

    return run


class TestReplay:
    async def test_events_dead_lettered_during_an_outage_are_logged_once_however_often_replayed(
        self, audit, client, dlq, outage, topics
    ):
        events = probes(6, subjects=2)
        consumer = await outage(events)

        code, stdout, stderr = await dlq("replay", "--consumer", consumer)
        assert code == 0, stderr
        assert stdout.startswith(f"replayed 6 dead letters to {topics[0]} (")
        await wait_for_head(audit.runtime.db, 6)
        assert sorted(await logged_ids(client)) == sorted(e.id for e in events)

        code, stdout, stderr = await dlq("replay", "--consumer", consumer, "--reason", "handler_failed")
        assert code == 0, stderr
        assert stdout.startswith("replayed 6 dead letters")
        await caught_up(audit.settings.consumer_group, topics)
        assert sorted(await logged_ids(client)) == sorted(e.id for e in events)

    async def test_one_is_replayed_by_its_id(self, audit, dlq, outage, topics):
        consumer = await outage(probes(2))
        code, stdout, _ = await dlq("list", "--consumer", consumer, "--json")
        first = json.loads(stdout.splitlines()[0])["id"]
        code, stdout, stderr = await dlq("replay", "--id", first)
        assert code == 0, stderr
        assert stdout.startswith(f"replayed 1 dead letter to {topics[0]} ({first};")
        assert await published_count(topics[0]) == 1

    async def test_a_dry_run_says_what_it_would_replay_and_publishes_nothing(self, dlq, outage, topics):
        consumer = await outage(probes(3))
        code, stdout, stderr = await dlq("replay", "--consumer", consumer, "--dry-run")
        assert code == 0, stderr
        assert stdout.startswith(f"would replay 3 dead letters to {topics[0]} (")
        assert "nothing published" in stdout
        assert await published_count(topics[0]) == 0

    @pytest.mark.parametrize(
        "args",
        [pytest.param((), id="no-selector"), pytest.param(("--all", "--reason", "not_json"), id="two-selectors")],
    )
    async def test_needs_exactly_one_selector(self, dlq, args):
        code, _, stderr = await dlq("replay", *args)
        assert code == 2
        assert "say which dead letters to replay" in stderr

    async def test_a_token_without_the_admin_role_is_refused(self, dlq, outage, topics):
        consumer = await outage(probes(1))
        code, _, stderr = await dlq("replay", "--consumer", consumer, token=issue_token("eve", [Role.AUDITOR], ["*"]))
        assert code == 1
        assert "403" in stderr and "dead_letters.replay" in stderr
        assert await published_count(topics[0]) == 0


class TestInspect:
    async def test_list_shows_a_table_of_the_selected_dead_letters_with_their_reasons(self, dlq, outage, topics):
        consumer = await outage(probes(2))
        await outage(probes(1, start=10), reason="invalid_data")
        code, stdout, stderr = await dlq("list", "--consumer", consumer, "--reason", "invalid_data")
        assert code == 0, stderr
        assert stdout.count("invalid_data") == 1 and "handler_failed" not in stdout
        assert topics[0] in stdout

    async def test_list_prints_json_lines(self, dlq, outage):
        consumer = await outage(probes(3))
        _, stdout, _ = await dlq("list", "--consumer", consumer, "--json")
        items = [json.loads(line) for line in stdout.splitlines()]
        assert [item["consumer"] for item in items] == [consumer] * 3

    async def test_list_says_when_nothing_matches(self, dlq):
        code, stdout, stderr = await dlq("list", "--consumer", "nobody-at-all")
        assert (code, stdout) == (0, "")
        assert "no dead letters match" in stderr

    async def test_show_prints_the_headers_and_the_start_of_the_value(self, dlq, outage, topics):
        events = probes(1)
        consumer = await outage(events)
        code, stdout, _ = await dlq("list", "--consumer", consumer, "--json")
        letter_id = json.loads(stdout)["id"]
        code, stdout, stderr = await dlq("show", letter_id, "--preview-bytes", "30")
        assert code == 0, stderr
        assert "x-dlq-topic" in stdout and topics[0] in stdout and "ConnectionRefusedError(111)" in stdout
        assert "(truncated)" in stdout
        assert events[0].to_bytes()[:30].decode() in stdout

    async def test_show_of_an_unknown_id_fails(self, dlq):
        code, _, stderr = await dlq("show", f"0-{10**15}")
        assert code == 1
        assert "404" in stderr
