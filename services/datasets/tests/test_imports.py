"""Importing a version from the object store, on real Postgres, Kafka and S3: by API (the same version as an upload
of the same bytes; refused URIs) and by event (dataset and version created and announced with the import id, once per
import id; a malformed request dead-lettered, a refused one answered with dataset.import.failed)."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy import select

from llmops.auth import Role
from llmops.bus import make_admin, make_consumer, outbox
from llmops.bus.dead_letters import DeadLetterReader, Selection
from llmops.settings import KafkaSettings
from llmops.storage import key_for
from llmops.testing import caught_up
from llmops_datasets.app import DatasetsService
from llmops_schemas import new_event, topics
from llmops_schemas.events import DatasetImportRequested

from .conftest import ENGINEER, STEWARD, bearer
from .test_api import ROWS, create, jsonl, upload

pytestmark = pytest.mark.integration


async def import_(client, name: str, body: dict, headers=STEWARD):
    return await client.post(f"/projects/p1/datasets/{name}/imports", json=body, headers=headers)


class TestImportByApi:
    async def test_an_imported_object_is_the_version_an_upload_of_its_bytes_is(self, client, datasets):
        data = jsonl(ROWS["text"] + ROWS["text"][:3] + [{"text": "mail me at a@example.com"}])
        stored = await datasets.runtime.store.put_bytes(data)
        await create(client, "uploaded", "text")
        uploaded = await upload(client, "uploaded", data, redact_pii="email", train=0.5, validation=0.25, test=0.25)
        assert uploaded.status_code == 201, uploaded.text
        options = {"redact_pii": "email", "train": 0.5, "validation": 0.25, "test": 0.25}
        imported = await import_(client, "imported", {"uri": stored.uri, "format": "text", **options})
        assert imported.status_code == 201, imported.text
        u, i = uploaded.json(), imported.json()
        same = ("sha256", "uri", "row_count", "stats", "splits", "cleaning", "source_type")
        assert {k: i[k] for k in same} == {k: u[k] for k in same}
        assert i["cleaning"]["pii_redacted"] == {"email": 1} and i["row_count"] == 31
        again = await import_(client, "imported", {"uri": stored.uri, "sha256": stored.sha256, **options})
        assert again.status_code == 200 and again.json()["id"] == i["id"]

    async def test_an_import_into_an_existing_dataset_records_its_parent(self, client, datasets):
        await create(client, "d", "text")
        first = await upload(client, "d", jsonl(ROWS["text"][:10]))
        stored = await datasets.runtime.store.put_bytes(jsonl(ROWS["text"]))
        imported = await import_(client, "d", {"uri": stored.uri})
        assert imported.status_code == 201, imported.text
        assert imported.json()["parent_version_id"] == first.json()["id"]
        assert imported.json()["diff"] == {"added": 20, "removed": 0, "unchanged": 10}

    @pytest.mark.parametrize(
        "uri",
        [
            "http://127.0.0.1:8333/{bucket}/{key}",
            "file:///etc/passwd",
            "s3://another-bucket/{key}",
            "s3://{bucket}/sha256/{prefix}/../../{key}",
            "s3://{bucket}/incoming/{sha}",
            "s3://{bucket}/{missing}",
        ],
    )
    async def test_a_uri_other_than_a_stored_object_of_the_store_is_422_naming_uri(self, client, datasets, uri):
        stored = await datasets.runtime.store.put_bytes(jsonl(ROWS["text"]))
        missing = key_for(uuid.uuid4().hex * 2)
        uri = uri.format(
            bucket=datasets.runtime.store.bucket,
            key=stored.key,
            sha=stored.sha256,
            prefix=stored.sha256[:2],
            missing=missing,
        )
        response = await import_(client, "d", {"uri": uri, "format": "text"})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in response.json()["errors"]] == ["uri"]
        assert (await client.get("/projects/p1/datasets/d", headers=ENGINEER)).status_code == 404  # nothing created

    async def test_a_sha256_other_than_the_object_s_is_422_naming_it(self, client, datasets):
        stored = await datasets.runtime.store.put_bytes(jsonl(ROWS["text"]))
        response = await import_(client, "d", {"uri": stored.uri, "sha256": "0" * 64, "format": "text"})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "sha256"

    async def test_an_object_over_the_upload_limit_is_413(self, client, datasets, datasets_settings):
        stored = await datasets.runtime.store.put_bytes(b"x" * (datasets_settings.max_upload_bytes + 1))
        response = await import_(client, "d", {"uri": stored.uri, "format": "text"})
        assert response.status_code == 413, response.text

    async def test_invalid_rows_are_refused_as_in_an_upload(self, client, datasets):
        stored = await datasets.runtime.store.put_bytes(jsonl([{"text": "ok"}, {"prompt": "wrong format"}]))
        response = await import_(client, "d", {"uri": stored.uri, "format": "text"})
        assert response.status_code == 422 and response.json()["invalid_rows"] == 1
        kept = await import_(client, "d", {"uri": stored.uri, "keep_valid": True})
        assert kept.status_code == 201 and kept.json()["invalid_rows_dropped"] == 1

    async def test_a_missing_dataset_without_a_format_is_404_and_another_format_is_422(self, client, datasets):
        stored = await datasets.runtime.store.put_bytes(jsonl(ROWS["text"]))
        assert (await import_(client, "d", {"uri": stored.uri})).status_code == 404
        await create(client, "d", "text")
        response = await import_(client, "d", {"uri": stored.uri, "format": "chat"})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "format"

    async def test_bad_options_are_422_naming_the_field(self, client):
        response = await import_(client, "d", {"uri": "s3://x", "train": 0.9})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "test"
        response = await import_(client, "d", {"uri": "s3://x", "unknown": 1})
        assert response.status_code == 422

    async def test_it_needs_a_token_and_the_write_permission(self, client, datasets):
        stored = await datasets.runtime.store.put_bytes(jsonl(ROWS["text"]))
        body = {"uri": stored.uri, "format": "text"}
        assert (await client.post("/projects/p1/datasets/d/imports", json=body)).status_code == 401
        assert (await import_(client, "d", body, headers=ENGINEER)).status_code == 403
        assert (
            await import_(client, "d", body, headers=bearer(Role.DATA_STEWARD, projects=("p2",)))
        ).status_code == 403


# -- by event -----------------------------------------------------------------------------------------------------
async def start_at_end(group: str, topic: str) -> None:
    """Commit ``group``'s offsets at the end of ``topic``: the consumer reads what is published from now on, none of
    the shared topic's history, and needs no wait for its partitions to be assigned."""
    admin = make_admin(client_id="tests-datasets-imports")
    consumer = make_consumer(client_id="tests-datasets-imports", group_id=group, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        described = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()
        await admin.close()


@pytest.fixture
async def importer(datasets_settings):
    await start_at_end(datasets_settings.consumer_group, topics.DATASETS)
    service = DatasetsService(datasets_settings)
    await service.start()
    yield service
    await service.stop()


#: The event tests' project: their requests stay on the shared topic, where no other run's service should mistake them.
PROJECT = f"proj-{uuid.uuid4().hex[:8]}"


def request(project: str, uri: str, **overrides) -> DatasetImportRequested:
    values = {
        "import_id": f"imp-{uuid.uuid4().hex}",
        "project": project,
        "dataset": "qa",
        "format": "instruction",
        "uri": uri,
        "requested_by": "pipeline-7",
        "options": {"train": 0.5, "validation": 0.5, "test": 0.0},
    }
    return DatasetImportRequested(**(values | overrides))


async def publish(*values: bytes, key: bytes = b"qa") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KafkaSettings().bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topics.DATASETS, value, key=key)
    finally:
        await producer.stop()


def as_event(payload: DatasetImportRequested) -> bytes:
    return new_event(payload, subject=payload.dataset, source="/tests", project=payload.project).to_bytes()


async def answers(service, import_id: str) -> list[dict]:
    """The events the service wrote to its outbox that carry ``import_id``."""
    async with service.runtime.db.sessions() as session:
        rows = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        return [e for e in map(orjson.loads, rows) if e["data"].get("import_id") == import_id]


async def answered(service, import_id: str, within: float = 90) -> list[dict]:
    deadline = time.monotonic() + within
    while not (found := await answers(service, import_id)):
        assert time.monotonic() < deadline, f"import {import_id} was not answered"
        await asyncio.sleep(0.2)
    return found


class TestImportByEvent:
    async def test_a_request_creates_the_dataset_and_version_announced_with_its_import_id(self, importer):
        stored = await importer.runtime.store.put_bytes(jsonl(ROWS["instruction"]))
        asked = request(PROJECT, stored.uri)
        await publish(as_event(asked))
        [created] = await answered(importer, asked.import_id)
        assert created["type"] == "dataset.version.created" and created["actor"] == "pipeline-7"
        assert created["data"]["row_count"] == 30 and created["data"]["name"] == "qa"
        assert created["data"]["splits"]["test"] == 0.0
        async with importer.runtime.db.sessions() as session:
            types = [orjson.loads(p)["type"] for p in (await session.execute(select(outbox.c.payload))).scalars()]
        assert types.count("dataset.created") == 1

    async def test_the_same_import_id_twice_makes_one_version_and_one_answer(self, importer):
        stored = await importer.runtime.store.put_bytes(jsonl(ROWS["instruction"]))
        asked = request(PROJECT, stored.uri)
        await publish(as_event(asked), as_event(asked))  # two events (two ids), one import id
        await answered(importer, asked.import_id)
        await caught_up(importer.settings.consumer_group, [topics.DATASETS])
        assert len(await answers(importer, asked.import_id)) == 1
        # Another import id of the same content: the same version, announced again for that import.
        other = request(PROJECT, stored.uri)
        await publish(as_event(other))
        [again] = await answered(importer, other.import_id)
        [first] = await answers(importer, asked.import_id)
        assert again["data"]["version_id"] == first["data"]["version_id"] and again["data"]["version"] == 1

    @pytest.mark.parametrize(
        ("uri", "rows", "reason"),
        [
            ("file:///etc/passwd", None, "uri: not an object of this store"),
            ("stored", [{"text": "not an instruction"}], "row(s) do not match the dataset's format"),
        ],
        ids=["a refused uri", "invalid rows"],
    )
    async def test_a_refused_request_is_answered_with_import_failed(self, importer, uri, rows, reason):
        if uri == "stored":
            uri = (await importer.runtime.store.put_bytes(jsonl(rows))).uri
        asked = request(PROJECT, uri)
        await publish(as_event(asked))
        [failed] = await answered(importer, asked.import_id)
        assert failed["type"] == "dataset.import.failed" and failed["subject"] == "qa"
        assert reason in failed["data"]["reason"]
        await publish(as_event(asked))  # asked again: answered already, nothing new
        await caught_up(importer.settings.consumer_group, [topics.DATASETS])
        assert len(await answers(importer, asked.import_id)) == 1

    async def test_a_malformed_request_goes_to_the_dead_letter_topic_with_its_reason(self, importer):
        bad = new_event(request(PROJECT, "s3://x"), subject="qa", source="/tests").model_dump(mode="json")
        del bad["data"]["uri"]
        good = request(PROJECT, "file:///after-the-bad-one")
        await publish(orjson.dumps(bad), as_event(good))
        await answered(importer, good.import_id)  # the consumer carries on
        deadline = time.monotonic() + 90
        while not (letters := await dead_letters(importer.settings.consumer_group, bad["id"])):
            assert time.monotonic() < deadline, "the malformed request was not dead-lettered"
            await asyncio.sleep(0.5)
        assert [letter.reason for letter in letters] == ["invalid_data"]
        assert "uri" in letters[0].error


async def dead_letters(consumer: str, event_id: str) -> list:
    async with DeadLetterReader(client_id="tests-datasets-dlq") as reader:
        return [
            letter async for letter in reader.scan(Selection(consumer=consumer)) if event_id in letter.value.decode()
        ]
