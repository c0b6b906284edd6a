"""The training service's HTTP API on real infrastructure: base models, job requests (checked against the
projections of dataset and prompt events), cancellation, the model registry's aliases; roles on every route."""

from __future__ import annotations

import tarfile
import uuid

import pytest
import sqlalchemy

from llmops.auth import Role
from llmops_training import repository

from .conftest import (
    ADMIN,
    CONFIG,
    ENGINEER,
    STEWARD,
    VIEWER,
    bearer,
    member,
    outbox_events,
    register_tiny,
    safetensors_claiming,
    seed_dataset,
    tar_of,
    tar_with,
)

pytestmark = pytest.mark.integration


def job_body(**overrides) -> dict:
    return {"base_model": "tiny", "dataset": {"name": "qa", "version": 1}, "method": "lora"} | overrides


async def request_job(client, headers=ENGINEER, **overrides):
    return await client.post("/projects/p1/training/jobs", json=job_body(**overrides), headers=headers)


@pytest.fixture
async def ready(training, client, tiny_model):
    await register_tiny(client, tiny_model)
    return await seed_dataset(training)


class TestBaseModels:
    async def test_an_uploaded_directory_becomes_a_content_addressed_base_model(self, client, training, tiny_model):
        body = await register_tiny(client, tiny_model)
        assert body["source"] == "upload" and len(body["manifest_sha256"]) == 64
        assert body["architecture"] == "LlamaForCausalLM" and body["parameters"] > 0
        listed = (await client.get("/projects/p1/base-models", headers=VIEWER)).json()
        assert [m["name"] for m in listed] == ["tiny"]
        again = await register_tiny(client, tiny_model, name="tiny-again")
        assert again["manifest_sha256"] == body["manifest_sha256"]  # same files, same address
        registered = [e for e in await outbox_events(training) if e["type"] == "base_model.registered"]
        assert [e["data"]["name"] for e in registered] == ["tiny", "tiny-again"]

    async def test_a_hub_model_is_recorded_with_its_revision(self, client):
        response = await client.post(
            "/projects/p1/base-models",
            json={"name": "smol", "hub_id": "HuggingFaceTB/SmolLM2-135M", "revision": "main"},
            headers=ENGINEER,
        )
        assert response.status_code == 201
        assert response.json() | {"source": "hub", "revision": "main"} == response.json()

    async def test_a_name_is_taken_once(self, client, tiny_model):
        await register_tiny(client, tiny_model)
        response = await client.post(
            "/projects/p1/base-models/tiny/upload",
            content=tar_of(tiny_model),
            headers=ENGINEER | {"content-type": "application/x-tar"},
        )
        assert response.status_code == 409

    async def test_an_upload_that_is_not_a_model_directory_is_refused(self, client, tmp_path):
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "readme.txt").write_text("no config here")
        headers = ENGINEER | {"content-type": "application/x-tar"}
        response = await client.post(
            "/projects/p1/base-models/x/upload", content=tar_of(tmp_path / "notes"), headers=headers
        )
        assert response.status_code == 422 and "config.json" in response.json()["detail"]
        garbage = await client.post("/projects/p1/base-models/x/upload", content=b"not a tar", headers=headers)
        assert garbage.status_code == 422
        empty = await client.post("/projects/p1/base-models/x/upload", content=b"", headers=headers)
        assert empty.status_code == 422
        wrong = await client.post(
            "/projects/p1/base-models/x/upload", content=b"{}", headers=ENGINEER | {"content-type": "application/json"}
        )
        assert wrong.status_code == 415

    async def test_an_upload_over_the_limit_is_refused(self, training, client, tiny_model):
        training.settings.max_upload_bytes = 1000
        response = await client.post(
            "/projects/p1/base-models/big/upload",
            content=tar_of(tiny_model),
            headers=ENGINEER | {"content-type": "application/x-tar"},
        )
        assert response.status_code == 413


async def upload(client, archive: bytes, name: str = "x"):
    headers = ENGINEER | {"content-type": "application/x-tar"}
    return await client.post(f"/projects/p1/base-models/{name}/upload", content=archive, headers=headers)


async def assert_nothing_stored(client, training, name: str = "x") -> None:
    assert (await client.get(f"/projects/p1/base-models/{name}", headers=VIEWER)).status_code == 404
    assert not [e for e in await outbox_events(training) if e["type"] == "base_model.registered"]
    assert list(training.settings.work_dir.iterdir()) == []  # the spooled upload and anything unpacked are gone


class TestBaseModelArchiveLimits:
    async def test_a_gzip_tar_bomb_is_refused_before_it_is_unpacked(self, client, training):
        bomb = tar_with(CONFIG, member("model/weights.bin", bytes(50 * 1024**2)), mode="w:gz")
        assert len(bomb) < 1024**2  # 50 MB of zeros in well under 1 MB
        response = await upload(client, bomb)
        assert response.status_code == 422, response.text
        assert "send a plain (uncompressed) tar; compressed archives are refused" in response.json()["detail"]
        await assert_nothing_stored(client, training)

    @pytest.mark.parametrize(
        ("entry", "reason"),
        [
            (member("model/alias.json", type=tarfile.SYMTYPE, linkname="config.json"), "is a symbolic link"),
            (member("model/copy.json", type=tarfile.LNKTYPE, linkname="model/config.json"), "is a hard link"),
            (member("model/../../evil.txt", b"x"), "points outside the model directory"),
            (member("/tmp/evil.txt", b"x"), "points outside the model directory"),
        ],
        ids=["symlink", "hard link", "dot-dot", "absolute"],
    )
    async def test_a_link_or_a_member_outside_the_directory_is_refused_naming_it(self, client, training, entry, reason):
        response = await upload(client, tar_with(CONFIG, entry))
        assert response.status_code == 422, response.text
        assert f"{entry[0].name!r} {reason}" in response.json()["detail"]
        await assert_nothing_stored(client, training)

    async def test_files_over_the_size_limit_are_refused_from_their_headers(self, client, training, tiny_model):
        training.settings.max_base_model_bytes = 1000
        response = await upload(client, tar_of(tiny_model))
        assert response.status_code == 413, response.text
        assert "limit of 1000 bytes" in response.json()["detail"]
        await assert_nothing_stored(client, training)

    async def test_a_member_declaring_a_terabyte_is_refused_without_reading_it(self, client, training):
        crafted = tar_with(CONFIG, member("model/weights.bin", size=1024**4))  # the header only, no data
        response = await upload(client, crafted)
        assert response.status_code == 413, response.text
        assert "'model/weights.bin'" in response.json()["detail"]
        await assert_nothing_stored(client, training)

    async def test_too_many_members_are_refused(self, client, training, tiny_model):
        training.settings.max_base_model_files = 3
        response = await upload(client, tar_of(tiny_model))
        assert response.status_code == 422 and "more than 3 members" in response.json()["detail"]
        await assert_nothing_stored(client, training)

    async def test_a_safetensors_header_claiming_a_terabyte_is_refused_naming_the_file(self, client, training):
        weights = member("model/model.safetensors", safetensors_claiming(1024**4))
        response = await upload(client, tar_with(CONFIG, weights))
        assert response.status_code == 422, response.text
        assert "model.safetensors is not a readable safetensors file" in response.json()["detail"]
        await assert_nothing_stored(client, training)


class TestJobRequests:
    async def test_a_valid_request_is_queued_and_published_with_everything_a_worker_needs(
        self, client, training, ready
    ):
        response = await request_job(client, hyperparameters={"max_steps": 5, "lora_rank": 4})
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["status"] == "queued" and job["model_name"] == "tiny-lora" and job["pool"] == "cpu"
        requested = [e for e in await outbox_events(training) if e["type"] == "training.job.requested"]
        assert len(requested) == 1 and requested[0]["subject"] == job["id"]
        data = requested[0]["data"]
        assert data["dataset"]["sha256"] == ready["sha256"] and data["base_model"]["manifest_sha256"]
        assert data["hyperparameters"]["lora_rank"] == 4 and data["hyperparameters"]["checkpoint_every"] == 50

    @pytest.mark.parametrize(
        ("overrides", "field", "words"),
        [
            ({"dataset": {"name": "qa", "version": 9}}, "dataset", "no dataset version"),
            ({"dataset": {"name": "old", "version": 1}}, "dataset", "deprecated"),
            ({"dataset": {"name": "labels", "version": 1}}, "dataset", "cannot train"),
            ({"base_model": "nope"}, "base_model", "no base model"),
            ({"method": "qlora"}, "method", "CUDA"),
            ({"pool": "tpu"}, "pool", "unknown pool"),
            ({"prompt": {"name": "nope", "version": 1}}, "prompt", "no prompt version"),
            ({"hyperparameters": {"learning_rate": 5}}, "hyperparameters.learning_rate", "less than or equal"),
            ({"hyperparameters": {"lora_rank": 0}}, "hyperparameters.lora_rank", "greater than or equal"),
            ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs", "greater than"),
            ({"hyperparameters": {"batch_size": 10**6}}, "hyperparameters.batch_size", "less than"),
            ({"hyperparameters": {"lora_dropout": 1.0}}, "hyperparameters.lora_dropout", "less than"),
            ({"hyperparameters": {"warmup": 3}}, "hyperparameters.warmup", "Extra inputs"),
            ({"method": "dpo"}, "method", "Input should be"),
        ],
    )
    async def test_a_bad_request_is_422_naming_the_field_and_the_reason(
        self, client, training, ready, overrides, field, words
    ):
        await seed_dataset(training, name="old", deprecated=True)
        await seed_dataset(training, name="labels", fmt="classification", rows=[{"text": "a", "label": "x"}])
        response = await request_job(client, **overrides)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["errors"][0]["field"] == field
        assert words in problem["errors"][0]["message"] or words in problem["detail"]
        assert not [e for e in await outbox_events(training) if e["type"] == "training.job.requested"]

    async def test_qlora_is_accepted_on_a_pool_with_cuda(self, client, ready):
        response = await request_job(client, method="qlora", pool="gpu")
        assert response.status_code == 201

    async def test_a_prompt_version_from_the_projection_is_carried_to_the_worker(self, client, training, ready):
        template = {"kind": "text", "text": "Q: {{ prompt }}\nA:", "variables": {"prompt": {"type": "string"}}}
        async with training.runtime.db.transaction() as session:
            await repository.insert_prompt_version(
                session,
                {
                    "version_id": str(uuid.uuid4()),
                    "prompt_id": str(uuid.uuid4()),
                    "project": "p1",
                    "name": "qa-format",
                    "version": 2,
                    "template": template,
                    "hash": "a" * 64,
                },
            )
        response = await request_job(client, prompt={"name": "qa-format", "version": 2})
        assert response.status_code == 201, response.text
        requested = [e for e in await outbox_events(training) if e["type"] == "training.job.requested"]
        assert requested[0]["data"]["prompt"]["template"] == template


class TestCancellation:
    async def test_a_queued_job_is_cancelled_at_once_and_a_second_cancel_is_a_conflict(self, client, training, ready):
        job = (await request_job(client)).json()
        response = await client.post(f"/projects/p1/training/jobs/{job['id']}/cancel", headers=ENGINEER)
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        assert response.json()["cancel_requested_by"] == "eve"
        again = await client.post(f"/projects/p1/training/jobs/{job['id']}/cancel", headers=ENGINEER)
        assert again.status_code == 409
        cancelled = [e for e in await outbox_events(training) if e["type"] == "training.job.cancelled"]
        assert [e["subject"] for e in cancelled] == [job["id"]]

    async def test_logs_say_who_queued_and_cancelled(self, client, ready):
        job = (await request_job(client)).json()
        await client.post(f"/projects/p1/training/jobs/{job['id']}/cancel", headers=ENGINEER)
        logs = (await client.get(f"/projects/p1/training/jobs/{job['id']}/logs", headers=VIEWER)).json()
        assert [line["message"] for line in logs] == ["queued for pool 'cpu' by eve", "cancellation requested by eve"]

    async def test_an_unknown_job_is_404(self, client):
        response = await client.get(f"/projects/p1/training/jobs/{uuid.uuid4()}", headers=VIEWER)
        assert response.status_code == 404


async def register_versions(training, count: int = 2, name: str = "tiny-lora") -> None:
    """Model versions as a worker registers them (the worker itself is tested in test_worker)."""
    async with training.runtime.db.transaction() as session:
        base = await repository.find_base_model(session, "p1", "tiny")
        for n in range(1, count + 1):
            job_id = str(uuid.uuid4())
            await repository.insert_job(
                session,
                {
                    "id": job_id,
                    "project": "p1",
                    "model_name": name,
                    "status": "completed",
                    "pool": "cpu",
                    "method": "lora",
                    "hyperparameters": {},
                    "base_model_id": base.id,
                    "dataset_version_id": "d",
                    "request": {},
                    "requested_by": "eve",
                },
            )
            await repository.insert_model_version(
                session,
                {
                    "id": str(uuid.uuid4()),
                    "project": "p1",
                    "name": name,
                    "version": n,
                    "job_id": job_id,
                    "kind": "adapter",
                    "base_model_id": base.id,
                    "manifest_sha256": base.manifest_sha256,
                    "lineage": {"dataset": {"version_id": "d"}, "method": "lora"},
                    "metrics": {"final_loss": 1.0 / n},
                },
            )


class TestModelListing:
    async def test_the_models_are_listed_with_their_aliases_in_one_query_however_many_they_are(
        self, client, training, ready
    ):
        names = ("alpha", "beta", "gamma")
        for name in names:
            await register_versions(training, 2, name=name)
            body = {"version": 2, "reason": "best so far"}
            assert (
                await client.put(f"/projects/p1/models/{name}/aliases/candidate", json=body, headers=ENGINEER)
            ).is_success
        alias_reads: list[str] = []

        def note(conn, cursor, statement, parameters, context, executemany) -> None:
            if "FROM model_aliases" in statement:
                alias_reads.append(statement)

        engine = training.runtime.db.engine.sync_engine
        sqlalchemy.event.listen(engine, "before_cursor_execute", note)
        try:
            listed = (await client.get("/projects/p1/models", headers=VIEWER)).json()
        finally:
            sqlalchemy.event.remove(engine, "before_cursor_execute", note)
        assert [(m["name"], [v["version"] for v in m["versions"]]) for m in listed] == [(n, [1, 2]) for n in names]
        assert all([(a["alias"], a["version"]) for a in m["aliases"]] == [("candidate", 2)] for m in listed)
        assert len(alias_reads) == 1, alias_reads


class TestAliases:
    async def test_an_alias_moves_with_history_and_resolves_to_its_version(self, client, training, ready):
        await register_versions(training)
        for version in (1, 2):
            response = await client.put(
                "/projects/p1/models/tiny-lora/aliases/candidate",
                json={"version": version, "reason": f"try v{version}"},
                headers=ENGINEER,
            )
            assert response.status_code == 200 and response.json()["version"] == version
        resolved = (await client.get("/projects/p1/models/tiny-lora/versions/candidate", headers=VIEWER)).json()
        assert resolved["version"] == 2
        history = (await client.get("/projects/p1/models/tiny-lora/aliases/candidate/history", headers=VIEWER)).json()
        assert [(h["from_version"], h["to_version"]) for h in history] == [(None, 1), (1, 2)]
        moved = [e["data"] for e in await outbox_events(training) if e["type"] == "model.alias.moved"]
        assert [(m["from_version"], m["to_version"]) for m in moved] == [(None, 1), (1, 2)]

    async def test_an_alias_to_a_missing_version_is_404(self, client, training, ready):
        await register_versions(training, 1)
        response = await client.put(
            "/projects/p1/models/tiny-lora/aliases/candidate", json={"version": 5, "reason": "x"}, headers=ENGINEER
        )
        assert response.status_code == 404


class TestPermissions:
    ROUTES = [
        ("get", "/projects/p1/base-models", {}, "read"),
        ("get", "/projects/p1/base-models/tiny", {}, "read"),
        ("post", "/projects/p1/base-models", {"json": {"name": "h", "hub_id": "org/model"}}, "write"),
        ("post", "/projects/p1/training/jobs", {"json": job_body()}, "write"),
        ("get", "/projects/p1/training/jobs", {}, "read"),
        ("get", "/projects/p1/models", {}, "read"),
        ("get", "/projects/p1/models/tiny-lora", {}, "read"),
        ("get", "/projects/p1/models/tiny-lora/versions/1", {}, "read"),
        ("get", "/projects/p1/models/tiny-lora/versions/1/lineage", {}, "read"),
        ("put", "/projects/p1/models/tiny-lora/aliases/candidate", {"json": {"version": 1, "reason": "r"}}, "write"),
        ("get", "/projects/p1/models/tiny-lora/aliases/candidate/history", {}, "read"),
    ]

    @pytest.mark.parametrize(("method", "path", "kwargs", "kind"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
    @pytest.mark.parametrize("role", list(Role))
    async def test_each_route_allows_exactly_its_roles(self, client, training, ready, method, path, kwargs, kind, role):
        await register_versions(training, 1)
        response = await getattr(client, method)(path, headers=bearer(role), **kwargs)
        allowed = {Role.ADMIN, Role.ML_ENGINEER} | ({Role.VIEWER} if kind == "read" else set())
        if role in allowed:
            assert response.status_code < 400, response.text
        else:
            assert response.status_code == 403

    async def test_job_routes_allow_their_roles(self, client, ready):
        job = (await request_job(client)).json()
        for path in ("", "/logs", "/metrics"):
            url = f"/projects/p1/training/jobs/{job['id']}{path}"
            assert (await client.get(url, headers=VIEWER)).status_code == 200
            assert (await client.get(url, headers=STEWARD)).status_code == 403
            assert (await client.get(url)).status_code == 401
        cancel = f"/projects/p1/training/jobs/{job['id']}/cancel"
        assert (await client.post(cancel, headers=VIEWER)).status_code == 403
        assert (await client.post(cancel, headers=ADMIN)).status_code == 200

    @pytest.mark.parametrize(("method", "path", "kwargs", "kind"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
    async def test_each_route_needs_a_token(self, client, method, path, kwargs, kind):
        assert (await getattr(client, method)(path, **kwargs)).status_code == 401

    async def test_another_project_is_refused_and_the_denial_is_an_event(self, client, training, ready):
        other = bearer(Role.ML_ENGINEER, projects=("p2",))
        assert (await request_job(client, headers=other)).status_code == 403
        denials = [e for e in await outbox_events(training) if e["type"] == "security.access.denied"]
        assert denials and denials[-1]["data"]["project"] == "p1"


class TestEdges:
    async def test_a_job_id_shaped_like_a_uuid_but_not_one_is_422(self, client):
        response = await client.get(f"/projects/p1/training/jobs/{'-' * 36}", headers=ENGINEER)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["job_id"]

    async def test_an_offset_past_int64_is_422(self, client):
        response = await client.get("/projects/p1/training/jobs?offset=9223372036854775808", headers=ENGINEER)
        assert response.status_code == 422, response.text
