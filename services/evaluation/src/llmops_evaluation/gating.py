"""Comparisons of two runs example by example, the release gates a finished run is judged by, and admins' overrides.

A relative rule (``bleu >= production - 1.0``) compares the run with the latest completed run of the same suite
version on the model version the alias points at, paired by example, and passes only when the bound of the paired
bootstrap interval of the difference clears the margin: a noisy tie does not pass ``>= production``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem, unprocessable
from llmops.runtime import Actor, Runtime
from llmops.scoring.gates import GateRule, MetricValue, decide
from llmops.scoring.stats import Comparison, most_changed, paired_comparison
from llmops_evaluation import repository
from llmops_schemas.events import EvaluationGateDecided, EvaluationGateOverridden
from llmops_schemas.events.evaluation import GateRuleResult, SuiteRef, Target

#: The most examples a comparison lists among those that changed most, per metric.
MOST_CHANGED = 10


def _values(examples: Sequence[Row], metric: str) -> list[float | None]:
    return [example.scores.get(metric) for example in examples]


def compare_examples(
    baseline: Sequence[Row], candidate: Sequence[Row], metrics: Sequence[str], *, resamples: int
) -> dict[str, dict[str, Any]]:
    """Per metric, the candidate's run against the baseline's on the same examples (paired by index): the mean
    difference with its paired bootstrap interval and p-value, wins/ties/losses, and the examples that changed most."""
    if [e.index for e in baseline] != [e.index for e in candidate]:
        raise ValueError("the runs do not hold the same examples")
    compared = {}
    for metric in metrics:
        before, after = _values(baseline, metric), _values(candidate, metric)
        comparison = paired_comparison(before, after, resamples=resamples)
        compared[metric] = {
            **dataclasses.asdict(comparison),
            "most_changed": most_changed(before, after, [e.index for e in baseline], limit=MOST_CHANGED),
        }
    return compared


def _comparison(values: dict[str, Any]) -> Comparison:
    return Comparison(**{field.name: values[field.name] for field in dataclasses.fields(Comparison)})


async def compare_runs(
    session: AsyncSession, project: str, baseline_id: str, candidate_id: str, *, resamples: int
) -> dict[str, Any]:
    """Compare two completed runs of one suite version: 404 for a run that is not there, 409 for one that has not
    completed, 422 naming ``candidate`` for runs of different suite versions."""
    runs = {}
    for field, run_id in (("baseline", baseline_id), ("candidate", candidate_id)):
        run = await repository.find_run(session, project, run_id)
        if run is None:
            raise Problem(404, f"no run {run_id} in project {project!r} (the {field})")
        if run.status != "completed":
            raise Problem(409, f"the {field} run {run_id} is {run.status}; only completed runs are compared")
        runs[field] = run
    if runs["baseline"].suite_version_id != runs["candidate"].suite_version_id:
        raise unprocessable("the runs belong to different suite versions (different examples)", "candidate", "query")
    suite = await repository.get_suite_version(session, runs["candidate"].suite_version_id)
    metrics = list(suite.spec["metrics"])
    baseline = await repository.run_examples_of(session, baseline_id)
    candidate = await repository.run_examples_of(session, candidate_id)
    return {
        "baseline": baseline_id,
        "candidate": candidate_id,
        "suite": suite.name,
        "suite_version": suite.version,
        "examples": len(candidate),
        "metrics": compare_examples(baseline, candidate, metrics, resamples=resamples),
    }


def _suite_ref(suite: Row) -> SuiteRef:
    return SuiteRef(suite_id=suite.suite_id, version_id=suite.id, name=suite.name, version=suite.version)


async def _baselines(
    session: AsyncSession, run: Row, rules: Sequence[GateRule], metrics: Sequence[str], resamples: int
) -> tuple[dict[str, dict[str, Comparison | None] | None], dict[str, str]]:
    """For each alias the rules name: the comparison of ``run`` with the alias's run per metric (None: no run)."""
    comparisons: dict[str, dict[str, Comparison | None] | None] = {}
    labels: dict[str, str] = {}
    candidate_examples = None
    for alias in sorted({rule.baseline for rule in rules if rule.baseline is not None}):
        comparisons[alias] = None
        if run.model_name is None:  # a base model or an endpoint has no aliases
            continue
        pointed = await repository.find_alias(session, run.project, run.model_name, alias)
        if pointed is None:
            continue
        labels[alias] = f"v{pointed.version}"
        if pointed.version == run.model_version:
            baseline = run
        else:
            baseline = await repository.latest_completed_run(
                session, run.suite_version_id, run.project, run.model_name, pointed.version
            )
        if baseline is None:
            continue
        if candidate_examples is None:
            candidate_examples = await repository.run_examples_of(session, run.id)
        baseline_examples = await repository.run_examples_of(session, baseline.id)
        compared = compare_examples(baseline_examples, candidate_examples, metrics, resamples=resamples)
        comparisons[alias] = {metric: _comparison(values) for metric, values in compared.items()}
    return comparisons, labels


async def decide_gates(
    session: AsyncSession, runtime: Runtime, run_id: str, *, resamples: int = 2000, correlation_id: str | None = None
) -> Row:
    """Judge a just-completed run by its suite's gates (in the transaction that completes it): record the decision
    and publish ``evaluation.gate.decided`` (in the run's correlation). A run that evaluates no model version (a base
    model, an endpoint) fails its relative rules, having no alias to compare with."""
    run = await repository.get_run(session, run_id)
    suite = await repository.get_suite_version(session, run.suite_version_id)
    rules = [GateRule.model_validate(rule) for rule in suite.spec["gates"]]
    metrics = run.metrics or {}
    aggregates = {
        name: MetricValue(value=m.get("value"), low=m.get("low"), high=m.get("high")) for name, m in metrics.items()
    }
    needed = sorted({rule.metric for rule in rules if rule.baseline is not None})
    comparisons, labels = await _baselines(session, run, rules, needed, resamples)
    decision = decide(rules, aggregates=aggregates, comparisons=comparisons, baseline_labels=labels)
    decision_id = str(uuid.uuid4())
    results = [GateRuleResult(**result.model_dump()) for result in decision.rules]
    await repository.insert_decision(
        session,
        {
            "id": decision_id,
            "run_id": run.id,
            "project": run.project,
            "suite_version_id": suite.id,
            "model_name": run.model_name,
            "model_version": run.model_version,
            "model_version_id": run.model_version_id,
            "passed": decision.passed,
            "rules": [r.model_dump(mode="json") for r in results],
        },
    )
    payload = EvaluationGateDecided(
        decision_id=decision_id,
        run_id=run.id,
        project=run.project,
        suite=_suite_ref(suite),
        target=Target.model_validate(run.target),
        passed=decision.passed,
        rules=results,
    )
    subject = run.model_version_id or run.id
    actor = Actor(subject=f"evaluation-gate:{suite.name}", correlation_id=correlation_id)
    await add_to_outbox(session, runtime.event(payload, subject=subject, actor=actor, project=run.project))
    return await repository.decision_of_run(session, run.id)


async def override(
    session: AsyncSession, runtime: Runtime, *, project: str, decision_id: str, passed: bool, reason: str, actor: Actor
) -> Row:
    """Record an admin's different outcome for a decision, with a reason; the decision itself stays as it was."""
    decision = await repository.find_decision(session, project, decision_id)
    if decision is None:
        raise Problem(404, f"no gate decision {decision_id} in project {project!r}")
    run = await repository.get_run(session, decision.run_id)
    suite = await repository.get_suite_version(session, decision.suite_version_id)
    override_id = str(uuid.uuid4())
    await repository.insert_override(
        session,
        {
            "id": override_id,
            "decision_id": decision_id,
            "project": project,
            "passed": passed,
            "reason": reason,
            "actor": actor.subject,
        },
    )
    payload = EvaluationGateOverridden(
        override_id=override_id,
        decision_id=decision_id,
        run_id=run.id,
        project=project,
        suite=_suite_ref(suite),
        target=Target.model_validate(run.target),
        passed=passed,
        reason=reason,
        actor=actor.subject,
    )
    subject = run.model_version_id or run.id
    await add_to_outbox(session, runtime.event(payload, subject=subject, actor=actor, project=project))
    return await repository.get_override(session, override_id)
