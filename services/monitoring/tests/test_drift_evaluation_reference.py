"""Drift against the evaluation that gated the model version: the projections of ``evaluation.run.completed`` and
``evaluation.gate.decided`` name the run and its examples' artifact; a report of served traffic compares with those
examples (texts, lengths, output tokens; latency and the rest named as dropped). Shifted traffic drifts, traffic like
the evaluation's does not; a version with no passed gate (or whose pass an admin overrode) is a 422 naming
``reference``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import update

from llmops_monitoring import evaluation_reference, record_store
from llmops_monitoring.models import deployments
from llmops_schemas import new_event
from llmops_schemas.events import EvaluationGateDecided, EvaluationGateOverridden, EvaluationRunCompleted
from llmops_schemas.events.evaluation import SuiteRef, Target

from . import traffic
from .conftest import ENGINEER
from .test_drift_service import deployed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOUR = timedelta(hours=1)
SUITE = SuiteRef(suite_id="s1", version_id="sv1", name="support", version=1)


def target(version: str) -> Target:
    return Target(kind="model_version", model_name="assistant", model_version=1, model_version_id=version)


async def gated_by(service, version: str, examples: list[dict]) -> str:
    """An evaluation run of ``version`` over ``examples`` (its artifact stored), and a passed gate decision."""
    artifact = b"".join(orjson.dumps(e) + b"\n" for e in examples)
    stored = await service.store.put_bytes(artifact, content_type="application/x-ndjson")
    run_id = str(uuid.uuid4())
    completed = EvaluationRunCompleted(
        run_id=run_id,
        project="p1",
        suite=SUITE,
        target=target(version),
        examples=len(examples),
        metrics={},
        artifact_uri=f"s3://somewhere/{stored.sha256}",
        artifact_sha256=stored.sha256,
        seconds=1.0,
    )
    decided = EvaluationGateDecided(
        decision_id=str(uuid.uuid4()),
        run_id=run_id,
        project="p1",
        suite=SUITE,
        target=target(version),
        passed=True,
        rules=[],
    )
    async with service.runtime.db.transaction() as session:
        for payload, handler in (
            (decided, evaluation_reference.gate_decided),
            (completed, evaluation_reference.run_completed),
        ):
            event = new_event(payload, subject=version, source="/llmops/evaluation", project="p1")
            await handler(session, event, payload)  # the gate's decision may arrive before the run's completion
    return run_id


def examples_of(records: list[dict]) -> list[dict]:
    """An evaluation's artifact lines for these records: the model's output and tokens for each input."""
    return [
        {
            "index": i,
            "input": [{"role": "user", "content": r["input"]}],
            "output": r["output"],
            "reference": "",
            "latency_ms": 5.0,
            "tokens": r["tokens_out"],
            "scores": {},
        }
        for i, r in enumerate(records)
    ]


async def serve(service, records: list[dict]) -> None:
    for record in records:
        record["project"] = "p1"
    files = await record_store.stage(service.store, service.settings.records_prefix, records)
    async with service.runtime.db.transaction() as session:
        await record_store.register(session, files)


async def test_served_traffic_is_compared_with_the_gating_evaluation(client, monitoring):
    await deployed(monitoring)
    async with monitoring.runtime.db.transaction() as session:
        await session.execute(update(deployments).values(model_version_id="mv-1"))
    now = datetime.now(UTC).replace(microsecond=0)
    run_id = await gated_by(monitoring, "mv-1", examples_of(traffic.records(400, seed=1, start=now - 3 * HOUR)))
    await serve(monitoring, traffic.records(400, seed=2, start=now - 2 * HOUR, minutes=59))
    await serve(monitoring, traffic.records(400, seed=3, start=now - HOUR, minutes=59, shift=traffic.ALL_SHIFTS))

    reports = {}
    for name, (start, end) in {"like": (now - 2 * HOUR, now - HOUR), "shifted": (now - HOUR, now)}.items():
        body = {"deployment_id": "dep-1", "start": start.isoformat(), "end": end.isoformat()}
        answer = await client.post(
            "/projects/p1/monitoring/drift", json=body | {"reference": "evaluation_dataset"}, headers=ENGINEER
        )
        assert answer.status_code == 201, answer.text
        reports[name] = answer.json()
    for report in reports.values():
        assert report["status"] == "done" and report["reference"] == "evaluation_dataset"
        assert report["reference_run_id"] == run_id and report["reference_rows"] == 400
        assert report["reference_start"] is None
        assert {c["column"] for c in report["columns"]} == {
            "input_chars",
            "output_chars",
            "tokens_out",
            "input",
            "output",
        }
        assert "latency_ms: no values in the reference window" in report["reason"]
    assert reports["shifted"]["drifted"] and not reports["like"]["drifted"], (
        reports["shifted"]["drifted_share"],
        reports["like"]["drifted_share"],
    )


async def test_a_version_without_a_passed_gate_is_refused_naming_the_reference(client, monitoring):
    await deployed(monitoring)
    body = {"deployment_id": "dep-1", "reference": "evaluation_dataset"}
    answer = await client.post("/projects/p1/monitoring/drift", json=body, headers=ENGINEER)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "reference"
    assert "serves no registered model version" in answer.json()["detail"]

    async with monitoring.runtime.db.transaction() as session:
        await session.execute(update(deployments).values(model_version_id="mv-2"))
    run_id = await gated_by(monitoring, "mv-2", examples_of(traffic.records(50, seed=1)))
    overridden = EvaluationGateOverridden(
        override_id=str(uuid.uuid4()),
        decision_id=str(uuid.uuid4()),
        run_id=run_id,
        project="p1",
        suite=SUITE,
        target=target("mv-2"),
        passed=False,
        reason="the judge was misconfigured",
        actor="ada",
    )
    async with monitoring.runtime.db.transaction() as session:
        event = new_event(overridden, subject="mv-2", source="/llmops/evaluation", project="p1")
        await evaluation_reference.gate_decided(session, event, overridden)
    answer = await client.post("/projects/p1/monitoring/drift", json=body, headers=ENGINEER)
    assert answer.status_code == 422 and "no passed evaluation gate" in answer.json()["detail"]

    both = body | {"reference_start": datetime.now(UTC).isoformat(), "reference_end": datetime.now(UTC).isoformat()}
    answer = await client.post("/projects/p1/monitoring/drift", json=both, headers=ENGINEER)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "reference"
