"""The lineage of an answered request on real Postgres: from its inference record to the deployment that served it
(with the gates that allowed it, or its override), to the model version with its training job, dataset version, base
model and the prompt version used in training; 404 until the record is here."""

from __future__ import annotations

import pytest

from .conftest import ADMIN, ENGINEER, STEWARD, VIEWER
from .seed import completed, decided, project, registered, suite_created

pytestmark = pytest.mark.integration


def path(request_id: str) -> str:
    return f"/projects/p1/inferences/{request_id}/lineage"


class TestLineage:
    async def test_an_answer_leads_to_its_deployment_gates_model_and_training_data(self, client, deployment):
        model = registered()
        suite = suite_created()
        decision = decided(suite, model, True)
        await project(deployment, model, suite, decision)
        body = {"name": "chat", "model": {"name": "tiny-lora", "version": 1}}
        deployed = (await client.post("/projects/p1/deployments", json=body, headers=ENGINEER)).json()
        record = completed(deployment_id=deployed["id"], model_version_id=model.model_version_id)
        await project(deployment, record)

        response = await client.get(path(record.request_id), headers=VIEWER)
        assert response.status_code == 200, response.text
        found = response.json()
        assert (found["route"], found["status"], found["prompt_version_id"]) == ("chat", "completed", "pv-9")
        assert found["model_hash"] == "f" * 64
        assert found["deployment"]["id"] == deployed["id"] and found["deployment"]["gate_override"] is False
        assert [(g["suite"], g["decision_id"]) for g in found["deployment"]["gates"]] == [
            ("quality", decision.decision_id)
        ]
        version = found["model_version"]
        assert (version["name"], version["version"]) == ("tiny-lora", 1)
        assert version["training_job_id"] == model.job_id
        assert version["dataset"]["sha256"] == "d" * 64 and version["dataset"]["version"] == 3
        assert version["base_model"]["manifest_sha256"] == "b" * 64
        assert version["base_model"]["resolved_revision"] == "b" * 64
        assert version["prompt"]["version_id"] == "pv1"

    async def test_an_overridden_deployment_shows_its_reason(self, client, deployment):
        model = registered()
        suite = suite_created()
        await project(deployment, model, suite, decided(suite, model, False))
        body = {"name": "chat", "model": {"name": "tiny-lora", "version": 1}, "override_reason": "hotfix"}
        deployed = (await client.post("/projects/p1/deployments", json=body, headers=ADMIN)).json()
        record = completed(deployment_id=deployed["id"])  # the model version comes from the deployment
        await project(deployment, record)
        found = (await client.get(path(record.request_id), headers=VIEWER)).json()
        assert found["deployment"]["gate_override"] is True and found["deployment"]["override_reason"] == "hotfix"
        assert found["model_version_id"] == model.model_version_id
        assert found["model_version"]["training_job_id"] == model.job_id

    async def test_a_record_from_another_system_has_no_deployment_here(self, client, deployment):
        record = completed(deployment_id="their-own-deployment")
        await project(deployment, record)
        found = (await client.get(path(record.request_id), headers=VIEWER)).json()
        assert found["deployment"] is None and found["model_version"] is None
        assert found["deployment_id"] == "their-own-deployment"

    async def test_an_unrecorded_request_is_404(self, client):
        response = await client.get(path("req-unknown"), headers=VIEWER)
        assert response.status_code == 404 and "req-unknown" in response.json()["detail"]

    async def test_another_projects_record_is_not_found(self, client, deployment):
        record = completed("p2")
        await project(deployment, record)
        assert (await client.get(path(record.request_id), headers=VIEWER)).status_code == 404

    async def test_without_a_token_it_is_401_and_without_the_role_403(self, client):
        assert (await client.get(path("r1"))).status_code == 401
        assert (await client.get(path("r1"), headers=STEWARD)).status_code == 403

    async def test_a_request_id_too_long_is_422(self, client):
        response = await client.get(path("r" * 129), headers=VIEWER)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "request_id"
