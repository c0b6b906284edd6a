"""``llmops deploy`` and ``llmops lineage``: the pure helpers, then the installed command against the real deployment
service over HTTP (create with --wait while a "worker" makes it ready, list, show, logs, stop; a refused gate; the
lineage of an answer)."""

from __future__ import annotations

import asyncio
import json
from functools import partial

import pytest
import typer
from sqlalchemy import insert, update

from llmops import testing
from llmops.auth import Role, issue_token
from llmops.runtime import Actor
from llmops.testing import serve
from llmops_deployment import service
from llmops_deployment.cli import deploy as deploy_cli
from llmops_deployment.models import deployment_logs, deployment_replicas, deployments

from .seed import completed, decided, project, registered, suite_created

deploy = partial(testing.llmops, "deploy")
COMMON = {
    "external_url": None,
    "external_model": None,
    "secret_ref": None,
    "backend": None,
    "pool": "cpu",
    "replicas": 1,
    "generation": {},
    "override_reason": None,
}


class TestCreateBody:
    def test_a_version_or_an_alias(self):
        body = deploy_cli.create_body("chat", model="tiny", version=2, alias=None, **COMMON)
        assert body == {
            "name": "chat",
            "pool": "cpu",
            "replicas": 1,
            "backend": "transformers",
            "model": {"name": "tiny", "version": 2},
        }
        body = deploy_cli.create_body("chat", model="tiny", version=None, alias="prod", **COMMON)
        assert body["model"] == {"name": "tiny", "alias": "prod"}

    def test_an_external_server(self):
        values = COMMON | {"external_url": "http://h/v1", "external_model": "m", "secret_ref": "KEY"}
        body = deploy_cli.create_body("chat", model=None, version=None, alias=None, **values)
        assert body["backend"] == "external"
        assert body["external"] == {"url": "http://h/v1", "model": "m", "secret_ref": "KEY"}

    @pytest.mark.parametrize(
        ("model", "version", "alias", "external_url", "message"),
        [
            (None, None, None, None, "--model"),
            ("tiny", None, None, None, "one of them"),
            ("tiny", 1, "prod", None, "one of them"),
            ("tiny", 1, None, "http://h/v1", "serves no registered model"),
        ],
    )
    def test_anything_else_is_a_usage_error(self, model, version, alias, external_url, message):
        values = COMMON | {"external_url": external_url, "external_model": "m"}
        with pytest.raises(typer.BadParameter, match=message):
            deploy_cli.create_body("chat", model=model, version=version, alias=alias, **values)


@pytest.fixture
async def server(deployment):
    async with serve(deployment.app) as url:
        yield url


def env_for(server: str, role: Role = Role.ML_ENGINEER) -> dict[str, str]:
    return {"LLMOPS_CLIENT_DEPLOYMENT_URL": server, "LLMOPS_CLIENT_TOKEN": issue_token("cli-user", [role], ["p1"])}


async def become_ready(deployment) -> str:
    """What a serving worker does, in short: the first deployment's replica serves, and says so in its log."""
    while True:
        async with deployment.runtime.db.transaction() as session:
            found = (await session.execute(deployments.select())).first()
            if found is not None:
                await session.execute(
                    update(deployment_replicas)
                    .where(deployment_replicas.c.deployment_id == found.id)
                    .values(status="ready", endpoint="http://127.0.0.1:9/v1", worker="w1")
                )
                await session.execute(update(deployments).where(deployments.c.id == found.id).values(status="ready"))
                await session.execute(insert(deployment_logs).values(deployment_id=found.id, replica=0, line="up"))
                return found.id
        await asyncio.sleep(0.1)


@pytest.mark.integration
async def test_create_wait_list_show_logs_and_stop_from_the_command_line(deployment, server):
    model = registered()
    suite = suite_created()
    await project(deployment, model, suite, decided(suite, model, True))
    create = deploy(
        "create", "-p", "p1", "chat", "--model", "tiny-lora", "--version", "1", "--replicas", "1",
        "--max-tokens", "32", "--wait", "--interval", "0.2", "--timeout", "60", "--json",
        env=env_for(server),
    )  # fmt: skip
    (code, stdout, stderr), deployment_id = await asyncio.gather(create, become_ready(deployment))
    assert code == 0, stderr
    created = json.loads(stdout)
    assert created["id"] == deployment_id and created["status"] == "ready"
    assert created["generation"] == {"max_tokens": 32} and created["gates"][0]["suite"] == "quality"

    code, stdout, stderr = await deploy("list", "-p", "p1", env=env_for(server, Role.VIEWER))
    assert code == 0, stderr
    assert deployment_id in stdout and "tiny-lora v1" in stdout and "ready" in stdout
    code, stdout, stderr = await deploy("show", "-p", "p1", deployment_id, env=env_for(server, Role.VIEWER))
    assert code == 0, stderr
    assert "http://127.0.0.1:9/v1" in stdout and "quality passed" in stdout
    code, stdout, stderr = await deploy("logs", "-p", "p1", deployment_id, env=env_for(server, Role.VIEWER))
    assert code == 0 and "up" in stdout, stderr
    code, _, stderr = await deploy("stop", "-p", "p1", deployment_id, "--reason", "done", env=env_for(server))
    assert code == 0 and "stopping" in stderr, stderr


@pytest.mark.integration
async def test_a_refused_gate_and_the_lineage_of_an_answer_from_the_command_line(deployment, server):
    model, failing = registered(), registered(version=2)
    suite = suite_created()
    await project(deployment, model, failing, suite, decided(suite, model, True), decided(suite, failing, False))
    code, _, stderr = await deploy(
        "create", "-p", "p1", "chat2", "--model", "tiny-lora", "--version", "2", env=env_for(server)
    )
    assert code == 1 and "409" in stderr and "quality" in stderr and "--override-reason" in stderr

    async with deployment.runtime.db.transaction() as session:
        deployment_id = await service.request_deployment(
            session,
            deployment.runtime,
            deployment.settings,
            project="p1",
            body={"name": "chat", "backend": "transformers", "pool": "cpu", "replicas": 1,
                  "model": {"name": "tiny-lora", "version": 1}},
            may_override=False,
            actor=Actor("eve"),
        )  # fmt: skip
    record = completed(deployment_id=deployment_id, model_version_id=model.model_version_id)
    await project(deployment, record)
    code, stdout, stderr = await testing.llmops(
        "lineage", record.request_id, "-p", "p1", env=env_for(server, Role.VIEWER)
    )
    assert code == 0, stderr
    for part in ("chat", "tiny-lora v1", model.job_id, "quality", "dataset: qa v3", "base model: tiny"):
        assert part in stdout, stdout
