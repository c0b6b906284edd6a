"""Alert rules, policies and active alerts through the API: created, listed, read and deleted, each change an event in
the outbox; refusals name the field (an unknown metric, an unknown deployment); 401 without a token, 403 without the
permission or the project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmops.auth import Role
from llmops_monitoring import alerts, policies

from .conftest import ENGINEER, VIEWER, bearer
from .test_alerts import add, completed, failed, outbox_events, set_budget
from .test_policies import deployment, drift

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
URL = "/projects/p1/monitoring"
RULE = {"name": "errors", "metric": "error_rate", "comparison": ">", "threshold": 0.2, "window_seconds": 600}
POLICY = {"name": "re-evaluate", "deployment_id": "d1", "on": "drift", "action": "evaluate", "suite_id": "suite-1"}


@pytest.fixture
def monitoring_settings(monitoring_settings):
    # the tests evaluate when they choose: the background pass runs once at start, then not for an hour
    return monitoring_settings.model_copy(update={"alert_interval_seconds": 3600.0})


def refused_fields(response) -> list[str]:
    assert response.status_code == 422, response.text
    return [e["field"] for e in response.json()["errors"]]


class TestRules:
    async def test_a_rule_is_created_read_and_announced(self, monitoring, client):
        body = RULE | {"filters": {"deployment_id": "d1"}, "for_seconds": 120}
        response = await client.post(f"{URL}/rules", json=body, headers=ENGINEER)
        assert response.status_code == 201, response.text
        rule = response.json()
        assert rule.items() >= (body | {"state": "ok", "created_by": "eve", "last_value": None}).items()

        assert (await client.get(f"{URL}/rules/{rule['id']}", headers=VIEWER)).json() == rule
        assert (await client.get(f"{URL}/rules", headers=VIEWER)).json() == [rule]
        [event] = await outbox_events(monitoring.runtime, "monitoring.rule.set")
        assert (event["subject"], event["actor"], event["project"]) == (rule["id"], "eve", "p1")
        assert event["data"]["definition"] == {
            "metric": "error_rate",
            "filters": {"deployment_id": "d1"},
            "comparison": ">",
            "threshold": 0.2,
            "window_seconds": 600,
            "for_seconds": 120,
        }

    async def test_a_deleted_rule_is_gone_and_announced(self, monitoring, client):
        rule = (await client.post(f"{URL}/rules", json=RULE, headers=ENGINEER)).json()
        assert (await client.delete(f"{URL}/rules/{rule['id']}", headers=ENGINEER)).status_code == 204
        assert (await client.get(f"{URL}/rules/{rule['id']}", headers=VIEWER)).status_code == 404
        assert (await client.delete(f"{URL}/rules/{rule['id']}", headers=ENGINEER)).status_code == 404
        events = await outbox_events(monitoring.runtime, "monitoring.rule.set")
        assert [e["data"]["deleted"] for e in events] == [False, True]

    async def test_a_second_rule_of_the_same_name_conflicts(self, client):
        assert (await client.post(f"{URL}/rules", json=RULE, headers=ENGINEER)).status_code == 201
        assert (await client.post(f"{URL}/rules", json=RULE, headers=ENGINEER)).status_code == 409

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"metric": "latency_p42"}, "metric"),
            ({"metric": "errors."}, "metric"),
            ({"window_seconds": 30}, "window_seconds"),
            ({"for_seconds": -1}, "for_seconds"),
            ({"comparison": "=="}, "comparison"),
            ({"threshold": "high"}, "threshold"),
            ({"filters": {"region": "eu"}}, "filters.region"),
            ({"name": ""}, "name"),
        ],
    )
    async def test_an_invalid_rule_is_refused_naming_the_field(self, client, change, field):
        response = await client.post(f"{URL}/rules", json=RULE | change, headers=ENGINEER)
        assert refused_fields(response) == [field]

    async def test_a_rule_on_an_error_kind_is_accepted(self, client):
        response = await client.post(f"{URL}/rules", json=RULE | {"metric": "errors.http_502"}, headers=ENGINEER)
        assert response.status_code == 201, response.text

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.post(f"{URL}/rules", json=RULE)).status_code == 401
        assert (await client.get(f"{URL}/rules")).status_code == 401

    async def test_a_caller_without_the_permission_or_the_project_is_refused(self, client):
        assert (await client.post(f"{URL}/rules", json=RULE, headers=VIEWER)).status_code == 403
        other = bearer(Role.ML_ENGINEER, projects=("p2",))
        assert (await client.post(f"{URL}/rules", json=RULE, headers=other)).status_code == 403
        assert (await client.get(f"{URL}/rules", headers=other)).status_code == 403
        rule = (await client.post(f"{URL}/rules", json=RULE, headers=ENGINEER)).json()
        assert (await client.delete(f"{URL}/rules/{rule['id']}", headers=VIEWER)).status_code == 403


class TestPolicies:
    async def test_a_policy_is_created_read_and_announced(self, monitoring, client):
        await deployment(monitoring.runtime)
        response = await client.post(f"{URL}/policies", json=POLICY | {"cool_down_seconds": 3600}, headers=ENGINEER)
        assert response.status_code == 201, response.text
        created = response.json()
        assert created.items() >= (POLICY | {"model_name": None, "created_by": "eve"}).items()
        assert (await client.get(f"{URL}/policies/{created['id']}", headers=VIEWER)).json() == created
        assert (await client.get(f"{URL}/policies", headers=VIEWER)).json() == [created]
        [event] = await outbox_events(monitoring.runtime, "monitoring.policy.set")
        assert event["data"]["target"] == {"deployment_id": "d1", "model_name": None}
        assert (event["data"]["set_by"], event["data"]["cool_down_seconds"]) == ("eve", 3600)

    async def test_a_policys_actions_list_what_it_did_and_why(self, monitoring, client):
        await deployment(monitoring.runtime)
        created = (
            await client.post(f"{URL}/policies", json=POLICY | {"cool_down_seconds": 60}, headers=ENGINEER)
        ).json()
        now = datetime.now(UTC)
        first, second = drift(now), drift(now + timedelta(seconds=30))
        for cause in (first, second):
            async with monitoring.runtime.db.transaction() as session:
                await policies.on_monitoring_event(session, monitoring.runtime, cause)
        listed = (await client.get(f"{URL}/policies/{created['id']}/actions", headers=VIEWER)).json()
        assert [(a["cause_event_id"], a["outcome"]) for a in listed] == [
            (second.id, "cooling_down"),
            (first.id, "triggered"),
        ]
        [triggered] = await outbox_events(monitoring.runtime, "monitoring.policy.triggered")
        assert listed[1]["event_id"] == triggered["id"] and listed[0]["event_id"] is None

    async def test_a_deleted_policy_is_gone_and_announced(self, monitoring, client):
        await deployment(monitoring.runtime)
        created = (
            await client.post(f"{URL}/policies", json=POLICY | {"cool_down_seconds": 0}, headers=ENGINEER)
        ).json()
        assert (await client.delete(f"{URL}/policies/{created['id']}", headers=ENGINEER)).status_code == 204
        assert (await client.get(f"{URL}/policies/{created['id']}", headers=VIEWER)).status_code == 404
        events = await outbox_events(monitoring.runtime, "monitoring.policy.set")
        assert [e["data"]["deleted"] for e in events] == [False, True]

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"deployment_id": "unknown-deployment"}, "deployment_id"),
            ({"deployment_id": None, "model_name": "unknown-model"}, "model_name"),
            ({"model_name": "chat-small"}, "deployment_id"),
            ({"suite_id": None}, "suite_id"),
            ({"action": "retrain", "suite_id": None}, "dataset_id"),
            ({"on": "latency"}, "on"),
            ({"cool_down_seconds": -5}, "cool_down_seconds"),
            ({"cool_down_seconds": True}, "cool_down_seconds"),
        ],
    )
    async def test_an_invalid_policy_is_refused_naming_the_field(self, monitoring, client, change, field):
        await deployment(monitoring.runtime)
        body = POLICY | {"cool_down_seconds": 60} | change
        response = await client.post(f"{URL}/policies", json=body, headers=ENGINEER)
        assert refused_fields(response) == [field]

    async def test_an_unknown_deployment_is_named_in_the_refusal(self, client):
        response = await client.post(f"{URL}/policies", json=POLICY | {"cool_down_seconds": 60}, headers=ENGINEER)
        assert refused_fields(response) == ["deployment_id"]
        assert "'d1'" in response.json()["detail"]

    async def test_a_request_without_a_token_or_the_permission_is_refused(self, monitoring, client):
        await deployment(monitoring.runtime)
        body = POLICY | {"cool_down_seconds": 60}
        assert (await client.post(f"{URL}/policies", json=body)).status_code == 401
        assert (await client.post(f"{URL}/policies", json=body, headers=VIEWER)).status_code == 403
        assert (await client.get(f"{URL}/policies", headers=bearer(Role.VIEWER, projects=("p2",)))).status_code == 403


class TestActiveAlerts:
    async def test_the_alerts_list_firing_and_pending_rules_and_firing_budgets(self, monitoring, client):
        runtime = monitoring.runtime
        now = datetime.now(UTC)
        await add(runtime, [failed(now - timedelta(minutes=1)) for _ in range(3)] + [completed(now)])
        await set_budget(runtime, "b1", scope="project", subject="p1", period="total", max_tokens=40)
        for name, for_seconds in (("fires", 0), ("waits", 600)):
            await client.post(f"{URL}/rules", json=RULE | {"name": name, "for_seconds": for_seconds}, headers=ENGINEER)
        await client.post(f"{URL}/rules", json=RULE | {"name": "quiet", "threshold": 0.9}, headers=ENGINEER)
        async with runtime.db.transaction() as session:
            await alerts.evaluate_rules(session, runtime, monitoring.settings, now + timedelta(seconds=1))

        active = (await client.get(f"{URL}/alerts", headers=VIEWER)).json()
        assert [(r["name"], r["state"], r["last_value"]) for r in active["rules"]] == [
            ("fires", "firing", 0.75),
            ("waits", "pending", 0.75),
        ]
        assert [(b["budget_id"], b["state"]) for b in active["budgets"]] == [("b1", "firing")]
        assert (await client.get(f"{URL}/alerts")).status_code == 401
