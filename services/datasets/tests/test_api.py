"""The datasets API on real Postgres, Kafka and S3: formats, bad uploads, versions, diffs, splits, permissions."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from llmops.auth import Role
from llmops.bus import outbox
from llmops_datasets.app import DatasetsService
from llmops_datasets.formats import csv_text
from llmops_datasets.models import dataset_versions

from .conftest import ENGINEER, STEWARD, bearer

pytestmark = pytest.mark.integration

JSONL = "application/jsonl"

ROWS = {
    "chat": [
        {"messages": [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": str(2 * i)}]}
        for i in range(30)
    ],
    "instruction": [{"prompt": f"Translate {i} to words", "completion": f"number {i}"} for i in range(30)],
    "text": [{"text": f"A sentence about item {i}."} for i in range(30)],
    "classification": [{"text": f"review {i}", "label": "positive" if i % 3 else "negative"} for i in range(30)],
}


def jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def parquet(rows) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def csv_rows(rows, row_format: str) -> bytes:
    if row_format == "chat":
        rows = [{"messages": json.dumps(r["messages"])} for r in rows]
    return csv_text(rows).encode()


ENCODERS = {
    "jsonl": (JSONL, lambda rows, fmt: jsonl(rows)),
    "csv": ("text/csv", csv_rows),
    "parquet": ("application/vnd.apache.parquet", lambda rows, fmt: parquet(rows)),
}


async def create(client, name: str, row_format: str, project: str = "p1"):
    response = await client.post(
        f"/projects/{project}/datasets",
        json={"name": name, "format": row_format},
        headers=bearer(Role.DATA_STEWARD, projects=(project,)),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def upload(client, name: str, body, content_type: str = JSONL, project: str = "p1", **params):
    return await client.post(
        f"/projects/{project}/datasets/{name}/versions",
        content=body,
        params=params,
        headers={**bearer(Role.DATA_STEWARD, projects=(project,)), "content-type": content_type},
    )


async def stored_versions(datasets) -> int:
    async with datasets.runtime.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(dataset_versions))


async def pieces(body: bytes, size: int):
    """``body`` sent a piece at a time, as a client streaming a file does."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


class TestIngestWorkers:
    async def test_the_service_s_workers_store_what_its_thread_stores(self, client, datasets_settings, monkeypatch):
        monkeypatch.setattr("llmops_datasets.parallel.BLOCK_BYTES", 32 * 1024)  # a small upload is many blocks
        rows = [
            {
                "messages": [
                    {"role": "user", "content": f"  question {i % 700}  "},
                    {"role": "assistant", "content": "a"},
                ]
            }
            for i in range(6000)
        ]
        body = jsonl(rows)
        assert len(body) > 10 * 32 * 1024
        await create(client, "threaded", "chat")
        threaded = (await upload(client, "threaded", body)).json()

        service = DatasetsService(datasets_settings.model_copy(update={"ingest_workers": 2}))
        await service.start()
        try:
            pool, blocks = service.app.state.ingest_pool, []
            submit = pool.submit
            monkeypatch.setattr(pool, "submit", lambda task, owner=None: blocks.append(task) or submit(task, owner))
            transport = httpx.ASGITransport(app=service.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as workers_client:
                await create(workers_client, "in-workers", "chat")
                response = await upload(workers_client, "in-workers", pieces(body, 16 * 1024))
        finally:
            await service.stop()
        assert response.status_code == 201, response.text
        in_workers = response.json()
        assert len(blocks) > 10 and all(process.poll() is not None for process in pool.processes)
        for key in ("sha256", "row_count", "stats", "cleaning", "splits", "size_bytes"):
            assert in_workers[key] == threaded[key], key
        assert threaded["cleaning"]["duplicates_removed"] == 6000 - 700


class TestFormatsAndFileTypes:
    @pytest.mark.parametrize("file_type", ["jsonl", "csv", "parquet"])
    @pytest.mark.parametrize("row_format", ["chat", "instruction", "text", "classification"])
    async def test_each_format_uploads_from_each_file_type(self, client, row_format, file_type):
        await create(client, "d", row_format)
        content_type, encode = ENCODERS[file_type]
        response = await upload(client, "d", encode(ROWS[row_format], row_format), content_type)
        assert response.status_code == 201, response.text
        version = response.json()
        assert (version["version"], version["row_count"], version["source_type"]) == (1, 30, file_type)
        assert version["uri"].endswith(version["sha256"])
        assert sum(version["splits"]["counts"].values()) == 30
        preview = (
            await client.get("/projects/p1/datasets/d/versions/1/preview", params={"rows": 3}, headers=ENGINEER)
        ).json()
        assert preview == [json.loads(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)) for r in ROWS[row_format][:3]]

    async def test_the_same_rows_in_another_file_type_are_the_same_version(self, client):
        await create(client, "d", "instruction")
        first = await upload(client, "d", jsonl(ROWS["instruction"]))
        second = await upload(client, "d", parquet(ROWS["instruction"]), "application/vnd.apache.parquet")
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["id"] == second.json()["id"]

    async def test_stats_describe_labels_and_roles(self, client):
        await create(client, "reviews", "classification")
        stats = (await upload(client, "reviews", jsonl(ROWS["classification"]))).json()["stats"]
        assert stats["labels"] == {"negative": 10, "positive": 20}
        await create(client, "chats", "chat")
        stats = (await upload(client, "chats", jsonl(ROWS["chat"]))).json()["stats"]
        assert stats["roles"] == {"assistant": 30, "user": 30} and stats["messages_per_row"] == 2


class TestBadUploads:
    @pytest.mark.parametrize(
        ("body", "line", "field"),
        [
            (b'{"prompt": "a", "completion": "b"}\n{"prompt": "broken\n', 2, "<row>"),
            (b'{"prompt": "a", "completion": "b"}\n{"prompt": "no completion"}\n', 2, "completion"),
            (b'{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": 3}\n', 2, "completion"),
        ],
        ids=["broken-json-line", "missing-field", "wrong-type"],
    )
    async def test_a_malformed_row_is_reported_by_line_and_field_and_nothing_is_stored(
        self, client, datasets, body, line, field
    ):
        await create(client, "d", "instruction")
        response = await upload(client, "d", body)
        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["line"] == line and problem["errors"][0]["field"] == field
        assert f"line {line}" in problem["detail"]
        assert await stored_versions(datasets) == 0

    async def test_a_wrong_role_in_a_chat_row_is_reported(self, client, datasets):
        await create(client, "d", "chat")
        body = jsonl([ROWS["chat"][0], {"messages": [{"role": "wizard", "content": "hi"}]}])
        problem = (await upload(client, "d", body)).json()
        assert problem["errors"][0] == problem["errors"][0] | {"line": 2, "field": "messages.0.role"}
        assert await stored_versions(datasets) == 0

    async def test_keep_valid_stores_the_valid_rows_and_records_the_rest(self, client):
        await create(client, "d", "text")
        body = jsonl([{"text": "fine"}, {"txt": "typo"}, {"text": "also fine"}])
        response = await upload(client, "d", body, keep_valid="true")
        assert response.status_code == 201
        version = response.json()
        assert (version["row_count"], version["invalid_rows_dropped"]) == (2, 1)
        assert version["errors"][0]["line"] == 2

    async def test_an_empty_file_is_refused(self, client, datasets):
        await create(client, "d", "text")
        response = await upload(client, "d", b"")
        assert response.status_code == 422 and "empty" in response.json()["detail"]
        assert await stored_versions(datasets) == 0

    async def test_a_wrong_content_type_is_415(self, client):
        await create(client, "d", "text")
        response = await upload(client, "d", b"hello", "application/pdf")
        assert response.status_code == 415
        assert response.headers["content-type"] == "application/problem+json"

    async def test_a_file_over_the_limit_is_413_and_nothing_is_stored(self, client, datasets):
        await create(client, "d", "text")
        big = jsonl({"text": "x" * 1000 + str(i)} for i in range(3000))  # about 3 MB, the limit is 2 MiB
        response = await upload(client, "d", big)
        assert response.status_code == 413
        assert await stored_versions(datasets) == 0

    async def test_a_file_over_the_limit_without_content_length_is_413_while_streaming(self, client, datasets):
        await create(client, "d", "text")

        async def chunks():
            for i in range(3000):
                yield orjson.dumps({"text": "y" * 1000 + str(i)}) + b"\n"

        response = await client.post(
            "/projects/p1/datasets/d/versions", content=chunks(), headers={**STEWARD, "content-type": JSONL}
        )
        assert response.status_code == 413
        assert await stored_versions(datasets) == 0

    async def test_bad_options_are_422_naming_the_field(self, client):
        await create(client, "d", "text")
        response = await upload(client, "d", jsonl(ROWS["text"]), train="0.5", validation="0.1", test="0.1")
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "test"
        response = await upload(client, "d", jsonl(ROWS["text"]), redact_pii="email,dna")
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "redact_pii"
        response = await upload(client, "d", jsonl(ROWS["text"]), redact_pii="all", pii_locales="fr_FR,pt_BR")
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "pii_locales"
        assert "pt_BR" in response.json()["errors"][0]["message"]


@pytest.fixture(params=["thread", "workers"])
def blocks(request, datasets, monkeypatch):
    """How JSONL uploads are cleaned: in a thread of the service (None), or by ingest workers in blocks of 1 KiB (the
    blocks submitted, so that a test can see a small file was cut into several)."""
    if request.param == "thread":
        yield None
        return
    pool, submitted = request.getfixturevalue("ingest_pool"), []
    submit = pool.submit
    monkeypatch.setattr("llmops_datasets.parallel.BLOCK_BYTES", 1024)
    monkeypatch.setattr(pool, "submit", lambda task, owner=None: submitted.append(task) or submit(task, owner))
    datasets.app.state.ingest_pool = pool
    try:
        yield submitted
    finally:
        datasets.app.state.ingest_pool = None  # the pool is the session's: the service must not close it


def in_blocks(blocks: list | None) -> bool:
    return blocks is None or len(blocks) > 2


INSTRUCTIONS = [{"prompt": f"Translate {i} to words, please", "completion": f"number {i}"} for i in range(40)]
BOM = b"\xef\xbb\xbf"


def instructions_csv(delimiter: str = ",", rows=INSTRUCTIONS) -> str:
    """A CSV of instruction rows as a spreadsheet writes one (CRLF line ends), with the given delimiter."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["prompt", "completion"], delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class TestFilesAsPeopleMakeThem:
    async def test_a_csv_with_a_byte_order_mark_stores_what_it_stores_without(self, client):
        await create(client, "plain", "instruction")
        await create(client, "bom", "instruction")
        plain = await upload(client, "plain", instructions_csv().encode(), "text/csv")
        bom = await upload(client, "bom", BOM + instructions_csv().encode(), "text/csv")
        assert (plain.status_code, bom.status_code) == (201, 201), bom.text
        assert bom.json()["sha256"] == plain.json()["sha256"] and bom.json()["row_count"] == 40

    async def test_a_jsonl_file_with_a_byte_order_mark_stores_what_it_stores_without(self, client, blocks):
        await create(client, "plain", "instruction")
        await create(client, "bom", "instruction")
        plain = await upload(client, "plain", jsonl(INSTRUCTIONS))
        bom = await upload(client, "bom", pieces(BOM + jsonl(INSTRUCTIONS), 256))
        assert (plain.status_code, bom.status_code) == (201, 201), bom.text
        assert bom.json()["sha256"] == plain.json()["sha256"] and bom.json()["row_count"] == 40
        assert in_blocks(blocks)

    async def test_a_latin1_csv_is_refused_naming_the_line_and_nothing_is_stored(self, client, datasets):
        await create(client, "d", "instruction")
        rows = [*INSTRUCTIONS[:1], {"prompt": "un café", "completion": "a coffee"}, *INSTRUCTIONS[1:]]
        response = await upload(client, "d", instructions_csv(rows=rows).encode("latin-1"), "text/csv")
        assert response.status_code == 422, response.text
        problem = response.json()
        assert "line 3 is not valid UTF-8 (byte 0xe9 at column 7)" in problem["detail"]
        assert "re-save it as UTF-8" in problem["detail"] and problem["errors"][0]["line"] == 3
        assert await stored_versions(datasets) == 0

    async def test_a_latin1_jsonl_file_is_refused_naming_the_line_and_nothing_is_stored(self, client, datasets, blocks):
        await create(client, "d", "instruction")
        rows = [*INSTRUCTIONS[:30], {"prompt": "un café", "completion": "a coffee"}, *INSTRUCTIONS[30:]]
        body = b"".join(orjson.dumps(r).decode().encode("latin-1") + b"\n" for r in rows)
        response = await upload(client, "d", pieces(body, 256))
        assert response.status_code == 422, response.text
        assert "line 31 is not valid UTF-8 (byte 0xe9 at column 18)" in response.json()["detail"]
        assert await stored_versions(datasets) == 0 and in_blocks(blocks)

    async def test_keep_valid_does_not_store_the_rest_of_a_file_that_is_not_utf8(self, client, datasets):
        await create(client, "d", "text")
        body = '{"text": "fine"}\n{"text": "café"}\n'.encode("latin-1")
        response = await upload(client, "d", body, keep_valid="true")
        assert response.status_code == 422 and "line 2 is not valid UTF-8" in response.json()["detail"]
        assert await stored_versions(datasets) == 0

    @pytest.mark.parametrize(
        ("encoding", "why"),
        [("utf-16", "it starts with a UTF-16 byte-order mark"), ("utf-16-le", "NUL bytes between its characters")],
    )
    async def test_a_utf16_jsonl_file_is_refused_and_nothing_is_stored(self, client, datasets, blocks, encoding, why):
        await create(client, "d", "instruction")
        response = await upload(client, "d", pieces(jsonl(INSTRUCTIONS).decode().encode(encoding), 256))
        assert response.status_code == 422, response.text
        assert f"line 1 is not UTF-8: the file looks like UTF-16 ({why})" in response.json()["detail"]
        assert await stored_versions(datasets) == 0 and in_blocks(blocks)

    @pytest.mark.parametrize(
        ("encoding", "why"),
        [("utf-16", "it starts with a UTF-16 byte-order mark"), ("utf-16-be", "NUL bytes between its characters")],
    )
    async def test_a_utf16_csv_is_refused_and_nothing_is_stored(self, client, datasets, encoding, why):
        await create(client, "d", "instruction")
        response = await upload(client, "d", instructions_csv().encode(encoding), "text/csv")
        assert response.status_code == 422, response.text
        assert f"line 1 is not UTF-8: the file looks like UTF-16 ({why})" in response.json()["detail"]
        assert await stored_versions(datasets) == 0

    async def test_a_semicolon_csv_is_read_at_its_semicolons(self, client):
        await create(client, "commas", "instruction")
        await create(client, "semicolons", "instruction")
        commas = await upload(client, "commas", instructions_csv(",").encode(), "text/csv")
        semicolons = await upload(client, "semicolons", instructions_csv(";").encode(), "text/csv")
        assert (commas.status_code, semicolons.status_code) == (201, 201), semicolons.text
        assert semicolons.json()["sha256"] == commas.json()["sha256"]

    @pytest.mark.parametrize("delimiter", [";", "\t", "|"])
    async def test_a_named_delimiter_reads_the_file_at_it(self, client, delimiter):
        await create(client, "d", "instruction")
        response = await upload(client, "d", instructions_csv(delimiter).encode(), "text/csv", delimiter=delimiter)
        assert response.status_code == 201, response.text
        assert response.json()["row_count"] == 40

    async def test_a_single_column_holding_commas_is_read_whole_at_a_named_delimiter(self, client):
        await create(client, "d", "text")
        body = b"text\r\nfirst, with a comma\r\nsecond\r\n"
        assert (await upload(client, "d", body, "text/csv")).status_code == 422  # at commas: two columns
        response = await upload(client, "d", body, "text/csv", delimiter="\t")
        assert response.status_code == 201, response.text
        preview = await client.get("/projects/p1/datasets/d/versions/1/preview", headers=ENGINEER)
        assert preview.json() == [{"text": "first, with a comma"}, {"text": "second"}]

    async def test_a_named_delimiter_that_misses_the_columns_names_the_one_that_gives_them(self, client, datasets):
        await create(client, "d", "instruction")
        response = await upload(client, "d", instructions_csv(";").encode(), "text/csv", delimiter="|")
        assert response.status_code == 422
        assert "split at semicolons it has them: pass delimiter=;" in response.json()["detail"]
        assert await stored_versions(datasets) == 0

    async def test_a_header_no_delimiter_gives_names_the_delimiter_it_seems_to_use(self, client, datasets):
        await create(client, "d", "instruction")
        response = await upload(client, "d", b"prompt;answer\r\na;b\r\n", "text/csv")
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert "lacks the column(s) completion: its columns are 'prompt', 'answer', split at semicolons" in detail
        assert "delimiter=" in detail and await stored_versions(datasets) == 0

    async def test_a_delimiter_other_than_the_four_is_422_naming_the_field(self, client):
        await create(client, "d", "instruction")
        response = await upload(client, "d", instructions_csv(":").encode(), "text/csv", delimiter=":")
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "delimiter"


class TestVersions:
    async def test_a_changed_file_gives_a_new_version_with_the_right_diff(self, client):
        await create(client, "d", "text")
        first = (await upload(client, "d", jsonl(ROWS["text"]))).json()
        changed = ROWS["text"][5:] + [{"text": f"new row {i}"} for i in range(7)]  # 5 removed, 7 added
        second = (await upload(client, "d", jsonl(changed))).json()
        assert second["version"] == 2 and second["parent_version_id"] == first["id"]
        assert second["diff"] == {"added": 7, "removed": 5, "unchanged": 25}

    async def test_cleaning_normalises_removes_empty_and_duplicate_rows_and_reports_it(self, client):
        await create(client, "d", "text")
        rows = [{"text": "  Caf\u0065\u0301   au   lait  "}, {"text": "Café au lait"}, {"text": "   "}, {"text": "ok"}]
        version = (await upload(client, "d", jsonl(rows))).json()
        cleaning = version["cleaning"]
        assert (cleaning["rows_read"], cleaning["rows_kept"]) == (4, 2)
        assert (cleaning["empty_removed"], cleaning["duplicates_removed"]) == (1, 1)
        preview = (await client.get("/projects/p1/datasets/d/versions/1/preview", headers=STEWARD)).json()
        assert preview == [{"text": "Café au lait"}, {"text": "ok"}]

    async def test_length_filters_and_pii_redaction_are_applied_and_counted(self, client):
        await create(client, "d", "text")
        rows = [{"text": "mail me at jane.doe@example.com"}, {"text": "hi"}, {"text": "x" * 500}]
        version = (await upload(client, "d", jsonl(rows), min_chars="3", max_chars="100", redact_pii="all")).json()
        cleaning = version["cleaning"]
        assert (cleaning["too_short_removed"], cleaning["too_long_removed"]) == (1, 1)
        assert cleaning["pii_redacted"] == {"email": 1}
        preview = (await client.get("/projects/p1/datasets/d/versions/1/preview", headers=STEWARD)).json()
        assert "jane.doe@example.com" not in preview[0]["text"]

    async def test_pii_locales_choose_the_national_formats_redacted_and_are_recorded(self, client):
        await create(client, "d", "text")
        rows = [{"text": "see 06 12 34 56 78"}, {"text": "CF BTTLVI90R59G204H"}]
        version = (await upload(client, "d", jsonl(rows), redact_pii="all", pii_locales="en_US")).json()
        assert version["cleaning"]["pii_redacted"] == {}
        assert version["cleaning"]["config"]["pii_locales"] == ["en_US"]
        await create(client, "e", "text")
        version = (await upload(client, "e", jsonl(rows), redact_pii="phone,national_id")).json()
        assert version["cleaning"]["pii_redacted"] == {"national_id": 1, "phone": 1}
        assert version["cleaning"]["rows_with_pii"] == 2
        assert len(version["cleaning"]["config"]["pii_locales"]) == 7  # all supported by default

    async def test_splits_are_deterministic_disjoint_and_complete(self, client):
        await create(client, "d", "text")
        rows = [{"text": f"row {i}"} for i in range(300)]
        version = (await upload(client, "d", jsonl(rows), seed="7")).json()
        parts = {}
        for split in ("train", "validation", "test"):
            response = await client.get(
                "/projects/p1/datasets/d/versions/1/download", params={"split": split}, headers=ENGINEER
            )
            parts[split] = [line for line in response.content.splitlines() if line]
            assert len(parts[split]) == version["splits"]["counts"][split]
        everything = (await client.get("/projects/p1/datasets/d/versions/1/download", headers=ENGINEER)).content
        assert sorted(line for part in parts.values() for line in part) == sorted(everything.splitlines())
        assert 200 < len(parts["train"]) < 280

    async def test_a_presigned_url_serves_the_version(self, client):
        import urllib.request

        await create(client, "d", "text")
        version = (await upload(client, "d", jsonl(ROWS["text"]))).json()
        answer = (
            await client.get(
                "/projects/p1/datasets/d/versions/1/download", params={"presigned": "true"}, headers=ENGINEER
            )
        ).json()

        def fetch() -> bytes:
            with urllib.request.urlopen(answer["url"], timeout=10) as response:  # noqa: S310 (local test store)
                return response.read()

        body = await asyncio.to_thread(fetch)
        assert body.count(b"\n") == version["row_count"] and answer["sha256"] == version["sha256"]

    async def test_a_deprecated_version_stays_readable_and_is_marked(self, client):
        await create(client, "d", "text")
        await upload(client, "d", jsonl(ROWS["text"]))
        response = await client.post(
            "/projects/p1/datasets/d/versions/1/deprecate", json={"reason": "label noise"}, headers=STEWARD
        )
        assert response.status_code == 200 and response.json()["deprecation_reason"] == "label noise"
        again = await client.post("/projects/p1/datasets/d/versions/1/deprecate", json={"reason": "x"}, headers=STEWARD)
        assert again.status_code == 409
        assert (await client.get("/projects/p1/datasets/d/versions/1/preview", headers=ENGINEER)).status_code == 200

    async def test_list_search_and_show(self, client):
        await create(client, "support-chats", "chat")
        await create(client, "reviews", "classification")
        await upload(client, "reviews", jsonl(ROWS["classification"]))
        listed = (await client.get("/projects/p1/datasets", params={"q": "review"}, headers=ENGINEER)).json()
        assert [(d["name"], d["latest_version"]) for d in listed] == [("reviews", 1)]
        shown = (await client.get("/projects/p1/datasets/reviews", headers=ENGINEER)).json()
        assert [v["version"] for v in shown["versions"]] == [1]

    async def test_events_are_written_for_creation_versions_and_deprecation(self, client, datasets):
        await create(client, "d", "text")
        await upload(client, "d", jsonl(ROWS["text"]))
        await upload(client, "d", jsonl(ROWS["text"]))  # the same content: no new version, no event
        await client.post("/projects/p1/datasets/d/versions/1/deprecate", json={"reason": "r"}, headers=STEWARD)
        async with datasets.runtime.db.sessions() as session:
            payloads = [
                orjson.loads(p)
                for p in (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
            ]
        assert [p["type"] for p in payloads] == [
            "dataset.created",
            "dataset.version.created",
            "dataset.version.deprecated",
        ]
        created = payloads[1]["data"]
        assert created["row_count"] == 30 and created["uri"].endswith(created["sha256"])
        assert payloads[1]["actor"] == "dana" and payloads[1]["project"] == "p1"


class TestPermissions:
    ROUTES = [
        ("post", "/projects/p1/datasets", {"json": {"name": "x", "format": "text"}}, "write"),
        ("get", "/projects/p1/datasets", {}, "read"),
        ("get", "/projects/p1/datasets/d", {}, "read"),
        ("post", "/projects/p1/datasets/d/versions", {"content": b'{"text": "a"}\n'}, "write"),
        ("get", "/projects/p1/datasets/d/versions/1", {}, "read"),
        ("get", "/projects/p1/datasets/d/versions/1/preview", {}, "read"),
        ("get", "/projects/p1/datasets/d/versions/1/download", {}, "read"),
        ("post", "/projects/p1/datasets/d/versions/1/deprecate", {"json": {"reason": "r"}}, "write"),
    ]

    @pytest.fixture
    async def seeded(self, client):
        await create(client, "d", "text")
        assert (await upload(client, "d", jsonl(ROWS["text"]))).status_code == 201

    @pytest.mark.parametrize(("method", "path", "kwargs", "kind"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
    @pytest.mark.parametrize("role", list(Role))
    async def test_each_route_allows_exactly_its_roles(self, client, seeded, method, path, kwargs, kind, role):
        headers = {**bearer(role), **({"content-type": JSONL} if "content" in kwargs else {})}
        response = await getattr(client, method)(path, headers=headers, **kwargs)
        allowed = {Role.ADMIN, Role.DATA_STEWARD} | ({Role.ML_ENGINEER, Role.VIEWER} if kind == "read" else set())
        if role in allowed:
            assert response.status_code < 400, response.text
        else:
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize(("method", "path", "kwargs", "kind"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
    async def test_each_route_needs_a_token(self, client, method, path, kwargs, kind):
        assert (await getattr(client, method)(path, **kwargs)).status_code == 401

    async def test_nobody_sees_another_project(self, client, seeded):
        other = bearer(Role.DATA_STEWARD, projects=("p2",))
        for path in ("/projects/p1/datasets", "/projects/p1/datasets/d", "/projects/p1/datasets/d/versions/1"):
            assert (await client.get(path, headers=other)).status_code == 403

    async def test_bad_input_is_422(self, client):
        response = await client.post(
            "/projects/p1/datasets", json={"name": "Bad Name!", "format": "text"}, headers=STEWARD
        )
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name"
        response = await client.post("/projects/p1/datasets", json={"name": "ok", "format": "audio"}, headers=STEWARD)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "format"


class TestEdges:
    async def test_a_version_past_int32_or_an_offset_past_int64_is_422_naming_it(self, client):
        response = await client.get("/projects/p1/datasets/any/versions/2147483648", headers=ENGINEER)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["version"]
        response = await client.get("/projects/p1/datasets?offset=9223372036854775808", headers=ENGINEER)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["offset"]

    async def test_a_nul_in_the_search_is_422(self, client):
        response = await client.get("/projects/p1/datasets?q=%00", headers=ENGINEER)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["q"]
