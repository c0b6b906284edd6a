import json
from datetime import datetime
from typing import ClassVar
from uuid import UUID

import pytest

from llmops_schemas import CloudEvent, EventPayload, MalformedEvent, new_event, parse_event, upcaster
from llmops_schemas.events import AccessDenied, ProbeSent


def probe_event(**overrides) -> CloudEvent:
    event = new_event(ProbeSent(message="hello", sequence=3), subject="probe-1", source="/llmops/tests")
    return event.model_copy(update=overrides)


class TestNewEvent:
    def test_the_id_is_a_version_7_uuid(self):
        assert UUID(probe_event().id).version == 7

    def test_ids_sort_by_creation_order(self):
        ids = [probe_event().id for _ in range(50)]
        assert ids == sorted(ids)

    def test_the_envelope_carries_type_version_and_payload(self):
        event = probe_event()
        assert (event.type, event.schemaversion, event.data) == (
            "platform.probe.sent",
            1,
            {"message": "hello", "sequence": 3},
        )


class TestParseEvent:
    def test_round_trips_through_bytes(self):
        event = probe_event()
        parsed, payload = parse_event(event.to_bytes())
        assert parsed == event
        assert payload == ProbeSent(message="hello", sequence=3)

    def test_canonical_bytes_do_not_depend_on_key_order(self):
        event = probe_event()
        shuffled = json.dumps(dict(reversed(list(event.to_json_dict().items()))))
        parsed, _ = parse_event(shuffled)
        assert parsed.to_bytes() == event.to_bytes()

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"\xff\xfe not json", "not_json"),
            (b"[1, 2]", "invalid_envelope"),
            (b'{"type": "platform.probe.sent"}', "invalid_envelope"),
        ],
    )
    def test_refuses_what_is_not_an_envelope(self, raw, reason):
        with pytest.raises(MalformedEvent) as caught:
            parse_event(raw)
        assert caught.value.reason == reason

    def test_refuses_an_unknown_event_type(self):
        with pytest.raises(MalformedEvent) as caught:
            parse_event(probe_event(type="nobody.knows.this").to_bytes())
        assert caught.value.reason == "unknown_type"

    def test_refuses_data_that_does_not_match_the_payload(self):
        with pytest.raises(MalformedEvent) as caught:
            parse_event(probe_event(data={"message": "x", "sequence": -1}).to_bytes())
        assert caught.value.reason == "invalid_data"
        assert "sequence" in caught.value.detail

    def test_refuses_a_time_without_timezone(self):
        document = probe_event().to_json_dict() | {"time": datetime(2026, 1, 1).isoformat()}
        with pytest.raises(MalformedEvent, match="timezone"):
            parse_event(json.dumps(document))

    @pytest.mark.parametrize("attribute", ["id", "specversion"])
    def test_refuses_an_envelope_without_an_attribute_cloudevents_requires(self, attribute):
        document = probe_event().to_json_dict()
        del document[attribute]
        with pytest.raises(MalformedEvent) as caught:
            parse_event(json.dumps(document))
        assert caught.value.reason == "invalid_envelope"
        assert caught.value.detail == f"{attribute}: required by CloudEvents 1.0"

    def test_names_every_missing_attribute_cloudevents_requires(self):
        document = {k: v for k, v in probe_event().to_json_dict().items() if k not in ("id", "specversion")}
        with pytest.raises(MalformedEvent, match=r"id: .*; specversion: "):
            parse_event(json.dumps(document))

    def test_an_event_built_in_python_still_gets_an_id_and_a_specversion(self):
        event = CloudEvent(source="/x", type="platform.probe.sent", subject="s", data={})
        assert UUID(event.id).version == 7 and event.specversion == "1.0"

    def test_refuses_an_id_that_is_not_a_uuid(self):
        document = probe_event().to_json_dict() | {"id": "42"}
        with pytest.raises(MalformedEvent, match="UUID"):
            parse_event(json.dumps(document))

    def test_refuses_a_newer_schema_version_than_it_knows(self):
        with pytest.raises(MalformedEvent) as caught:
            parse_event(probe_event(schemaversion=9).to_bytes())
        assert caught.value.reason == "unsupported_version"


class RenamedV2(EventPayload):
    event_type: ClassVar[str] = "tests.thing.renamed"
    topic: ClassVar[str] = "llmops.platform"
    schema_version: ClassVar[int] = 2

    new_name: str


@upcaster("tests.thing.renamed", 1)
def _rename_v1(data):
    return {"new_name": data["name"]}


class TestUpcasting:
    def test_an_old_version_is_upcast_to_the_current_payload(self):
        old = CloudEvent(source="/x", type="tests.thing.renamed", subject="s", data={"name": "a"}, schemaversion=1)
        _, payload = parse_event(old.to_bytes())
        assert payload == RenamedV2(new_name="a")


class TestSensitiveFields:
    def test_payloads_declare_which_fields_are_sensitive(self):
        assert AccessDenied.sensitive_fields() == frozenset()
        from pydantic import Field

        from llmops_schemas import SENSITIVE

        class Secretive(EventPayload):
            event_type: ClassVar[str] = "tests.secret.kept"
            topic: ClassVar[str] = "llmops.platform"
            prompt: str = Field(json_schema_extra=SENSITIVE)
            tokens: int

        assert Secretive.sensitive_fields() == frozenset({"prompt"})


class TestCanonicalJson:
    def test_keys_are_sorted_at_every_level_without_whitespace(self):
        from llmops_schemas import canonical_json

        assert canonical_json({"b": 1, "a": {"d": [1, {"z": None, "y": "é"}], "c": True}}) == (
            '{"a":{"c":true,"d":[1,{"y":"é","z":null}]},"b":1}'.encode()
        )

    def test_payloads_refuse_non_finite_numbers_which_json_cannot_carry(self):
        from pydantic import ValidationError

        class Measured(EventPayload):
            event_type: ClassVar[str] = "tests.value.measured"
            topic: ClassVar[str] = "llmops.platform"
            value: float

        with pytest.raises(ValidationError, match="finite"):
            Measured(value=float("nan"))
