"""Project limits and budgets through the API: set (a budget's event published), refused with the field named, and
listed with what the current window has used and holds reserved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from llmops.auth import Role
from llmops_deployment.access import EPOCH, window_start
from llmops_deployment.models import budget_usage

from .access_support import outbox_events
from .conftest import ADMIN, ENGINEER, STEWARD, VIEWER, bearer

pytestmark = pytest.mark.integration
LIMITS, BUDGETS = "/projects/p1/limits", "/projects/p1/budgets"


async def put_budget(client, body: dict, headers: dict = ENGINEER, status: int = 201) -> dict:
    response = await client.put(BUDGETS, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


async def new_key(client, name: str = "app", revoked: bool = False) -> str:
    key = (await client.post("/projects/p1/keys", json={"name": name}, headers=ENGINEER)).json()
    if revoked:
        await client.post(f"/projects/p1/keys/{key['id']}/revoke", headers=ENGINEER)
    return key["id"]


class TestWindows:
    def test_a_window_starts_today_this_month_or_at_the_epoch(self):
        now = datetime(2026, 3, 15, 22, 30, tzinfo=UTC)
        assert window_start("day", now) == datetime(2026, 3, 15, tzinfo=UTC)
        assert window_start("month", now) == datetime(2026, 3, 1, tzinfo=UTC)
        assert window_start("total", now) == EPOCH == datetime(1970, 1, 1, tzinfo=UTC)

    def test_windows_are_in_utc_whatever_the_clocks_zone(self):
        tokyo = datetime(2026, 4, 1, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2026-03-31 23:00 UTC
        assert window_start("day", tokyo) == datetime(2026, 3, 31, tzinfo=UTC)
        assert window_start("month", tokyo) == datetime(2026, 3, 1, tzinfo=UTC)


class TestSetLimits:
    async def test_limits_are_set_shown_and_removed(self, client):
        response = await client.get(LIMITS, headers=VIEWER)
        assert response.json()["requests_per_minute"] is None and response.json()["updated_by"] is None
        response = await client.put(
            LIMITS, json={"requests_per_minute": 600, "tokens_per_minute": 90_000}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        assert (response.json()["requests_per_minute"], response.json()["updated_by"]) == (600, "ada")
        await client.put(LIMITS, json={"tokens_per_minute": 1_000}, headers=ENGINEER)
        shown = (await client.get(LIMITS, headers=VIEWER)).json()
        assert (shown["requests_per_minute"], shown["tokens_per_minute"], shown["updated_by"]) == (None, 1_000, "eve")

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.put(LIMITS, json={})).status_code == 401
        assert (await client.get(LIMITS)).status_code == 401

    async def test_a_caller_without_the_permission_is_refused(self, client):
        assert (await client.put(LIMITS, json={}, headers=VIEWER)).status_code == 403
        assert (await client.get(LIMITS, headers=STEWARD)).status_code == 403

    async def test_invalid_limits_are_refused_naming_the_field(self, client):
        for body, field in (
            ({"requests_per_minute": 0}, "requests_per_minute"),
            ({"tokens_per_minute": 1.5}, "tokens_per_minute"),
            ({"rpm": 3}, "rpm"),
        ):
            response = await client.put(LIMITS, json=body, headers=ENGINEER)
            assert response.status_code == 422, response.text
            assert field in {e["field"] for e in response.json()["errors"]}


class TestSetBudget:
    async def test_a_project_budget_is_created_then_changed_and_each_published(self, deployment, client):
        budget = await put_budget(client, {"scope": "project", "period": "month", "max_tokens": 1_000_000})
        assert (budget["subject"], budget["max_tokens"], budget["max_cost"]) == ("p1", 1_000_000, None)
        assert budget["window_start"].startswith(window_start("month").isoformat()[:10])
        assert (budget["used_tokens"], budget["reserved_cost"]) == (0, 0.0)
        changed = await put_budget(
            client, {"scope": "project", "subject": "p1", "period": "month", "max_cost": 25.5}, ADMIN, status=200
        )
        assert changed["id"] == budget["id"]
        assert (changed["max_tokens"], changed["max_cost"], changed["updated_by"]) == (None, 25.5, "ada")
        events = await outbox_events(deployment, "budget.set")
        assert [e["subject"] for e in events] == [budget["id"]] * 2
        assert events[1]["data"] == {
            "budget_id": budget["id"],
            "project": "p1",
            "scope": "project",
            "subject": "p1",
            "period": "month",
            "max_tokens": None,
            "max_cost": 25.5,
            "actor": "ada",
        }

    async def test_user_and_key_budgets_name_their_subject(self, client):
        key_id = await new_key(client)
        user = await put_budget(client, {"scope": "user", "subject": "alice", "period": "day", "max_tokens": 5_000})
        key = await put_budget(client, {"scope": "key", "subject": key_id.upper(), "period": "total", "max_cost": 3})
        assert (user["subject"], key["subject"]) == ("alice", key_id)
        assert key["window_start"].startswith("1970-01-01")

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (
            await client.put(BUDGETS, json={"scope": "project", "period": "day", "max_tokens": 1})
        ).status_code == 401

    async def test_a_caller_without_the_permission_is_refused(self, client):
        body = {"scope": "project", "period": "day", "max_tokens": 1}
        for headers in (VIEWER, STEWARD, bearer(Role.ML_ENGINEER, projects=("p2",))):
            assert (await client.put(BUDGETS, json=body, headers=headers)).status_code == 403

    async def test_an_invalid_budget_is_refused_naming_the_field(self, deployment, client):
        revoked = await new_key(client, "old", revoked=True)
        theirs = await client.post(
            "/projects/p2/keys", json={"name": "theirs"}, headers=bearer(Role.ADMIN, projects=("p2",))
        )
        day = {"period": "day", "max_tokens": 10}
        cases = [
            ({"scope": "project", "period": "day"}, "max_tokens"),
            ({"scope": "project", "subject": "p2", **day}, "subject"),
            ({"scope": "user", **day}, "subject"),
            ({"scope": "key", "subject": "not-a-key", **day}, "subject"),
            ({"scope": "key", "subject": theirs.json()["id"], **day}, "subject"),
            ({"scope": "key", "subject": revoked, **day}, "subject"),
            ({"scope": "team", "subject": "x", **day}, "scope"),
            ({"scope": "project", "period": "week", "max_tokens": 1}, "period"),
            ({"scope": "project", "period": "day", "max_cost": -1}, "max_cost"),
            ({"scope": "project", "period": "day", "max_tokens": "10"}, "max_tokens"),
            ({"scope": "user", "subject": "", **day}, "subject"),
        ]
        for body, field in cases:
            response = await client.put(BUDGETS, json=body, headers=ENGINEER)
            assert response.status_code == 422, (body, response.text)
            assert field in {e["field"] for e in response.json()["errors"]}, (body, response.text)
        assert await outbox_events(deployment, "budget.set") == []


class TestListBudgets:
    async def test_each_budget_shows_its_current_windows_usage_only(self, deployment, client):
        day = await put_budget(client, {"scope": "user", "subject": "alice", "period": "day", "max_tokens": 100})
        total = await put_budget(client, {"scope": "project", "period": "total", "max_cost": 10})
        today = window_start("day")
        async with deployment.runtime.db.transaction() as session:
            await session.execute(
                insert(budget_usage),
                [
                    usage | {"used_tokens": 0, "used_cost": 0.0, "reserved_tokens": 0, "reserved_cost": 0.0} | given
                    for usage, given in [
                        ({"budget_id": day["id"], "window_start": today}, {"used_tokens": 40, "reserved_tokens": 16}),
                        ({"budget_id": day["id"], "window_start": today - timedelta(days=1)}, {"used_tokens": 99}),
                        ({"budget_id": total["id"], "window_start": EPOCH}, {"used_cost": 2.5, "reserved_cost": 0.5}),
                    ]
                ],
            )
        response = await client.get(BUDGETS, headers=VIEWER)
        assert response.status_code == 200, response.text
        listed = {b["id"]: b for b in response.json()}
        assert (listed[day["id"]]["used_tokens"], listed[day["id"]]["reserved_tokens"]) == (40, 16)
        assert listed[day["id"]]["window_start"].startswith(today.isoformat()[:10])
        assert (listed[total["id"]]["used_cost"], listed[total["id"]]["reserved_cost"]) == (2.5, 0.5)

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.get(BUDGETS)).status_code == 401

    async def test_a_steward_is_refused(self, client):
        assert (await client.get(BUDGETS, headers=STEWARD)).status_code == 403

    async def test_another_project_name_that_is_no_name_is_refused_naming_it(self, client):
        response = await client.get("/projects/-bad/budgets", headers=bearer(Role.ADMIN, projects=("-bad",)))
        assert response.status_code == 422 and "project" in {e["field"] for e in response.json()["errors"]}
