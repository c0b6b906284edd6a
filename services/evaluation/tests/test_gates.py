"""Release gates on finished runs: absolute rules, rules relative to an alias that use the paired interval (a noisy
tie does not pass), comparisons of two runs, and admins' overrides with their reason and actor."""

from __future__ import annotations

import random
import uuid

import pytest

from llmops_evaluation import repository

from .conftest import (
    ADMIN,
    ENGINEER,
    EXAMPLES,
    VIEWER,
    finished_run,
    noisy,
    outbox_events,
    point_alias,
    seed_dataset,
    seed_model_version,
)

pytestmark = pytest.mark.integration


async def make_suite(client, gates: list[str]) -> dict:
    body = {
        "name": "gated",
        "dataset": {"name": "qa", "version": 1},
        "scorers": [{"type": "bleu"}, {"type": "rouge"}],
        "gates": gates,
    }
    response = await client.post("/projects/p1/evaluation/suites", json=body, headers=ENGINEER)
    assert response.status_code == 201, response.text
    return response.json()


async def decision_of(client, run_id: str) -> dict:
    (decision,) = (await client.get(f"/projects/p1/evaluation/gates?run_id={run_id}", headers=VIEWER)).json()
    return decision


async def test_an_absolute_gate_passes_a_clearly_better_version_and_fails_a_clearly_worse_one(evaluation, client):
    await seed_dataset(evaluation)
    suite = await make_suite(client, ["bleu >= 20", "rouge_l >= 0.4"])
    good = await seed_model_version(evaluation, version=1)
    bad = await seed_model_version(evaluation, version=2)
    passed = await decision_of(
        client, await finished_run(evaluation, suite, good, {"bleu": noisy(35, 5, 1), "rouge_l": noisy(0.6, 0.1, 2)})
    )
    failed = await decision_of(
        client, await finished_run(evaluation, suite, bad, {"bleu": noisy(8, 5, 3), "rouge_l": noisy(0.6, 0.1, 4)})
    )
    assert passed["passed"] is True and [r["passed"] for r in passed["rules"]] == [True, True]
    assert failed["passed"] is False and [r["passed"] for r in failed["rules"]] == [False, True]
    assert "is below 20" in failed["rules"][0]["reason"]
    events = [e for e in await outbox_events(evaluation) if e["type"] == "evaluation.gate.decided"]
    assert [(e["subject"], e["data"]["passed"]) for e in events] == [
        (good["model_version_id"], True),
        (bad["model_version_id"], False),
    ]
    assert events[0]["data"]["rules"][0]["rule"] == "bleu >= 20"


async def test_a_relative_gate_uses_the_interval_of_the_difference_with_production(evaluation, client):
    await seed_dataset(evaluation)
    suite = await make_suite(client, ["rouge_l >= production - 0.05"])
    strict = await make_suite(client, ["rouge_l >= production"])
    production = await seed_model_version(evaluation, version=1)
    await point_alias(evaluation, "tiny-lora", "production", 1)
    baseline = noisy(0.5, 0.1, 10)
    await finished_run(evaluation, suite, production, {"rouge_l": baseline, "bleu": baseline})
    await finished_run(evaluation, strict, production, {"rouge_l": baseline, "bleu": baseline})

    better = await seed_model_version(evaluation, version=2)
    lifted = [v + 0.2 for v in baseline]
    verdict = await decision_of(
        client, await finished_run(evaluation, suite, better, {"rouge_l": lifted, "bleu": lifted})
    )
    assert verdict["passed"] is True
    assert verdict["rules"][0]["bound"] > 0.1 and "production (v1)" in verdict["rules"][0]["reason"]

    worse = await seed_model_version(evaluation, version=3)
    dropped = [v - 0.2 for v in baseline]
    verdict = await decision_of(
        client, await finished_run(evaluation, suite, worse, {"rouge_l": dropped, "bleu": dropped})
    )
    assert verdict["passed"] is False

    # A noisy tie: the same mean, example by example noise. Its mean difference may even be above zero, but the
    # lower bound of its interval is below it: `>= production` does not pass.
    tie = await seed_model_version(evaluation, version=4)
    rng = random.Random(7)
    tied = [v + rng.uniform(-0.1, 0.1) for v in baseline]
    verdict = await decision_of(client, await finished_run(evaluation, strict, tie, {"rouge_l": tied, "bleu": tied}))
    rule = verdict["rules"][0]
    assert verdict["passed"] is False
    assert rule["bound"] < 0 < rule["bound"] + 0.2 and "lower bound" in rule["reason"]


async def test_a_relative_gate_without_a_production_run_fails_with_its_reason(evaluation, client):
    await seed_dataset(evaluation)
    suite = await make_suite(client, ["bleu >= production - 1"])
    await seed_model_version(evaluation, version=1)
    await point_alias(evaluation, "tiny-lora", "production", 1)  # v1 has no run of this suite
    candidate = await seed_model_version(evaluation, version=2)
    verdict = await decision_of(
        client,
        await finished_run(evaluation, suite, candidate, {"bleu": noisy(30, 1, 1), "rouge_l": noisy(0.5, 0.1, 2)}),
    )
    assert verdict["passed"] is False
    assert "no completed run of this suite for alias 'production'" in verdict["rules"][0]["reason"]


async def test_two_runs_are_compared_example_by_example(evaluation, client):
    await seed_dataset(evaluation)
    suite = await make_suite(client, [])
    one = await seed_model_version(evaluation, version=1)
    two = await seed_model_version(evaluation, version=2)
    base = noisy(20, 5, 1)
    first = await finished_run(evaluation, suite, one, {"bleu": base, "rouge_l": base})
    second = await finished_run(evaluation, suite, two, {"bleu": [v + 3 for v in base], "rouge_l": base})
    response = await client.get(f"/projects/p1/evaluation/compare?baseline={first}&candidate={second}", headers=VIEWER)
    assert response.status_code == 200, response.text
    bleu = response.json()["metrics"]["bleu"]
    assert bleu["wins"] == EXAMPLES and bleu["losses"] == 0
    assert bleu["mean_difference"] == pytest.approx(3) and bleu["low"] > 2 and bleu["p_value"] < 0.01
    assert response.json()["metrics"]["rouge_l"]["ties"] == EXAMPLES
    assert len(bleu["most_changed"]) == 10
    other = await make_suite(client, [])
    third = await finished_run(evaluation, other, one, {"bleu": base, "rouge_l": base})
    refused = await client.get(f"/projects/p1/evaluation/compare?baseline={first}&candidate={third}", headers=VIEWER)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "candidate"
    missing = await client.get(
        f"/projects/p1/evaluation/compare?baseline={first}&candidate={uuid.uuid4()}", headers=VIEWER
    )
    assert missing.status_code == 404
    async with evaluation.runtime.db.transaction() as session:
        await repository.update_run(session, second, status="running")
    running = await client.get(f"/projects/p1/evaluation/compare?baseline={first}&candidate={second}", headers=VIEWER)
    assert running.status_code == 409 and "only completed runs" in running.json()["detail"]


async def test_an_admin_overrides_a_decision_with_a_reason_and_it_is_recorded(evaluation, client):
    await seed_dataset(evaluation)
    suite = await make_suite(client, ["bleu >= 50"])
    model = await seed_model_version(evaluation)
    run_id = await finished_run(evaluation, suite, model, {"bleu": noisy(20, 1, 1), "rouge_l": noisy(0.5, 0.1, 2)})
    decision = await decision_of(client, run_id)
    assert decision["passed"] is False
    url = f"/projects/p1/evaluation/gates/{decision['id']}/overrides"
    body = {"passed": True, "reason": "hotfix approved by the release board (ticket 42)"}
    assert (await client.post(url, json=body, headers=ENGINEER)).status_code == 403
    assert (await client.post(url, json={"passed": True, "reason": ""}, headers=ADMIN)).status_code == 422
    response = await client.post(url, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.json()["actor"] == "ada" and response.json()["reason"] == body["reason"]
    after = await decision_of(client, run_id)
    assert after["passed"] is False  # the decision stands; the override is beside it
    assert after["override_passed"] is True and after["override_actor"] == "ada"
    (event,) = [e for e in await outbox_events(evaluation) if e["type"] == "evaluation.gate.overridden"]
    assert event["actor"] == "ada" and event["data"]["reason"] == body["reason"]
    assert event["data"]["decision_id"] == decision["id"] and event["subject"] == model["model_version_id"]
    missing = await client.post(f"/projects/p1/evaluation/gates/{uuid.uuid4()}/overrides", json=body, headers=ADMIN)
    assert missing.status_code == 404
