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
