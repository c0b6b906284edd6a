"""Human feedback through the API: given once however often it is retried, refused with the field named, listed,
summarised per model version (the figures a direct computation gives), and corrections exported as a dataset."""

from __future__ import annotations

import uuid

import orjson
import pytest
from sqlalchemy import func, insert, select

from llmops.auth import Role
from llmops.bus import outbox
from llmops.scoring.stats import bootstrap_ci
from llmops_evaluation.models import feedback, runs, suite_versions, suites

from .conftest import AUDITOR, ENGINEER, STEWARD, VIEWER, bearer

pytestmark = pytest.mark.integration
URL = "/projects/p1/evaluation/feedback"


async def outbox_events(evaluation, event_type: str) -> list[dict]:
    async with evaluation.runtime.db.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        return [event for p in payloads if (event := orjson.loads(p))["type"] == event_type]


async def feedback_rows(evaluation) -> int:
    async with evaluation.runtime.db.sessions() as session:
        return (await session.execute(select(func.count()).select_from(feedback))).scalar_one()


async def give(client, body: dict, headers: dict = ENGINEER) -> dict:
    response = await client.post(URL, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


class TestGiveFeedback:
    async def test_feedback_is_recorded_and_published_under_one_id(self, evaluation, client):
        body = {"rating": 4, "thumb": "up", "inference_id": "inf-1", "model_version_id": "mv-1", "comment": "ok"}
        given = await give(client, body)
        assert given["rating"] == 4 and given["actor"] == "eve" and given["project"] == "p1"
        [event] = await outbox_events(evaluation, "feedback.submitted")
        assert event["id"] == given["id"]
        assert (event["subject"], event["data"]["rating"], event["data"]["project"]) == ("inf-1", 4, "p1")

    async def test_a_retry_with_the_same_idempotency_key_counts_once(self, evaluation, client):
        body, key = {"thumb": "down", "model_version_id": "mv-1"}, {"Idempotency-Key": "click-77"}
        first = await client.post(URL, json=body, headers=ENGINEER | key)
        again = await client.post(URL, json=body, headers=ENGINEER | key)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json() == again.json()
        assert await feedback_rows(evaluation) == 1
        assert len(await outbox_events(evaluation, "feedback.submitted")) == 1

    async def test_a_retry_with_the_same_id_counts_once(self, evaluation, client):
        body = {"id": str(uuid.uuid4()), "rating": 2, "run_id": str(uuid.uuid4()), "example_index": 3}
        assert (await client.post(URL, json=body, headers=VIEWER)).status_code == 201
        again = await client.post(URL, json=body, headers=VIEWER)
        assert again.status_code == 200 and again.json()["id"] == body["id"]
        assert await feedback_rows(evaluation) == 1

    async def test_the_same_key_of_another_caller_is_another_feedback(self, evaluation, client):
        key = {"Idempotency-Key": "k1"}
        await give(client, {"rating": 3, "model_version_id": "mv-1"}, ENGINEER | key)
        await give(client, {"rating": 3, "model_version_id": "mv-1"}, STEWARD | key)
        assert await feedback_rows(evaluation) == 2

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.post(URL, json={"rating": 3, "model_version_id": "m"})).status_code == 401

    async def test_a_role_without_the_permission_is_refused(self, client):
        assert (await client.post(URL, json={"rating": 3, "model_version_id": "m"}, headers=AUDITOR)).status_code == 403

    async def test_another_projects_caller_is_refused(self, client):
        elsewhere = bearer(Role.ML_ENGINEER, projects=("p2",))
        response = await client.post(URL, json={"rating": 3, "model_version_id": "m"}, headers=elsewhere)
        assert response.status_code == 403

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"rating": 0, "model_version_id": "m"}, "rating"),
            ({"rating": 6, "model_version_id": "m"}, "rating"),
            ({"rating": "3", "model_version_id": "m"}, "rating"),
            ({"thumb": "sideways", "model_version_id": "m"}, "thumb"),
            ({"rating": 3}, "inference_id"),
            ({"comment": "meh", "model_version_id": "m"}, "rating"),
            ({"rating": 3, "run_id": "r"}, "example_index"),
            ({"rating": 3, "model_version_id": "m", "example_index": 1}, "run_id"),
            ({"rating": 3, "model_version_id": "m", "project": "p2"}, "project"),
            ({"rating": 3, "model_version_id": "m", "id": "not-a-uuid"}, "id"),
        ],
    )
    async def test_invalid_feedback_is_refused_naming_the_field(self, evaluation, client, body, field):
        response = await client.post(URL, json=body, headers=ENGINEER)
        assert response.status_code == 422, response.text
        assert field in {error["field"] for error in response.json()["errors"]}
        assert await feedback_rows(evaluation) == 0


class TestListFeedback:
    async def test_filters_select_by_model_version_run_and_correction(self, client):
        run_id = str(uuid.uuid4())
        await give(client, {"rating": 5, "model_version_id": "mv-1"})
        await give(client, {"correction": "better", "model_version_id": "mv-2"})
        await give(client, {"thumb": "up", "run_id": run_id, "example_index": 0})

        async def listed(**params) -> list[dict]:
            response = await client.get(URL, params=params, headers=VIEWER)
            assert response.status_code == 200, response.text
            return response.json()

        assert len(await listed()) == 3
        assert [f["model_version_id"] for f in await listed(model_version_id="mv-1")] == ["mv-1"]
        assert [f["run_id"] for f in await listed(run_id=run_id)] == [run_id]
        assert [f["correction"] for f in await listed(has_correction=True)] == ["better"]
        assert len(await listed(has_correction=False)) == 2
        assert len(await listed(limit=1, offset=1)) == 1

    async def test_a_listing_without_a_token_is_refused(self, client):
        assert (await client.get(URL)).status_code == 401

    async def test_a_listing_with_a_bad_limit_is_refused(self, client):
        assert (await client.get(URL, params={"limit": 0}, headers=VIEWER)).status_code == 422


class TestSummary:
    async def test_the_figures_are_those_of_a_direct_computation(self, evaluation, client):
        ratings, thumbs = [5, 4, 4, 2, 1, 5], ["up", "up", "down", "up", None, "down"]
        for rating, thumb in zip(ratings, thumbs, strict=True):
            await give(client, {"rating": rating, "thumb": thumb, "model_version_id": "mv-1"})
        await give(client, {"correction": "fixed", "model_version_id": "mv-1"})
        await give(client, {"thumb": "up", "model_version_id": "mv-2"})
        response = await client.get(f"{URL}/summary", params={"model_version_id": "mv-1"}, headers=VIEWER)
        assert response.status_code == 200, response.text
        [figures] = response.json()
        resamples = evaluation.settings.bootstrap_resamples
        rating = bootstrap_ci([float(r) for r in ratings], resamples=resamples)
        share = bootstrap_ci([1.0 if t == "up" else 0.0 for t in thumbs if t], resamples=resamples)
        assert figures == {
            "model_version_id": "mv-1",
            "count": 7,
            "rating": {"mean": rating.mean, "low": rating.low, "high": rating.high, "n": 6},
            "thumbs_up": 3,
            "thumbs_down": 2,
            "share_up": {"mean": share.mean, "low": share.low, "high": share.high, "n": 5},
            "corrections": 1,
        }
        assert rating.mean == pytest.approx(3.5) and share.mean == pytest.approx(0.6)

    async def test_without_a_filter_each_model_version_has_its_own_figures(self, client):
        await give(client, {"rating": 5, "model_version_id": "mv-1"})
        await give(client, {"thumb": "down", "model_version_id": "mv-2"})
        await give(client, {"thumb": "down", "inference_id": "inf-9"})
        figures = (await client.get(f"{URL}/summary", headers=VIEWER)).json()
        assert [(f["model_version_id"], f["count"]) for f in figures] == [("mv-1", 1), ("mv-2", 1), (None, 1)]
        assert figures[1]["rating"] == {"mean": None, "low": None, "high": None, "n": 0}

    async def test_a_summary_without_a_token_is_refused(self, client):
        assert (await client.get(f"{URL}/summary")).status_code == 401

    async def test_a_summary_of_an_empty_model_version_id_is_refused(self, client):
        response = await client.get(f"{URL}/summary", params={"model_version_id": ""}, headers=VIEWER)
        assert response.status_code == 422


async def completed_run(evaluation, artifact: list[dict]) -> str:
    """A completed run of project p1 whose artifact (JSONL in the store) holds ``artifact``, as a worker leaves it."""
    stored = await evaluation.runtime.store.put_bytes(b"".join(orjson.dumps(line) + b"\n" for line in artifact))
    suite_id, version_id, run_id = (str(uuid.uuid4()) for _ in range(3))
    async with evaluation.runtime.db.transaction() as session:
        await session.execute(insert(suites).values(id=suite_id, project="p1", name="qa", created_by="eve"))
        await session.execute(
            insert(suite_versions).values(
                id=version_id, suite_id=suite_id, project="p1", version=1, spec={}, created_by="eve"
            )
        )
        await session.execute(
            insert(runs).values(
                id=run_id,
                project="p1",
                suite_version_id=version_id,
                status="completed",
                pool="cpu",
                target={},
                trigger="api",
                trigger_key=run_id,
                request={},
                requested_by="eve",
                artifact_uri=stored.uri,
                artifact_sha256=stored.sha256,
            )
        )
    return run_id


class TestExport:
    async def test_corrections_become_a_jsonl_dataset_and_an_import_request(self, evaluation, client):
        run_id = await completed_run(evaluation, [{"index": i, "input": f"q{i}", "output": "?"} for i in range(3)])
        await give(client, {"correction": "A1", "input": "Q1", "model_version_id": "mv-1"})
        await give(client, {"correction": "A1", "input": "Q1", "model_version_id": "mv-1"})  # the same pair again
        await give(client, {"correction": "A2", "run_id": run_id, "example_index": 2, "model_version_id": "mv-1"})
        await give(client, {"correction": "A3", "inference_id": "inf-1", "model_version_id": "mv-1"})  # no input
        await give(client, {"correction": "B", "input": "other", "model_version_id": "mv-2"})
        await give(client, {"rating": 1, "input": "Q", "model_version_id": "mv-1"})  # no correction
        response = await client.post(
            f"{URL}/export", json={"dataset": "corrected", "model_version_id": "mv-1"}, headers=ENGINEER
        )
        assert response.status_code == 202, response.text
        export = response.json()
        assert (export["rows"], export["skipped"]) == (2, 1)
        content = await evaluation.runtime.store.get_bytes(export["sha256"])
        assert [orjson.loads(line) for line in content.splitlines()] == [
            {"prompt": "Q1", "completion": "A1"},
            {"prompt": "q2", "completion": "A2"},
        ]
        [event] = await outbox_events(evaluation, "dataset.import.requested")
        assert event["subject"] == "corrected"
        data = event["data"]
        names = ("import_id", "uri", "sha256")
        assert {k: data[k] for k in names} == {k: export[k] for k in names}
        assert (data["dataset"], data["format"], data["file_type"], data["requested_by"]) == (
            "corrected",
            "instruction",
            "jsonl",
            "eve",
        )

    async def test_the_same_corrections_exported_again_have_the_same_import_id(self, client):
        await give(client, {"correction": "A", "input": "Q", "model_version_id": "mv-1"})
        body = {"dataset": "corrected"}
        first = (await client.post(f"{URL}/export", json=body, headers=ENGINEER)).json()
        again = (await client.post(f"{URL}/export", json=body, headers=ENGINEER)).json()
        assert first == again

    async def test_nothing_to_export_is_refused_naming_the_filter(self, evaluation, client):
        await give(client, {"correction": "A", "input": "Q", "model_version_id": "mv-1"})
        response = await client.post(
            f"{URL}/export", json={"dataset": "corrected", "model_version_id": "mv-9"}, headers=ENGINEER
        )
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["model_version_id"]
        assert await outbox_events(evaluation, "dataset.import.requested") == []

    async def test_corrections_without_an_input_are_refused(self, client):
        await give(client, {"correction": "A", "inference_id": "inf-1"})
        response = await client.post(f"{URL}/export", json={"dataset": "corrected"}, headers=ENGINEER)
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == ["dataset"]

    async def test_a_bad_dataset_name_is_refused(self, client):
        response = await client.post(f"{URL}/export", json={"dataset": "Not A Name"}, headers=ENGINEER)
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == ["dataset"]

    async def test_an_export_without_a_token_is_refused(self, client):
        assert (await client.post(f"{URL}/export", json={"dataset": "corrected"})).status_code == 401

    async def test_a_viewer_may_not_export(self, client):
        assert (await client.post(f"{URL}/export", json={"dataset": "corrected"}, headers=VIEWER)).status_code == 403
