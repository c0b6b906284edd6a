"""The folds make chaos rebuilds projections with: what each gives for events in any order, copies and other
projects (``projections.py``)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import projections as p  # beside this file; the chaos script imports it the same way


def event(kind: str, second: int, project: str = "chaos", event_id: str | None = None, **data) -> dict:
    return {
        "id": event_id or f"{kind}-{second}-{random.random()}",
        "type": kind,
        "time": f"2026-12-02T08:00:{second:02d}+00:00",
        "data": {"project": project, **data},
    }


def shuffled(events: list[dict], seed: int) -> list[dict]:
    events = list(events)
    random.Random(seed).shuffle(events)
    return events


def rebuild(name: str, events: list[dict], service: str | None = None) -> set[tuple]:
    projection = next(x for x in p.PROJECTIONS if x.name == name and (service is None or x.service == service))
    return projection.rebuild(events, "chaos")


def test_an_alias_is_where_its_latest_move_by_event_time_says_whatever_the_topic_order():
    moves = [
        event("model.alias.moved", 1, name="m", alias="production", to_version=1),
        event("model.alias.moved", 3, name="m", alias="production", to_version=3),
        event("model.alias.moved", 2, name="m", alias="production", to_version=2),
        event("model.alias.moved", 2, name="m", alias="candidate", to_version=5),
        event("model.alias.moved", 9, project="other", name="m", alias="production", to_version=9),
    ]
    for seed in range(5):
        assert rebuild("model_aliases", shuffled(moves, seed)) == {("m", "production", 3), ("m", "candidate", 5)}


def test_a_dataset_version_is_deprecated_whether_its_deprecation_came_before_or_after_it():
    created = event("dataset.version.created", 2, version_id="v1", sha256="a")
    deprecated = event("dataset.version.deprecated", 1, version_id="v1", reason="pii")
    other = event("dataset.version.created", 3, version_id="v2", sha256="b")
    assert rebuild("dataset_versions", [deprecated, created, other, created], "training") == {
        ("v1", "a", True),
        ("v2", "b", False),
    }


def test_a_suite_keeps_its_newest_version_and_gate_events_about_base_models_are_left_out():
    suites = [
        event("evaluation.suite.created", 1, suite_id="s", version=2, version_id="s2"),
        event("evaluation.suite.created", 2, suite_id="s", version=1, version_id="s1"),
    ]
    assert rebuild("suites", suites) == {("s", 2, "s2")}
    target = {"kind": "model_version", "model_version_id": "mv"}
    decided = [
        event(
            "evaluation.gate.decided", 1, decision_id="d1", target=target, suite={"suite_id": "s"}, run_id="r", passed=1
        ),
        event(
            "evaluation.gate.decided",
            2,
            decision_id="d2",
            target={"kind": "base_model", "model_version_id": None},
            suite={"suite_id": "s"},
            run_id="r2",
            passed=True,
        ),
    ]
    assert rebuild("gate_decisions", decided * 2) == {("d1", "mv", "s", "r", 1)}


def test_a_gate_pass_taken_back_by_a_later_override_is_gone_and_one_given_back_later_is_there():
    target = {"model_version_id": "mv"}
    decided = event("evaluation.gate.decided", 1, target=target, run_id="r", passed=True)
    failed = event("evaluation.gate.overridden", 2, target=target, run_id="r", passed=False)
    passed_again = event("evaluation.gate.overridden", 3, target=target, run_id="r", passed=True)
    other = event("evaluation.gate.decided", 1, target={"model_version_id": "mv2"}, run_id="r2", passed=True)
    assert rebuild("gate_passes", [failed, decided, other]) == {("mv2", "r2")}
    assert rebuild("gate_passes", [passed_again, failed, decided]) == {("mv", "r")}


def test_a_deployment_has_the_status_of_its_latest_event_and_one_never_requested_is_not_there():
    events = [
        event("deployment.ready", 3, deployment_id="d"),
        event("deployment.requested", 1, deployment_id="d"),
        event("deployment.failed", 2, deployment_id="d"),
        event("deployment.ready", 4, deployment_id="unknown"),
    ]
    assert rebuild("deployments", events) == {("d", "ready")}


def test_inference_events_are_counted_once_each_per_project():
    completed = event("inference.completed", 1, event_id="e1", request_id="r1")
    failed = event("inference.failed", 2, event_id="e2", request_id="r2")
    elsewhere = event("inference.completed", 3, project="other", event_id="e3", request_id="r3")
    events = [completed, failed, completed, elsewhere, event("budget.set", 1, budget_id="b")]
    assert rebuild("metrics (minute buckets' requests)", events) == {(2,)}
    assert rebuild("inferences (request ids)", events) == {("r1",), ("r2",)}


def test_a_budget_is_its_latest_definition():
    values = {"scope": "project", "subject": "chaos", "period": "day", "max_cost": None}
    events = [event("budget.set", 2, budget_id="b", max_tokens=20, **values)]
    events.append(event("budget.set", 1, budget_id="b", max_tokens=10, **values))
    assert rebuild("budgets", events) == {("b", "project", "chaos", "day", 20, None)}
