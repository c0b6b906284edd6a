from pathlib import Path

from llmops_schemas.export import main, render_schemas, stale_files
from llmops_schemas.topics import ALL_TOPICS, DEAD_LETTER

COMMITTED = Path(__file__).resolve().parents[1] / "json"


def test_the_committed_json_schemas_are_up_to_date():
    assert stale_files(COMMITTED) == [], "run: make schemas"


def test_a_changed_file_is_reported_stale(tmp_path):
    main([str(tmp_path)])
    (tmp_path / "cloudevent.schema.json").write_text("{}")
    (tmp_path / "gone.v1.schema.json").write_text("{}")
    assert stale_files(tmp_path) == ["cloudevent.schema.json", "gone.v1.schema.json"]
    assert main([str(tmp_path), "--check"]) == 1


def test_every_payload_names_a_registered_topic():
    for name, text in render_schemas().items():
        if name != "cloudevent.schema.json":
            assert any(f'"x-topic": "{t}"' in text for t in ALL_TOPICS), name


def test_the_dead_letter_topic_is_created_with_the_others():
    assert DEAD_LETTER in ALL_TOPICS


def test_the_envelope_schema_requires_what_cloudevents_requires():
    import json

    required = json.loads(render_schemas()["cloudevent.schema.json"])["required"]
    assert {"id", "specversion", "source", "type"} <= set(required)


def test_the_committed_asyncapi_document_is_up_to_date():
    from llmops_schemas import asyncapi

    assert asyncapi.main([str(COMMITTED.parent / "asyncapi.json"), "--check"]) == 0, "run: make schemas"


def test_the_asyncapi_document_has_every_topic_and_event_and_its_references_resolve(tmp_path):
    import json

    from llmops_schemas import asyncapi
    from llmops_schemas.envelope import PAYLOADS

    document = asyncapi.render()
    assert document["asyncapi"] == "3.0.0"
    assert {c["address"] for c in document["channels"].values()} == set(ALL_TOPICS)
    platform = {t for t, m in PAYLOADS.items() if m.__module__.startswith("llmops_schemas.")}
    listed = {name for c in document["channels"].values() for name in c["messages"]} - {"deadLetter"}
    assert listed == platform
    for channel in document["channels"].values():  # each message sits on its own topic
        for name in channel["messages"]:
            if name != "deadLetter":
                assert PAYLOADS[name].topic == channel["address"], name
    refs = []

    def walk(node):
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for ref in refs:
        if ref.startswith("#/"):
            target = document
            for part in ref[2:].split("/"):
                target = target[part]
        else:
            assert (COMMITTED.parent / ref).is_file(), ref
            json.loads((COMMITTED.parent / ref).read_text())
    (tmp_path / "stale.json").write_text("{}")
    assert asyncapi.main([str(tmp_path / "stale.json"), "--check"]) == 1
