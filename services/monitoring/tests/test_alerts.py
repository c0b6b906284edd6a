"""Alert rules and budget alerts: the state machine on its own, then rules and budgets evaluated from metric buckets
in Postgres at moments the tests choose (no sleeping), with their fired and resolved events in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import select

from llmops.bus import make_broker, outbox
from llmops.db import Database
from llmops.runtime import Actor, Runtime
from llmops_monitoring import alerts, metrics_store, repository
from llmops_monitoring.models import alert_rules, budgets
from llmops_monitoring.records import record_of
from llmops_schemas import new_event
from llmops_schemas.events import BudgetSet, InferenceCompleted, InferenceFailed

from . import events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ENGINEER = Actor("eve", correlation_id="req-1")


def bare_runtime(settings) -> Runtime:
    """The service's database and event helpers, without its background loops (the tests choose ``now``)."""
    return Runtime(
        settings, Database(settings.db_url), make_broker(settings.kafka, client_id="monitoring-tests"), run_relay=False
    )


@pytest.fixture
async def runtime(monitoring_settings):
    runtime = bare_runtime(monitoring_settings)
    yield runtime
    await runtime.db.dispose()


def completed(at: datetime, **values) -> dict:
    event = events.completed(time=at, **values)
    return record_of(event, InferenceCompleted.model_validate(event.data))


def failed(at: datetime, **values) -> dict:
    event = events.failed(**values).model_copy(update={"time": at})
    return record_of(event, InferenceFailed.model_validate(event.data))


async def add(runtime: Runtime, records: list[dict]) -> None:
    async with runtime.db.transaction() as session:
        await metrics_store.add_records(session, records)


async def outbox_events(runtime: Runtime, *types: str) -> list[dict]:
    async with runtime.db.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        return [event for p in payloads if (event := orjson.loads(p))["type"] in types]


async def evaluate(runtime: Runtime, now: datetime) -> int:
    async with runtime.db.transaction() as session:
        return await alerts.evaluate_rules(session, runtime, runtime.settings, now)


async def rule(runtime: Runtime, **definition) -> dict:
    values = {"name": "errors", "metric": "error_rate", "filters": {}, "comparison": ">", "threshold": 0.2}
    values |= {"window_seconds": 600, "for_seconds": 120} | definition
    async with runtime.db.transaction() as session:
        return await alerts.create_rule(session, runtime, project="p1", actor=ENGINEER, **values)


async def state_of(runtime: Runtime, table, key) -> str:
    async with runtime.db.sessions() as session:
        return (await session.execute(select(table.c.state).where(key))).scalar_one()


class TestStateMachine:
    def test_a_condition_that_starts_holding_makes_the_rule_pending(self):
        assert alerts.step("ok", None, True, 60, T0) == alerts.Step("pending", T0)

    def test_a_pending_rule_fires_once_it_held_for_its_duration(self):
        assert alerts.step("pending", T0, True, 60, T0 + timedelta(seconds=59)) == alerts.Step("pending", T0)
        assert alerts.step("pending", T0, True, 60, T0 + timedelta(seconds=60)) == alerts.Step("firing", T0, "fired")

    def test_a_rule_without_a_duration_fires_at_once(self):
        assert alerts.step("ok", None, True, 0, T0) == alerts.Step("firing", T0, "fired")

    def test_a_firing_rule_stays_firing_silently_while_it_holds(self):
        assert alerts.step("firing", T0, True, 60, T0 + timedelta(hours=1)) == alerts.Step("firing", T0)

    def test_a_firing_rule_that_stops_holding_resolves(self):
        assert alerts.step("firing", T0, False, 60, T0) == alerts.Step("ok", None, "resolved")

    def test_a_pending_rule_that_stops_holding_goes_back_to_ok_silently(self):
        assert alerts.step("pending", T0, False, 60, T0) == alerts.Step("ok", None)

    def test_a_metric_without_a_value_does_not_hold(self):
        assert not alerts.holds(None, "<", 1.0)
        assert alerts.holds(0.5, ">", 0.2) and not alerts.holds(0.2, ">", 0.2) and alerts.holds(0.2, ">=", 0.2)

    def test_budget_periods_start_at_the_utc_day_month_and_epoch(self):
        moment = datetime(2026, 3, 17, 9, 30, tzinfo=UTC)
        assert alerts.period_start("day", moment) == datetime(2026, 3, 17, tzinfo=UTC)
        assert alerts.period_start("month", moment) == datetime(2026, 3, 1, tzinfo=UTC)
        assert alerts.period_start("total", moment) == datetime(1970, 1, 1, tzinfo=UTC)


class TestRules:
    async def test_a_rule_fires_after_holding_for_its_duration_and_resolves_when_the_window_moves_on(self, runtime):
        now = datetime.now(UTC).replace(second=30, microsecond=0)
        await add(runtime, [failed(now - timedelta(minutes=1)) for _ in range(5)])
        await add(runtime, [completed(now - timedelta(minutes=1)) for _ in range(5)])
        created = await rule(runtime, filters={"deployment_id": "d1"})
        key = alert_rules.c.id == created["id"]

        assert await evaluate(runtime, now) == 0
        assert await state_of(runtime, alert_rules, key) == "pending"
        assert await evaluate(runtime, now + timedelta(seconds=119)) == 0
        assert await evaluate(runtime, now + timedelta(seconds=120)) == 1
        assert await state_of(runtime, alert_rules, key) == "firing"
        assert await evaluate(runtime, now + timedelta(seconds=150)) == 0  # still firing: said once

        [fired] = await outbox_events(runtime, "monitoring.alert.fired")
        assert fired["subject"] == created["id"] and fired["project"] == "p1"
        assert (
            fired["data"].items()
            >= {
                "rule": "errors",
                "metric": "error_rate",
                "value": 0.5,
                "threshold": 0.2,
                "comparison": ">",
                "filters": {"deployment_id": "d1"},
                "window_seconds": 600,
                "for_seconds": 120,
            }.items()
        )
        # ten minutes later the window holds no requests: no error rate, so the condition no longer holds
        assert await evaluate(runtime, now + timedelta(seconds=700)) == 1
        assert await state_of(runtime, alert_rules, key) == "ok"
        [resolved] = await outbox_events(runtime, "monitoring.alert.resolved")
        assert resolved["data"]["value"] is None and resolved["subject"] == created["id"]

    async def test_a_rule_reads_only_the_buckets_its_filters_name(self, runtime):
        now = datetime.now(UTC).replace(second=30, microsecond=0)
        await add(runtime, [failed(now - timedelta(minutes=1), deployment_id="d1") for _ in range(4)])
        await add(runtime, [completed(now - timedelta(minutes=1), deployment_id="d2") for _ in range(4)])
        on_d2 = await rule(runtime, name="d2-errors", filters={"deployment_id": "d2"}, for_seconds=0)
        everywhere = await rule(runtime, name="all-errors", for_seconds=0)

        assert await evaluate(runtime, now) == 1
        async with runtime.db.sessions() as session:
            values = dict((await session.execute(select(alert_rules.c.id, alert_rules.c.last_value))).all())
        assert values == {on_d2["id"]: 0.0, everywhere["id"]: 0.5}
        [fired] = await outbox_events(runtime, "monitoring.alert.fired")
        assert fired["data"]["rule_id"] == everywhere["id"]

    async def test_a_latency_rule_compares_the_windows_percentile(self, runtime):
        now = datetime.now(UTC).replace(second=30, microsecond=0)
        slow = [completed(now - timedelta(minutes=2), latency_ms=float(ms)) for ms in range(100, 1100, 10)]
        await add(runtime, slow)
        await rule(runtime, name="p95", metric="latency_p95", threshold=900, for_seconds=0)
        await rule(runtime, name="p50", metric="latency_p50", threshold=900, for_seconds=0)

        assert await evaluate(runtime, now) == 1
        [fired] = await outbox_events(runtime, "monitoring.alert.fired")
        assert fired["data"]["rule"] == "p95"
        assert fired["data"]["value"] == pytest.approx(1040, rel=0.01)  # the 95th of 100..1090 by 10

    async def test_a_condition_that_stops_before_its_duration_fires_nothing(self, runtime):
        now = datetime.now(UTC).replace(second=30, microsecond=0)
        await add(runtime, [failed(now - timedelta(minutes=1))])
        created = await rule(runtime, window_seconds=120)

        await evaluate(runtime, now)
        assert await evaluate(runtime, now + timedelta(seconds=150)) == 0  # the failure left the window
        assert await state_of(runtime, alert_rules, alert_rules.c.id == created["id"]) == "ok"
        assert await outbox_events(runtime, "monitoring.alert.fired", "monitoring.alert.resolved") == []


async def set_budget(runtime: Runtime, budget_id: str, **values) -> None:
    payload = BudgetSet(budget_id=budget_id, project="p1", actor="ada", **values)
    async with runtime.db.transaction() as session:
        await repository.set_budget(
            session, new_event(payload, subject=budget_id, source="/llmops/deployment"), payload
        )


class TestBudgets:
    # each record costs 0.0001 * (12 + 20) = 0.0032 and counts 32 tokens
    async def test_a_cost_budget_fires_at_eighty_percent_and_resolves_in_the_next_period(self, runtime):
        noon = T0
        await set_budget(runtime, "b1", scope="project", subject="p1", period="day", max_cost=0.039)
        await add(runtime, [completed(noon - timedelta(hours=h % 3)) for h in range(9)])  # 0.0288: 73.8 %
        key = budgets.c.budget_id == "b1"

        assert await evaluate(runtime, noon + timedelta(minutes=5)) == 0
        await add(runtime, [completed(noon)])  # 0.032: 82 %
        assert await evaluate(runtime, noon + timedelta(minutes=6)) == 1
        assert await state_of(runtime, budgets, key) == "firing"
        assert await evaluate(runtime, noon + timedelta(minutes=7)) == 0

        [fired] = await outbox_events(runtime, "monitoring.alert.fired")
        assert fired["subject"] == "b1"
        data = fired["data"]
        assert (data["rule"], data["rule_id"], data["metric"], data["filters"]) == ("budget:b1", "b1", "cost", {})
        assert data["value"] == pytest.approx(0.032) and data["threshold"] == pytest.approx(0.8 * 0.039)
        assert data["window_seconds"] == 12 * 3600 + 6 * 60

        assert await evaluate(runtime, noon + timedelta(days=1)) == 1  # a new day: nothing spent yet
        assert await state_of(runtime, budgets, key) == "ok"
        [resolved] = await outbox_events(runtime, "monitoring.alert.resolved")
        assert resolved["data"]["rule"] == "budget:b1" and resolved["data"]["value"] == 0.0

    async def test_a_users_token_budget_counts_only_that_users_tokens(self, runtime):
        await set_budget(runtime, "b-u1", scope="user", subject="u1", period="month", max_tokens=400)
        await add(runtime, [completed(T0, user="u2") for _ in range(20)])
        await add(runtime, [completed(T0 - timedelta(days=1), user="u1") for _ in range(9)])  # 288 of 400
        assert await evaluate(runtime, T0 + timedelta(hours=1)) == 0

        await add(runtime, [completed(T0, user="u1")])  # 320: 80 % exactly
        assert await evaluate(runtime, T0 + timedelta(hours=1)) == 1
        [fired] = await outbox_events(runtime, "monitoring.alert.fired")
        data = fired["data"]
        assert (data["metric"], data["value"], data["threshold"]) == ("tokens", 320.0, 320.0)
        assert data["filters"] == {"user": "u1"}

    async def test_last_months_spend_does_not_count_in_this_months_budget(self, runtime):
        await set_budget(runtime, "b-m", scope="project", subject="p1", period="month", max_tokens=100)
        await add(runtime, [completed(datetime(2026, 2, 27, tzinfo=UTC)) for _ in range(10)])
        assert await evaluate(runtime, T0) == 0

    async def test_a_key_budget_is_not_watched(self, runtime):
        await set_budget(runtime, "b-k", scope="key", subject="k1", period="total", max_tokens=1)
        await add(runtime, [completed(T0) for _ in range(10)])
        assert await evaluate(runtime, T0 + timedelta(hours=1)) == 0
        assert await state_of(runtime, budgets, budgets.c.budget_id == "b-k") == "ok"
