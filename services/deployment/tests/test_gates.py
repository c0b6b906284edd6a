"""The evaluation gate a deployment passes: each suite attached to the model needs a passed decision on the version
(the newest decision of the suite, with the newest override evaluation recorded for it). Missing or failed gates are
a 409 naming the suites; an admin may deploy anyway with a reason (its own event, audited); anyone else asking for
an override is refused with 403, recorded as a denial."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .conftest import ADMIN, ENGINEER
from .seed import decided, outbox_events, overridden, project, registered, suite_created

pytestmark = pytest.mark.integration
PATH = "/projects/p1/deployments"
BODY = {"name": "chat", "model": {"name": "tiny-lora", "version": 1}}


async def gated(deployment, *outcomes: bool | None):
    """Version 1 of tiny-lora with one attached suite per outcome (None: no decision yet), and a suite of another
    model that has none (it must not count)."""
    model = registered()
    suites = [suite_created(name=f"suite-{i}") for i in range(len(outcomes))]
    decisions = [decided(s, model, o) for s, o in zip(suites, outcomes, strict=True) if o is not None]
    await project(deployment, model, *suites, suite_created(name="other", models=("another",)), *decisions)
    return model, suites, decisions


class TestGatesEnforced:
    async def test_passed_gates_allow_the_deployment_and_are_recorded(self, client, deployment):
        _, _, decisions = await gated(deployment, True, True)
        response = await client.post(PATH, json=BODY, headers=ENGINEER)
        assert response.status_code == 201, response.text
        checks = response.json()["gates"]
        assert [(c["suite"], c["passed"], c["decision_id"]) for c in checks] == [
            ("suite-0", True, decisions[0].decision_id),
            ("suite-1", True, decisions[1].decision_id),
        ]
        [requested] = [e for e in await outbox_events(deployment) if e["type"] == "deployment.requested"]
        assert requested["data"]["gates"] == checks and requested["data"]["gate_override"] is False

    async def test_a_failed_gate_is_409_naming_the_suite(self, client, deployment):
        await gated(deployment, True, False)
        response = await client.post(PATH, json=BODY, headers=ENGINEER)
        assert response.status_code == 409, response.text
        problem = response.json()
        assert "suite-1" in problem["detail"] and "suite-0" not in problem["detail"]
        assert problem["failed"] == ["suite-1"] and problem["missing"] == []
        assert not [e for e in await outbox_events(deployment) if e["type"].startswith("deployment.")]

    async def test_a_missing_decision_is_409_naming_the_suite(self, client, deployment):
        await gated(deployment, None, False)
        problem = (await client.post(PATH, json=BODY, headers=ENGINEER)).json()
        assert problem["status"] == 409
        assert problem["missing"] == ["suite-0"] and problem["failed"] == ["suite-1"]
        assert "suite-0" in problem["detail"] and "suite-1" in problem["detail"]

    async def test_a_decision_on_another_version_does_not_count(self, client, deployment):
        other = registered(version=2)
        _, suites, _ = await gated(deployment, None)
        await project(deployment, other, decided(suites[0], other, True))
        assert (await client.post(PATH, json=BODY, headers=ENGINEER)).status_code == 409

    async def test_the_newest_decision_of_a_suite_counts(self, client, deployment):
        model = registered()
        suite = suite_created()
        early = datetime.now(UTC) - timedelta(hours=1)
        await project(deployment, model, suite, decided(suite, model, False), decided(suite, model, True), at=early)
        assert (await client.post(PATH, json=BODY, headers=ENGINEER)).status_code == 201
        await project(deployment, decided(suite, model, False))  # decided again since: failed
        assert (await client.post(PATH, json=BODY, headers=ENGINEER)).status_code == 409

    async def test_a_failed_decision_overridden_in_evaluation_passes(self, client, deployment):
        _, _, [decision] = await gated(deployment, False)
        override = overridden(decision, True)
        await project(deployment, override)
        response = await client.post(PATH, json=BODY, headers=ENGINEER)
        assert response.status_code == 201, response.text
        [check] = response.json()["gates"]
        assert check["passed"] is True and check["overridden_by"] == override.override_id
        assert response.json()["gate_override"] is False

    async def test_the_newest_override_counts(self, client, deployment):
        _, _, [decision] = await gated(deployment, False)
        early = datetime.now(UTC) - timedelta(minutes=5)
        await project(deployment, overridden(decision, False), overridden(decision, True), at=early)
        assert (await client.post(PATH, json=BODY, headers=ENGINEER)).status_code == 201
        await project(deployment, overridden(decision, False))
        assert (await client.post(PATH, json=BODY, headers=ENGINEER)).status_code == 409

    async def test_a_newer_suite_version_detached_from_the_model_no_longer_gates_it(self, client, deployment):
        model = registered()
        suite = suite_created()
        detached = suite_created(version=2, models=("another",), suite_id=suite.suite_id)
        await project(deployment, model, detached, suite)  # the older version arrives last: the newer one stays
        response = await client.post(PATH, json=BODY, headers=ENGINEER)
        assert response.status_code == 201 and response.json()["gates"] == []


class TestAdminOverride:
    async def test_an_admin_deploys_past_failed_gates_with_a_reason_and_it_is_published(self, client, deployment):
        model, _, [decision] = await gated(deployment, False, None)
        response = await client.post(PATH, json=BODY | {"override_reason": "hotfix, judged by hand"}, headers=ADMIN)
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["gate_override"] is True and created["override_reason"] == "hotfix, judged by hand"
        events = [e for e in await outbox_events(deployment) if e["type"].startswith("deployment.")]
        assert [e["type"] for e in events] == ["deployment.gate.overridden", "deployment.requested"]
        override, requested = (e["data"] for e in events)
        assert override["deployment_id"] == created["id"] and override["actor"] == "ada"
        assert override["model_version_id"] == model.model_version_id
        assert override["reason"] == "hotfix, judged by hand"
        assert [(g["suite"], g["passed"]) for g in override["gates"]] == [("suite-0", False), ("suite-1", None)]
        assert requested["gate_override"] is True and requested["gates"][0]["decision_id"] == decision.decision_id

    async def test_an_engineer_asking_for_an_override_is_refused_and_the_denial_recorded(self, client, deployment):
        await gated(deployment, False)
        response = await client.post(PATH, json=BODY | {"override_reason": "please"}, headers=ENGINEER)
        assert response.status_code == 403, response.text
        events = await outbox_events(deployment)
        denials = [e for e in events if e["type"] == "security.access.denied"]
        assert len(denials) == 1 and denials[0]["data"]["reason"] == "gate_override"
        assert denials[0]["data"]["principal"] == "eve"
        assert not [e for e in events if e["type"].startswith("deployment.")]

    async def test_an_override_of_passed_gates_overrides_nothing(self, client, deployment):
        await gated(deployment, True)
        response = await client.post(PATH, json=BODY | {"override_reason": "just in case"}, headers=ADMIN)
        assert response.status_code == 201
        assert response.json()["gate_override"] is False and response.json()["override_reason"] is None
        types = [e["type"] for e in await outbox_events(deployment)]
        assert "deployment.gate.overridden" not in types

    async def test_an_empty_reason_is_422(self, client, deployment):
        response = await client.post(PATH, json=BODY | {"override_reason": ""}, headers=ADMIN)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "override_reason"
