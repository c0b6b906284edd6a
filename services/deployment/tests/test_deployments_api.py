"""The deployments API on real Postgres: a deployment of a model version (by number or alias) or of an external
server is recorded with its replicas and published in one transaction; bad placements and unknown models are 422s
naming the field; listing, showing, stopping and logs; 401 and 403 for every route."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert

from llmops_deployment.models import deployment_logs
from llmops_schemas.events import ModelAliasMoved

from .conftest import ADMIN, ENGINEER, STEWARD, VIEWER
from .seed import outbox_events, project, registered

pytestmark = pytest.mark.integration
PATH = "/projects/p1/deployments"


def body(**overrides) -> dict:
    return {"name": "chat", "model": {"name": "tiny-lora", "version": 1}, "replicas": 2} | overrides


def assert_unprocessable(response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]], response.json()


async def deploy(client, headers=ENGINEER, **overrides) -> dict:
    response = await client.post(PATH, json=body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


class TestCreate:
    async def test_a_version_is_recorded_with_pending_replicas_and_published(self, client, deployment):
        model = registered()
        await project(deployment, model)
        created = await deploy(client, generation={"temperature": 0.2, "max_tokens": 64})
        assert created["status"] == "requested" and created["model_version_id"] == model.model_version_id
        assert created["gates"] == [] and created["gate_override"] is False
        assert [(r["replica"], r["status"]) for r in created["replica_states"]] == [(0, "pending"), (1, "pending")]
        assert created["generation"] == {"temperature": 0.2, "max_tokens": 64}
        [requested] = [e for e in await outbox_events(deployment) if e["type"] == "deployment.requested"]
        assert requested["subject"] == created["id"] and requested["actor"] == "eve"
        served = requested["data"]["model"]
        assert served["model_version_id"] == model.model_version_id
        assert served["base_model"]["manifest_sha256"] == "b" * 64 and served["kind"] == "adapter"
        assert requested["data"]["backend"] == "transformers" and requested["data"]["replicas"] == 2

    async def test_an_alias_is_resolved_to_its_version(self, client, deployment):
        one, two = registered(version=1), registered(version=2)
        moved = ModelAliasMoved(
            project="p1", name="tiny-lora", alias="prod", from_version=None, to_version=2, reason=""
        )
        await project(deployment, one, two, moved)
        created = await deploy(client, model={"name": "tiny-lora", "alias": "prod"})
        assert (created["model_version"], created["model_version_id"]) == (2, two.model_version_id)

    async def test_an_external_server_needs_no_model_and_no_gate(self, client, deployment):
        external = {"url": "http://127.0.0.1:9999/v1", "model": "gpt-x", "secret_ref": "EXT_KEY"}
        created = await deploy(client, model=None, backend="external", external=external, replicas=1)
        assert created["external"] == external and created["model"] is None
        [requested] = [e for e in await outbox_events(deployment) if e["type"] == "deployment.requested"]
        assert requested["data"]["external"] == external

    async def test_without_a_token_it_is_401(self, client):
        assert (await client.post(PATH, json=body())).status_code == 401

    async def test_a_viewer_or_a_steward_is_refused_with_403(self, client):
        assert (await client.post(PATH, json=body(), headers=VIEWER)).status_code == 403
        assert (await client.post(PATH, json=body(), headers=STEWARD)).status_code == 403


class TestCreateRefusals:
    async def test_an_unknown_pool_is_422(self, client, deployment):
        await project(deployment, registered())
        assert_unprocessable(await client.post(PATH, json=body(pool="tpu"), headers=ENGINEER), "pool")

    async def test_a_gpu_backend_on_the_cpu_pool_is_422_saying_so(self, client, deployment):
        await project(deployment, registered())
        response = await client.post(PATH, json=body(backend="vllm"), headers=ENGINEER)
        assert_unprocessable(response, "backend")
        assert "GPU backend" in response.json()["detail"] and "cpu" in response.json()["detail"]

    async def test_an_unknown_model_or_alias_is_422_naming_the_model(self, client, deployment):
        await project(deployment, registered())
        missing = await client.post(PATH, json=body(model={"name": "tiny-lora", "version": 7}), headers=ENGINEER)
        assert_unprocessable(missing, "model")
        alias = await client.post(PATH, json=body(model={"name": "tiny-lora", "alias": "nope"}), headers=ENGINEER)
        assert_unprocessable(alias, "model.alias")
        both = await client.post(
            PATH, json=body(model={"name": "tiny-lora", "version": 1, "alias": "x"}), headers=ENGINEER
        )
        assert_unprocessable(both, "model")

    @pytest.mark.parametrize("replicas", [0, 9, 65])
    async def test_replicas_out_of_range_are_422(self, client, deployment, replicas):
        await project(deployment, registered())
        assert_unprocessable(await client.post(PATH, json=body(replicas=replicas), headers=ENGINEER), "replicas")

    async def test_bad_generation_values_are_422(self, client):
        response = await client.post(PATH, json=body(generation={"temperature": 3}), headers=ENGINEER)
        assert_unprocessable(response, "generation.temperature")
        response = await client.post(PATH, json=body(generation={"max_tokens": 5000}), headers=ENGINEER)
        assert_unprocessable(response, "generation.max_tokens")

    async def test_external_needs_a_url_of_an_allowed_host_over_http(self, client, deployment):
        def external(**values):
            return body(model=None, backend="external", external={"model": "m"} | values)

        assert_unprocessable(await client.post(PATH, json=external(), headers=ENGINEER), "external.url")
        ftp = await client.post(PATH, json=external(url="ftp://h/v1"), headers=ENGINEER)
        assert_unprocessable(ftp, "external.url")
        deployment.settings.allowed_external_hosts = ["models.internal"]
        elsewhere = await client.post(PATH, json=external(url="http://evil.example/v1"), headers=ENGINEER)
        assert_unprocessable(elsewhere, "external.url")
        allowed = await client.post(PATH, json=external(url="https://models.internal/v1"), headers=ENGINEER)
        assert allowed.status_code == 201, allowed.text
        no_external = await client.post(PATH, json=body(model=None, backend="external"), headers=ENGINEER)
        assert_unprocessable(no_external, "external")


class TestReadAndStop:
    async def test_the_list_is_newest_first_and_paged(self, client, deployment):
        await project(deployment, registered())
        first = await deploy(client, name="one")
        second = await deploy(client, name="two")
        listed = (await client.get(PATH, headers=VIEWER)).json()
        assert [d["id"] for d in listed] == [second["id"], first["id"]]
        page = (await client.get(PATH, params={"limit": 1, "offset": 1}, headers=VIEWER)).json()
        assert [d["id"] for d in page] == [first["id"]]
        assert_unprocessable(await client.get(PATH, params={"limit": 0}, headers=VIEWER), "limit")
        assert (await client.get(PATH)).status_code == 401
        assert (await client.get(PATH, headers=STEWARD)).status_code == 403

    async def test_show_has_the_replicas_and_an_unknown_id_is_404(self, client, deployment):
        await project(deployment, registered())
        created = await deploy(client)
        shown = (await client.get(f"{PATH}/{created['id']}", headers=VIEWER)).json()
        assert shown["id"] == created["id"] and len(shown["replica_states"]) == 2
        assert (await client.get(f"{PATH}/{uuid.uuid4()}", headers=VIEWER)).status_code == 404
        assert_unprocessable(await client.get(f"{PATH}/not-a-uuid", headers=VIEWER), "deployment_id")
        assert (await client.get(f"{PATH}/{created['id']}")).status_code == 401
        assert (await client.get(f"{PATH}/{created['id']}", headers=STEWARD)).status_code == 403

    async def test_stop_asks_the_workers_once_and_again_is_409(self, client, deployment):
        await project(deployment, registered())
        created = await deploy(client)
        stopped = await client.post(f"{PATH}/{created['id']}/stop", json={"reason": "done"}, headers=ENGINEER)
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["status"] == "stopping"
        [asked] = [e for e in await outbox_events(deployment) if e["type"] == "deployment.stop.requested"]
        assert asked["data"] == {
            "deployment_id": created["id"],
            "project": "p1",
            "requested_by": "eve",
            "reason": "done",
        }
        again = await client.post(f"{PATH}/{created['id']}/stop", headers=ADMIN)
        assert again.status_code == 409 and "stopping" in again.json()["detail"]

    async def test_stop_is_refused_without_a_token_to_readers_and_for_bad_input(self, client, deployment):
        await project(deployment, registered())
        created = await deploy(client)
        stop = f"{PATH}/{created['id']}/stop"
        assert (await client.post(stop)).status_code == 401
        assert (await client.post(stop, headers=VIEWER)).status_code == 403
        assert_unprocessable(await client.post(stop, json={"reason": 5}, headers=ENGINEER), "reason")
        assert (await client.post(f"{PATH}/{uuid.uuid4()}/stop", headers=ENGINEER)).status_code == 404

    async def test_logs_are_paged_after_the_last_line_seen(self, client, deployment):
        await project(deployment, registered())
        created = await deploy(client)
        async with deployment.runtime.db.transaction() as session:
            await session.execute(
                insert(deployment_logs),
                [{"deployment_id": created["id"], "replica": 0, "line": f"l{i}"} for i in range(3)],
            )
        logs = f"{PATH}/{created['id']}/logs"
        lines = (await client.get(logs, headers=VIEWER)).json()
        assert [line["line"] for line in lines] == ["l0", "l1", "l2"]
        rest = (await client.get(logs, params={"after": lines[0]["id"]}, headers=VIEWER)).json()
        assert [line["line"] for line in rest] == ["l1", "l2"]
        assert_unprocessable(await client.get(logs, params={"after": -1}, headers=VIEWER), "after")
        assert (await client.get(logs)).status_code == 401
        assert (await client.get(logs, headers=STEWARD)).status_code == 403
        assert (await client.get(f"{PATH}/{uuid.uuid4()}/logs", headers=VIEWER)).status_code == 404
