"""Every projection a service keeps of other services' events, and its rebuild from the topics: what make chaos
compares after the load (a projection that lost, doubled or misordered an event under the faults differs).

Each ``Projection`` names the service, the rows it holds (a query giving tuples) and how the same tuples follow from
the events of its topics, folded the way the service says it folds them: stored once (first copy), the latest by event
time (aliases, statuses, budgets), the newest version (suites), or counted once per event (metrics, record store).
The folds are pure functions of the events, tested in ``test_projections.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmops_schemas import topics

Event = dict[str, Any]
Rows = set[tuple]


@dataclass(frozen=True)
class Projection:
    service: str
    name: str  # what it holds, for the report
    sql: str  # the held tuples; ``:p`` is the project
    topics: tuple[str, ...]
    rebuild: Callable[[list[Event], str], Rows]  # (the topics' events, the project) -> the tuples


def of(events: Iterable[Event], project: str, *types: str) -> list[Event]:
    """The events of these types in ``project``, oldest first by event time (the topic's order across partitions is
    no order at all)."""
    chosen = [e for e in events if e.get("type") in types and (e.get("data") or {}).get("project") == project]
    return sorted(chosen, key=lambda e: datetime.fromisoformat(e["time"]))


def first_copy(types: tuple[str, ...], key: Callable[[Event], Any], content: Callable[[Event], tuple]):
    """Stored once: the first copy of each key (replays and redeliveries carry the same content)."""

    def rebuild(events: list[Event], project: str) -> Rows:
        found: dict[Any, tuple] = {}
        for event in of(events, project, *types):
            found.setdefault(key(event), content(event))
        return {(k, *v) for k, v in found.items()}

    return rebuild


def latest(types: tuple[str, ...], key: Callable[[Event], Any], content: Callable[[Event], tuple]):
    """The latest by event time for each key."""

    def rebuild(events: list[Event], project: str) -> Rows:
        found: dict[Any, tuple] = {}
        for event in of(events, project, *types):
            found[key(event)] = content(event)
        return {(*(k if isinstance(k, tuple) else (k,)), *v) for k, v in found.items()}

    return rebuild


def dataset_versions(events: list[Event], project: str) -> Rows:
    """Each version with its content hash, deprecated once any deprecation of it arrived (before it or after)."""
    deprecated = {e["data"]["version_id"] for e in of(events, project, "dataset.version.deprecated")}
    created = first_copy(
        ("dataset.version.created",), lambda e: e["data"]["version_id"], lambda e: (e["data"]["sha256"],)
    )
    return {(version_id, sha, version_id in deprecated) for version_id, sha in created(events, project)}


def newest_suites(events: list[Event], project: str) -> Rows:
    newest: dict[str, dict] = {}
    for event in of(events, project, "evaluation.suite.created"):
        data = event["data"]
        if data["suite_id"] not in newest or data["version"] > newest[data["suite_id"]]["version"]:
            newest[data["suite_id"]] = data
    return {(suite_id, d["version"], d["version_id"]) for suite_id, d in newest.items()}


def on_model_versions(types: tuple[str, ...], content: Callable[[dict], tuple], key: str):
    """Gate events about model versions only (decisions on base models gate no deployment)."""
    inner = first_copy(types, lambda e: e["data"][key], lambda e: content(e["data"]))

    def rebuild(events: list[Event], project: str) -> Rows:
        about_versions = [e for e in events if ((e.get("data") or {}).get("target") or {}).get("model_version_id")]
        return inner(about_versions, project)

    return rebuild


def gate_passes(events: list[Event], project: str) -> Rows:
    """(model version, run) pairs a decision or an override passed and none since failed, in event-time order."""
    passes: set[tuple] = set()
    for event in of(events, project, "evaluation.gate.decided", "evaluation.gate.overridden"):
        data = event["data"]
        version = (data.get("target") or {}).get("model_version_id")
        if version is None:
            continue
        (passes.add if data["passed"] else passes.discard)((version, data["run_id"]))
    return passes


def deployment_statuses(events: list[Event], project: str) -> Rows:
    """Each requested deployment with the status of its latest event (requested, ready, failed, stopped)."""
    status = {
        "deployment.requested": "requested",
        "deployment.ready": "ready",
        "deployment.failed": "failed",
        "deployment.stopped": "stopped",
    }
    requested = {e["data"]["deployment_id"] for e in of(events, project, "deployment.requested")}
    found: dict[str, str] = {}
    for event in of(events, project, *status):
        if event["data"]["deployment_id"] in requested:
            found[event["data"]["deployment_id"]] = status[event["type"]]
    return set(found.items())


INFERENCE_TYPES = ("inference.completed", "inference.failed")


def inference_count(events: list[Event], project: str) -> Rows:
    """One tuple: how many distinct inference events (by event id) the project has."""
    return {(len({e["id"] for e in of(events, project, *INFERENCE_TYPES)}),)}


def inference_requests(events: list[Event], project: str) -> Rows:
    return {(e["data"]["request_id"],) for e in of(events, project, *INFERENCE_TYPES)}


def _dataset(service: str) -> Projection:
    return Projection(
        service,
        "dataset_versions",
        "SELECT version_id, sha256, deprecated FROM dataset_versions WHERE project = :p",
        (topics.DATASETS,),
        dataset_versions,
    )


def _prompts(service: str) -> Projection:
    return Projection(
        service,
        "prompt_versions",
        "SELECT version_id, hash FROM prompt_versions WHERE project = :p",
        (topics.PROMPTS,),
        first_copy(("prompt.version.created",), lambda e: e["data"]["version_id"], lambda e: (e["data"]["hash"],)),
    )


def _model_versions(service: str) -> Projection:
    return Projection(
        service,
        "model_versions",
        "SELECT model_version_id, name, version, manifest_sha256 FROM model_versions WHERE project = :p",
        (topics.MODELS,),
        first_copy(
            ("model.version.registered",),
            lambda e: e["data"]["model_version_id"],
            lambda e: (e["data"]["name"], e["data"]["version"], e["data"]["manifest_sha256"]),
        ),
    )


def _aliases(service: str) -> Projection:
    return Projection(
        service,
        "model_aliases",
        "SELECT name, alias, version FROM model_aliases WHERE project = :p",
        (topics.MODELS,),
        latest(
            ("model.alias.moved",),
            lambda e: (e["data"]["name"], e["data"]["alias"]),
            lambda e: (e["data"]["to_version"],),
        ),
    )


PROJECTIONS: list[Projection] = [
    _dataset("training"),
    _dataset("evaluation"),
    _prompts("training"),
    _prompts("evaluation"),
    Projection(
        "evaluation",
        "base_models",
        "SELECT base_model_id, name, manifest_sha256 FROM base_models WHERE project = :p",
        (topics.MODELS,),
        first_copy(
            ("base_model.registered",),
            lambda e: e["data"]["base_model_id"],
            lambda e: (e["data"]["name"], e["data"].get("manifest_sha256")),
        ),
    ),
    _model_versions("evaluation"),
    _model_versions("deployment"),
    _aliases("evaluation"),
    _aliases("deployment"),
    Projection(
        "deployment",
        "suites",
        "SELECT suite_id, version, version_id FROM suites WHERE project = :p",
        (topics.EVALUATIONS,),
        newest_suites,
    ),
    Projection(
        "deployment",
        "gate_decisions",
        "SELECT decision_id, model_version_id, suite_id, run_id, passed FROM gate_decisions WHERE project = :p",
        (topics.EVALUATIONS,),
        on_model_versions(
            ("evaluation.gate.decided",),
            lambda d: (d["target"]["model_version_id"], d["suite"]["suite_id"], d["run_id"], d["passed"]),
            "decision_id",
        ),
    ),
    Projection(
        "deployment",
        "gate_overrides",
        "SELECT override_id, decision_id, model_version_id, passed FROM gate_overrides WHERE project = :p",
        (topics.EVALUATIONS,),
        on_model_versions(
            ("evaluation.gate.overridden",),
            lambda d: (d["decision_id"], d["target"]["model_version_id"], d["passed"]),
            "override_id",
        ),
    ),
    Projection(
        "deployment",
        "inferences (request ids)",
        "SELECT request_id FROM inferences WHERE project = :p",
        (topics.INFERENCE,),
        inference_requests,
    ),
    Projection(
        "monitoring",
        "deployments",
        "SELECT deployment_id, status FROM deployments WHERE project = :p",
        (topics.DEPLOYMENTS,),
        deployment_statuses,
    ),
    Projection(
        "monitoring",
        "budgets",
        "SELECT budget_id, scope, subject, period, max_tokens, max_cost FROM budgets WHERE project = :p",
        (topics.DEPLOYMENTS,),
        latest(
            ("budget.set",),
            lambda e: e["data"]["budget_id"],
            lambda e: tuple(e["data"].get(f) for f in ("scope", "subject", "period", "max_tokens", "max_cost")),
        ),
    ),
    Projection(
        "monitoring",
        "evaluation_runs",
        "SELECT run_id, model_version_id, examples FROM evaluation_runs WHERE project = :p",
        (topics.EVALUATIONS,),
        first_copy(
            ("evaluation.run.completed",),
            lambda e: e["data"]["run_id"],
            lambda e: ((e["data"].get("target") or {}).get("model_version_id"), e["data"]["examples"]),
        ),
    ),
    Projection(
        "monitoring",
        "gate_passes",
        "SELECT model_version_id, run_id FROM gate_passes WHERE project = :p AND passed",
        (topics.EVALUATIONS,),
        gate_passes,
    ),
    Projection(
        "monitoring",
        "metrics (minute buckets' requests)",
        "SELECT coalesce(sum((data->>'requests')::bigint), 0) FROM metric_buckets"
        " WHERE project = :p AND resolution = 'minute' AND \"user\" = ''",
        (topics.INFERENCE,),
        inference_count,
    ),
    Projection(
        "monitoring",
        "metrics (hour buckets' requests)",
        "SELECT coalesce(sum((data->>'requests')::bigint), 0) FROM metric_buckets"
        " WHERE project = :p AND resolution = 'hour' AND \"user\" = ''",
        (topics.INFERENCE,),
        inference_count,
    ),
    Projection(
        "monitoring",
        "record store (rows of the registered Parquet files)",
        # the run's own record store holds this project's records only (the load sends no other project)
        "SELECT coalesce(sum(rows), 0) FROM record_files WHERE :p = :p",
        (topics.INFERENCE,),
        inference_count,
    ),
]
