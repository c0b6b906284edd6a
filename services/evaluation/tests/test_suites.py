"""Suites and run requests over the API: immutable versions, and bad input refused with a 422 naming its field."""

from __future__ import annotations

import pytest

from .conftest import ADMIN, ENGINEER, VIEWER, outbox_events, seed_dataset, seed_model_version

pytestmark = pytest.mark.integration

SCORERS = [{"type": "bleu"}, {"type": "rouge"}, {"type": "exact_match"}]


def suite_body(**changes) -> dict:
    body = {
        "name": "qa-suite",
        "dataset": {"name": "qa", "version": 1},
        "scorers": SCORERS,
        "gates": ["bleu >= 20", "rouge_l >= production - 0.05"],
        "models": ["tiny-lora"],
    }
    return body | changes


def field_of(response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()["errors"][0]["field"]


async def test_a_suite_is_stored_as_immutable_versions(evaluation, client):
    await seed_dataset(evaluation)
    first = await client.post("/projects/p1/evaluation/suites", json=suite_body(), headers=ENGINEER)
    assert first.status_code == 201, first.text
    suite = first.json()
    assert suite["version"] == 1
    assert suite["spec"]["dataset"]["split"] == "test"
    assert set(suite["spec"]["metrics"]) >= {"bleu", "rouge_l", "exact_match"}
    assert [g["metric"] for g in suite["spec"]["gates"]] == ["bleu", "rouge_l"]
    assert suite["triggers"] == ["model.version.registered"]
    second = await client.post(
        "/projects/p1/evaluation/suites", json=suite_body(gates=["bleu >= 30"]), headers=ENGINEER
    )
    assert second.status_code == 201 and second.json()["version"] == 2
    again = (await client.get("/projects/p1/evaluation/suites/qa-suite/versions/1", headers=VIEWER)).json()
    assert again["spec"] == suite["spec"]  # version 1 is as it was
    latest = (await client.get("/projects/p1/evaluation/suites/qa-suite", headers=VIEWER)).json()
    assert latest["version"] == 2
    created = [e for e in await outbox_events(evaluation) if e["type"] == "evaluation.suite.created"]
    assert [e["data"]["version"] for e in created] == [1, 2]
    missing = await client.get("/projects/p1/evaluation/suites/qa-suite/versions/9", headers=VIEWER)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dataset": {"name": "qa", "version": 7}}, "dataset"),
        ({"dataset": {"name": "nope", "version": 1}}, "dataset"),
        ({"dataset": {"name": "qa", "version": 1, "split": "train"}}, "dataset.split"),
        ({"prompt": {"name": "missing", "version": 1}}, "prompt"),
        ({"scorers": [{"type": "bleu"}, {"type": "perplexity"}]}, "scorers[1]"),
        ({"scorers": [{"type": "custom", "entry_point": "not-installed"}]}, "scorers[0]"),
        ({"scorers": [{"type": "rouge", "stemming": "yes"}]}, "scorers[0]"),
        ({"gates": ["bleu >= 20", "meteor >= 0.3"]}, "gates[1]"),
        ({"gates": ["bleu => 20"]}, "gates[0]"),
        ({"triggers": ["monitoring.drift.detected"]}, "triggers[0]"),
    ],
)
async def test_a_bad_suite_is_refused_naming_its_field(evaluation, client, changes, field):
    await seed_dataset(evaluation)  # every row in the test split: the train split is empty
    response = await client.post("/projects/p1/evaluation/suites", json=suite_body(**changes), headers=ENGINEER)
    assert field_of(response) == field
    assert (await client.get("/projects/p1/evaluation/suites", headers=VIEWER)).json() == []


async def test_a_deprecated_dataset_version_is_refused(evaluation, client):
    await seed_dataset(evaluation, deprecated=True)
    response = await client.post("/projects/p1/evaluation/suites", json=suite_body(), headers=ENGINEER)
    assert field_of(response) == "dataset"
    assert "deprecated" in response.json()["detail"]


async def test_a_custom_scorer_from_an_entry_point_is_accepted(evaluation, client):
    await seed_dataset(evaluation)
    body = suite_body(scorers=[{"type": "custom", "entry_point": "word_overlap"}], gates=["word_overlap >= 0.5"])
    response = await client.post("/projects/p1/evaluation/suites", json=body, headers=ENGINEER)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["metrics"] == ["word_overlap"]


async def test_runs_are_requested_on_a_version_an_alias_a_base_model_or_an_endpoint(evaluation, client):
    await seed_dataset(evaluation)
    model = await seed_model_version(evaluation)
    assert (await client.post("/projects/p1/evaluation/suites", json=suite_body(), headers=ENGINEER)).status_code == 201
    run = await client.post(
        "/projects/p1/evaluation/runs",
        json={"suite": "qa-suite", "model": {"name": "tiny-lora", "version": 1}},
        headers=ENGINEER,
    )
    assert run.status_code == 201, run.text
    body = run.json()
    assert body["status"] == "queued" and body["trigger"] == "api"
    assert body["target"]["model_version_id"] == model["model_version_id"]
    requested = [e for e in await outbox_events(evaluation) if e["type"] == "evaluation.run.requested"]
    assert len(requested) == 1 and requested[0]["data"]["target"]["base_model"]["name"] == "tiny"
    assert requested[0]["data"]["dataset"]["split"] == "test"
    base = await client.post(
        "/projects/p1/evaluation/runs", json={"suite": "qa-suite", "base_model": "tiny"}, headers=ENGINEER
    )
    assert base.status_code == 201 and base.json()["target"]["kind"] == "base_model"
    endpoint = await client.post(
        "/projects/p1/evaluation/runs",
        json={"suite": "qa-suite", "endpoint": {"url": "http://127.0.0.1:9/v1", "model": "m"}},
        headers=ENGINEER,
    )
    assert endpoint.status_code == 201 and endpoint.json()["target"]["kind"] == "endpoint"
    listed = (await client.get("/projects/p1/evaluation/runs?suite=qa-suite", headers=VIEWER)).json()
    assert len(listed) == 3
    shown = await client.get(f"/projects/p1/evaluation/runs/{body['id']}", headers=VIEWER)
    assert shown.json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"suite": "qa-suite", "model": {"name": "tiny-lora", "version": 9}}, "model"),
        ({"suite": "qa-suite", "model": {"name": "tiny-lora", "alias": "production"}}, "model.alias"),
        ({"suite": "qa-suite", "model": {"name": "tiny-lora"}}, "model.version"),
        ({"suite": "nope", "model": {"name": "tiny-lora", "version": 1}}, "suite"),
        ({"suite": "qa-suite", "suite_version": 4, "model": {"name": "tiny-lora", "version": 1}}, "suite"),
        ({"suite": "qa-suite", "base_model": "ghost"}, "base_model"),
        ({"suite": "qa-suite"}, "model"),
        ({"suite": "qa-suite", "base_model": "tiny", "endpoint": {"url": "http://127.0.0.1:9"}}, "model"),
        ({"suite": "qa-suite", "endpoint": {"url": "file:///etc/passwd"}}, "endpoint.url"),
        ({"suite": "qa-suite", "endpoint": {"url": "http://user:pw@127.0.0.1:9"}}, "endpoint.url"),
        ({"suite": "qa-suite", "base_model": "tiny", "pool": "tpu"}, "pool"),
    ],
)
async def test_a_bad_run_request_is_refused_naming_its_field(evaluation, client, request_body, field):
    await seed_dataset(evaluation)
    await seed_model_version(evaluation)
    assert (await client.post("/projects/p1/evaluation/suites", json=suite_body(), headers=ENGINEER)).status_code == 201
    response = await client.post("/projects/p1/evaluation/runs", json=request_body, headers=ENGINEER)
    assert field_of(response) == field
    assert (await client.get("/projects/p1/evaluation/runs", headers=VIEWER)).json() == []


async def test_endpoints_outside_the_allowed_hosts_are_refused(evaluation, client):
    evaluation.settings.allowed_endpoint_hosts = ["models.internal:8080"]
    await seed_dataset(evaluation)
    assert (await client.post("/projects/p1/evaluation/suites", json=suite_body(), headers=ENGINEER)).status_code == 201
    refused = await client.post(
        "/projects/p1/evaluation/runs",
        json={"suite": "qa-suite", "endpoint": {"url": "http://169.254.169.254/latest"}},
        headers=ENGINEER,
    )
    assert field_of(refused) == "endpoint.url"
    allowed = await client.post(
        "/projects/p1/evaluation/runs",
        json={"suite": "qa-suite", "endpoint": {"url": "http://models.internal:8080/v1"}},
        headers=ENGINEER,
    )
    assert allowed.status_code == 201, allowed.text


async def test_viewers_read_and_cannot_write(evaluation, client):
    await seed_dataset(evaluation)
    denied = await client.post("/projects/p1/evaluation/suites", json=suite_body(), headers=VIEWER)
    assert denied.status_code == 403
    assert (await client.get("/projects/p1/evaluation/suites", headers=VIEWER)).status_code == 200
    other = await client.get("/projects/p2/evaluation/suites", headers=ADMIN)
    assert other.status_code == 403
