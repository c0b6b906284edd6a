"""Alert rules and budget alerts.

A rule watches one metric (``metrics.METRIC_NAMES``) of a project's buckets over its window, filtered by dimensions,
against a threshold. Its state goes ok → pending (the condition holds) → firing (it held ``for_seconds``) → ok (it
stopped holding): ``monitoring.alert.fired`` on entering firing, ``monitoring.alert.resolved`` on leaving it; pending
→ ok says nothing. A metric with no value (an error rate without requests) does not hold.

A budget (the ``budget.set`` projection) fires at ``budget_alert_share`` of its tokens (in + out) or its cost spent in
its current period (the UTC day, month, or in total), summed from the hour buckets; it resolves once the spend is
below that share again (a new period, or a larger budget). Budgets of an API key are not watched: the metric buckets
have no key dimension. A budget alert's rule is ``budget:<budget_id>`` and its rule id the budget id.

Every change is an event in the outbox, in the caller's transaction; rows are locked ``SKIP LOCKED``, so two passes
(two replicas) never announce one change twice.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem
from llmops.logging import get_logger
from llmops.runtime import Actor, Runtime
from llmops_monitoring import metrics_store
from llmops_monitoring.metrics import metric_value, summarise
from llmops_monitoring.models import alert_rules, budgets, metric_buckets
from llmops_monitoring.settings import MonitoringSettings
from llmops_schemas.events import MonitoringAlertFired, MonitoringAlertResolved, MonitoringRuleSet

log = get_logger(__name__)

ACTOR = Actor("monitoring")
Comparison = Literal[">", ">=", "<", "<="]
COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
#: The dimensions a rule may filter on (the project is the rule's own).
FILTER_DIMENSIONS: tuple[str, ...] = ("route", "deployment_id", "model_version_id", "user")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- the state machine (pure) --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """A rule's next state, since when it is pending, and the event its change announces (if any)."""

    state: Literal["ok", "pending", "firing"]
    pending_since: datetime | None
    announce: Literal["fired", "resolved"] | None = None


def step(state: str, pending_since: datetime | None, holds: bool, for_seconds: int, now: datetime) -> Step:
    """The next state of a rule whose condition ``holds`` (or not) at ``now``."""
    if not holds:
        return Step("ok", None, "resolved" if state == "firing" else None)
    if state == "firing":
        return Step("firing", pending_since)
    since = pending_since if state == "pending" and pending_since is not None else now
    if now - since >= timedelta(seconds=for_seconds):
        return Step("firing", since, "fired")
    return Step("pending", since)


def holds(value: float | None, comparison: str, threshold: float) -> bool:
    return value is not None and COMPARISONS[comparison](value, threshold)


def period_start(period: str, now: datetime) -> datetime:
    """The start of a budget's current period in UTC: today, this month, or the epoch for ``total``."""
    now = now.astimezone(UTC)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == "total":
        return EPOCH
    raise ValueError(f"unknown budget period {period!r}")


# --- rules: what the API sets ----------------------------------------------------------------------------------------


def _definition(row: Mapping[str, Any]) -> dict[str, Any]:
    names = ("metric", "filters", "comparison", "threshold", "window_seconds", "for_seconds")
    return {name: row[name] for name in names}


async def create_rule(
    session: AsyncSession, runtime: Runtime, *, project: str, actor: Actor, name: str, **definition: Any
) -> dict[str, Any]:
    """A new rule (state ok) and its ``monitoring.rule.set`` event; 409 when the project has a rule of that name."""
    values = {"id": str(uuid.uuid4()), "project": project, "name": name, "created_by": actor.subject, **definition}
    row = (
        await session.execute(insert(alert_rules).values(values).on_conflict_do_nothing().returning(alert_rules))
    ).one_or_none()
    if row is None:
        raise Problem(409, f"the project has an alert rule named {name!r}")
    rule = dict(row._mapping)
    await _announce_set(session, runtime, rule, actor, deleted=False)
    return rule


async def delete_rule(session: AsyncSession, runtime: Runtime, *, project: str, rule_id: str, actor: Actor) -> None:
    row = (
        await session.execute(
            delete(alert_rules)
            .where(alert_rules.c.project == project, alert_rules.c.id == rule_id)
            .returning(alert_rules)
        )
    ).one_or_none()
    if row is None:
        raise Problem(404, "no such alert rule in this project")
    await _announce_set(session, runtime, dict(row._mapping), actor, deleted=True)


async def _announce_set(
    session: AsyncSession, runtime: Runtime, rule: Mapping[str, Any], actor: Actor, *, deleted: bool
) -> None:
    payload = MonitoringRuleSet(
        project=rule["project"],
        rule_id=rule["id"],
        name=rule["name"],
        definition=_definition(rule),
        deleted=deleted,
        set_by=actor.subject,
    )
    await add_to_outbox(session, runtime.event(payload, subject=rule["id"], actor=actor, project=rule["project"]))


async def get_rule(session: AsyncSession, project: str, rule_id: str) -> dict[str, Any]:
    row = (
        await session.execute(select(alert_rules).where(alert_rules.c.project == project, alert_rules.c.id == rule_id))
    ).one_or_none()
    if row is None:
        raise Problem(404, "no such alert rule in this project")
    return dict(row._mapping)


async def list_rules(session: AsyncSession, project: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(alert_rules).where(alert_rules.c.project == project).order_by(alert_rules.c.name)
    )
    return [dict(r._mapping) for r in rows]


async def active_alerts(session: AsyncSession, project: str) -> dict[str, list[dict[str, Any]]]:
    """The project's rules that are pending or firing, and its budgets whose alert is firing."""
    rules = await session.execute(
        select(alert_rules)
        .where(alert_rules.c.project == project, alert_rules.c.state.in_(("pending", "firing")))
        .order_by(alert_rules.c.name)
    )
    firing = await session.execute(
        select(budgets).where(budgets.c.project == project, budgets.c.state == "firing").order_by(budgets.c.budget_id)
    )
    return {"rules": [dict(r._mapping) for r in rules], "budgets": [dict(b._mapping) for b in firing]}


# --- evaluation ----------------------------------------------------------------------------------------------------


async def evaluate_rules(
    session: AsyncSession, runtime: Runtime, settings: MonitoringSettings, now: datetime | None = None
) -> int:
    """Evaluate the least recently evaluated rules (at most ``alert_rules_per_pass``) and the budgets at ``now``;
    returns how many fired and resolved events were published. Runs in the caller's transaction."""
    now = now or datetime.now(UTC)
    rows = (
        await session.execute(
            select(alert_rules)
            .order_by(alert_rules.c.last_evaluated_at.asc().nulls_first(), alert_rules.c.id)
            .limit(settings.alert_rules_per_pass)
            .with_for_update(skip_locked=True)
        )
    ).all()
    published = 0
    for row in rows:
        published += await _evaluate_rule(session, runtime, settings, row, now)
    return published + await evaluate_budgets(session, runtime, settings, now)


async def _evaluate_rule(
    session: AsyncSession, runtime: Runtime, settings: MonitoringSettings, rule: Any, now: datetime
) -> int:
    try:
        value = await rule_value(session, settings, rule, now)
    except Problem as exc:  # a window holding more buckets than a query may read: the state stays as it was
        log.warning("monitoring.alert.unreadable", rule_id=rule.id, detail=exc.detail)
        await session.execute(update(alert_rules).where(alert_rules.c.id == rule.id).values(last_evaluated_at=now))
        return 0
    change = step(rule.state, rule.pending_since, holds(value, rule.comparison, rule.threshold), rule.for_seconds, now)
    await session.execute(
        update(alert_rules)
        .where(alert_rules.c.id == rule.id)
        .values(state=change.state, pending_since=change.pending_since, last_value=value, last_evaluated_at=now)
    )
    if change.announce is None:
        return 0
    kind = MonitoringAlertFired if change.announce == "fired" else MonitoringAlertResolved
    payload = kind(project=rule.project, rule_id=rule.id, rule=rule.name, value=value, **_definition(rule._mapping))
    await add_to_outbox(session, runtime.event(payload, subject=rule.id, actor=ACTOR, project=rule.project))
    log.info(f"monitoring.alert.{change.announce}", rule_id=rule.id, project=rule.project, value=value)
    return 1


async def rule_value(session: AsyncSession, settings: MonitoringSettings, rule: Any, now: datetime) -> float | None:
    """The rule's metric over ``[now - window, now)``: minute buckets for recent windows of up to six hours, else
    hour buckets (whose first may start up to an hour before the window)."""
    start = now - timedelta(seconds=rule.window_seconds)
    resolution = metrics_store.resolution_for(start, now, minute_days=settings.minute_buckets_days)
    buckets = await metrics_store.read_buckets(
        session,
        project=rule.project,
        start=start,
        end=now,
        resolution=resolution,
        filters=rule.filters,
        limit=settings.max_query_buckets,
    )
    return metric_value(summarise(bucket for _, bucket in buckets), rule.metric)


async def evaluate_budgets(session: AsyncSession, runtime: Runtime, settings: MonitoringSettings, now: datetime) -> int:
    """Fire or resolve the budget alerts (at most ``alert_rules_per_pass`` budgets a pass, a random sample when
    there are more, so each is seen in time); returns how many events were published."""
    rows = (
        await session.execute(
            select(budgets)
            .where(budgets.c.scope != "key")
            .order_by(func.random())
            .limit(settings.alert_rules_per_pass)
            .with_for_update(skip_locked=True)
        )
    ).all()
    published = 0
    for budget in rows:
        published += await _evaluate_budget(session, runtime, settings.budget_alert_share, budget, now)
    return published


async def _evaluate_budget(session: AsyncSession, runtime: Runtime, share: float, budget: Any, now: datetime) -> int:
    start = period_start(budget.period, now)
    cost, tokens = await spend(session, budget, start, now)
    over = [
        (metric, spent, share * limit)
        for metric, spent, limit in (("cost", cost, budget.max_cost), ("tokens", tokens, budget.max_tokens))
        if limit is not None and spent > 0 and spent >= share * limit
    ]
    if bool(over) == (budget.state == "firing"):
        return 0
    if over:
        metric, value, threshold = over[0]
    else:
        metric, value, threshold = (
            ("cost", cost, share * budget.max_cost)
            if budget.max_cost is not None
            else ("tokens", tokens, share * (budget.max_tokens or 0))
        )
    await session.execute(
        update(budgets).where(budgets.c.budget_id == budget.budget_id).values(state="firing" if over else "ok")
    )
    kind = MonitoringAlertFired if over else MonitoringAlertResolved
    payload = kind(
        project=budget.project,
        rule_id=budget.budget_id,
        rule=f"budget:{budget.budget_id}",
        metric=metric,
        filters={"user": budget.subject} if budget.scope == "user" else {},
        value=float(value),
        threshold=threshold,
        comparison=">=",
        window_seconds=max(60, int((now - start).total_seconds())),
        for_seconds=0,
    )
    await add_to_outbox(session, runtime.event(payload, subject=budget.budget_id, actor=ACTOR, project=budget.project))
    log.info("monitoring.budget.alert", budget_id=budget.budget_id, firing=bool(over), metric=metric, value=value)
    return 1


async def spend(session: AsyncSession, budget: Any, start: datetime, end: datetime) -> tuple[float, int]:
    """The cost and the tokens (in + out) of a budget's subject in ``[start, end)``, summed from the hour buckets
    (only the sums are read: no sketch is decoded)."""
    data = metric_buckets.c.data
    query = select(
        func.coalesce(func.sum(data["cost"].as_float()), 0.0),
        func.coalesce(func.sum(data["tokens_in"].as_integer() + data["tokens_out"].as_integer()), 0),
    ).where(
        metric_buckets.c.resolution == "hour",
        metric_buckets.c.project == budget.project,
        metric_buckets.c.start >= start,
        metric_buckets.c.start < end,
    )
    # the per-user buckets for a user's budget, the buckets of all users for a project's (never both: each counts
    # every record)
    query = query.where(metric_buckets.c.user == (budget.subject if budget.scope == "user" else ""))
    cost, tokens = (await session.execute(query)).one()
    return float(cost), int(tokens)
