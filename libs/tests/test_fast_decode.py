"""The fast decoder vouches only for what the event models accept, with the same values: generated events and their
mutations (a key dropped, a null, another type, an extra key, other time forms, values out of range) are either
left for the usual decoding or decoded exactly as pydantic decodes them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, field_validator

from llmops.bus.fast_decode import FastDecoder, NotMirrored, mirror
from llmops_schemas import EventPayload, parse_event
from llmops_schemas.events import InferenceCompleted, InferenceFailed

DECODER = FastDecoder([InferenceCompleted, InferenceFailed])
SHA = "ab" * 32


def completed_data(**changes: Any) -> dict[str, Any]:
    data = {
        "request_id": "r-1",
        "project": "p1",
        "route": "support",
        "api": "chat.completions",
        "stream": True,
        "shadow": False,
        "deployment_id": "d1",
        "model_version_id": "mv1",
        "model_hash": SHA,
        "prompt_version_id": None,
        "user": "u1",
        "key_id": None,
        "attempts": 1,
        "latency_ms": 120.5,
        "input": "hello",
        "input_sha256": SHA,
        "text_mode": "redacted",
        "time_to_first_token_ms": 30.0,
        "tokens_in": 12,
        "tokens_out": 20,
        "usage_source": "backend",
        "cost": 0.002,
        "finish_reason": "stop",
        "output": "hi there",
        "output_sha256": SHA,
    }
    return {**data, **changes}


def failed_data(**changes: Any) -> dict[str, Any]:
    data = {
        "request_id": "r-2",
        "project": "p1",
        "route": "support",
        "api": "completions",
        "latency_ms": 5,
        "status": 502,
        "error": "backend unreachable",
        "tokens_in": None,
    }
    return {**data, **changes}


def envelope(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": "01a23680-a3cb-7496-96ef-e9645a37fb07",
        "source": "/elsewhere/gateway",
        "type": "inference.completed",
        "subject": "r-1",
        "time": "2026-12-02T11:23:29.873836Z",
        "datacontenttype": "application/json",
        "data": data,
        "project": "p1",
    }
    return {**event, **changes}


def check(values: list[bytes]) -> tuple[int, int]:
    """Every value the fast path took is one pydantic accepts, with the same values; returns (taken, left)."""
    decoded = DECODER.decode(values)
    assert sorted(decoded.rows + decoded.rest) == list(range(len(values)))
    for n, index in enumerate(decoded.rows):
        event, payload = parse_event(values[index])  # raises when the fast path took what pydantic refuses
        assert decoded.ids[n] == event.id
        assert decoded.times[n].as_py() == event.time
        fast_envelope = decoded.envelopes[n]
        for name in ("source", "type", "subject", "actor", "project", "correlationid", "causationid", "traceparent"):
            assert getattr(fast_envelope, name) == getattr(event, name), name
        fast = msgspec.structs.asdict(decoded.payloads[n])
        assert set(fast) == set(type(payload).model_fields)
        for name, value in fast.items():
            expected = getattr(payload, name)
            assert value == expected and type(value) in (type(expected), float), (name, value, expected)
    return len(decoded.rows), len(decoded.rest)


class TestWellFormedEvents:
    def test_the_gateways_events_are_all_taken_with_pydantics_values(self) -> None:
        values = [
            json.dumps(envelope(completed_data())).encode(),
            json.dumps(envelope(failed_data(), type="inference.failed")).encode(),
            json.dumps(envelope(completed_data(output=None, text_mode="hashed", tokens_out=0))).encode(),
        ]
        assert check(values) == (3, 0)

    def test_offsets_are_turned_into_utc_and_upper_case_ids_lowered(self) -> None:
        value = json.dumps(
            envelope(completed_data(), time="2026-12-02T12:23:29.5+01:00", id="01A23680-A3CB-7496-96EF-E9645A37FB07")
        ).encode()
        assert check([value]) == (1, 0)
        decoded = DECODER.decode([value])
        assert decoded.ids == ["01a23680-a3cb-7496-96ef-e9645a37fb07"]
        assert decoded.times[0].as_py().isoformat() == "2026-12-02T11:23:29.500000+00:00"


class TestWhatIsLeftToPydantic:
    @pytest.mark.parametrize(
        "event",
        [
            envelope(completed_data(tokens_in="12")),  # pydantic coerces it; the fast path does not
            envelope(completed_data(latency_ms=None)),
            envelope(completed_data(stream=None)),  # null is not the default
            envelope(completed_data(extra=1)),
            envelope(completed_data(model_hash=SHA + "\n")),  # Python's "$" would let the newline through
            envelope(completed_data(request_id="")),
            envelope(completed_data(attempts=0)),
            envelope(completed_data(tokens_out=2**63)),
            envelope(completed_data(input="x" * 32_001)),
            envelope(completed_data(status=500)),  # a failed record's field on a completed one
            envelope(failed_data(output="x"), type="inference.failed"),
            envelope(completed_data(), time="2026-12-02 11:23:29Z"),
            envelope(completed_data(), time="2026-12-02T11:23:29"),  # no zone: pydantic refuses it too
            envelope(completed_data(), time="2026-02-30T11:23:29Z"),
            envelope(completed_data(), time="2026-12-02T11:23:29.1234567Z"),
            envelope(completed_data(), time=1764674609),
            envelope(completed_data(), schemaversion=2),
            envelope(completed_data(), type="dataset.version.created"),
            envelope(completed_data(), id="not-a-uuid"),
            envelope(completed_data(), specversion="0.3"),
            envelope([1]),
        ],
    )
    def test_a_value_the_mirror_cannot_vouch_for_goes_the_usual_way(self, event: dict[str, Any]) -> None:
        assert check([json.dumps(event).encode()]) == (0, 1)

    def test_bytes_that_are_not_json_or_no_value_go_the_usual_way(self) -> None:
        assert check([b"{not json", b"", b"null", b"[]"]) == (0, 4)
        assert DECODER.decode([None]).rest == [0]

    def test_a_batch_keeps_the_good_ones_when_one_time_is_an_impossible_date(self) -> None:
        good = json.dumps(envelope(completed_data())).encode()
        bad = json.dumps(envelope(completed_data(), time="2026-02-30T11:23:29Z")).encode()
        assert check([good, bad, good]) == (2, 1)


MUTATIONS = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(sorted(completed_data()))),
    st.tuples(
        st.just("set"),
        st.sampled_from(sorted(completed_data())),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**64), 2**64),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=40),
            st.sampled_from(["redacted", "hashed", "completions", "length", SHA, SHA.upper(), "1"]),
        ),
    ),
    st.tuples(
        st.just("envelope"),
        st.sampled_from(["time", "id", "subject", "source", "traceparent", "schemaversion", "actor", "extra"]),
        st.one_of(
            st.none(),
            st.integers(-2, 2),
            st.text(max_size=40),
            st.sampled_from(
                [
                    "2026-12-02T11:23:29+14:00",
                    "2026-12-02T11:23:29.000001-23:59",
                    "2026-12-02t11:23:29z",
                    "9999-12-31T23:59:59.999999Z",
                    "0999-01-01T00:00:00Z",
                    "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
                    "x" * 513,
                ]
            ),
        ),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATIONS, max_size=3), st.booleans())
def test_mutated_events_are_taken_only_as_pydantic_takes_them(mutations: list, failed: bool) -> None:
    data = failed_data() if failed else completed_data()
    event = envelope(data, type="inference.failed" if failed else "inference.completed")
    for mutation in mutations:
        if mutation[0] == "drop":
            data.pop(mutation[1], None)
        elif mutation[0] == "set":
            data[mutation[1]] = mutation[2]
        else:
            event[mutation[1]] = mutation[2]
    value = json.dumps(event).encode()
    check([value])  # what the fast path took, pydantic takes with the same values; the rest is pydantic's to decide


class TestMirror:
    def test_a_model_with_a_validator_is_not_mirrored(self) -> None:
        class Checked(EventPayload):
            name: str

            @field_validator("name")
            @classmethod
            def _lower(cls, value: str) -> str:
                return value.lower()

        with pytest.raises(NotMirrored, match="validators"):
            mirror(Checked)

    def test_a_pattern_with_a_dollar_inside_is_not_mirrored(self) -> None:
        class Odd(EventPayload):
            name: Annotated[str, Field(pattern=r"^a$|^b$")]

        with pytest.raises(NotMirrored, match="pattern"):
            mirror(Odd)

    def test_an_unknown_type_is_not_mirrored(self) -> None:
        class Listed(EventPayload):
            names: list[str]

        with pytest.raises(NotMirrored, match="type"):
            mirror(Listed)
