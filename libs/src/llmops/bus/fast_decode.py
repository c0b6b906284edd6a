"""Events decoded many at a time, for consumers whose throughput is the point (the monitoring service's ingest of
inference records): msgspec structs mirrored from the pydantic models of ``llmops_schemas`` decode each record in C,
and the envelope's times are parsed as one Arrow array.

The fast path only ever *vouches* for an event: it accepts a subset of what the pydantic models accept, with the
same values, and hands back every other record for the usual decoding (:func:`llmops_schemas.parse_event`), which
accepts it (a ``"5"`` for an int, a missing ``time``, an old schema version to upcast) or says why not (the
dead-letter topic's reason). The mirrors are built from the models' fields and constraints, never written by hand,
and refuse to build for a model that holds anything they cannot mirror exactly (a validator, an unknown
constraint), so the two cannot drift apart. ``libs/tests/test_fast_decode.py`` checks the subset property on
generated and mutated events.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import annotated_types
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from llmops_schemas import CloudEvent, EventPayload

#: RFC 3339 with a zone and at most microseconds, every field in range: what Arrow's cast parses exactly as pydantic
#: does (any other form, e.g. a space for "T", is left to pydantic).
_TIME = (
    r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
_INT64 = 2**63 - 1
UTC_MICROS = pa.timestamp("us", tz="UTC")


class NotMirrored(TypeError):
    """A model holds something the fast decoder cannot mirror exactly."""


def _pattern(pattern: str) -> str:
    # pydantic's patterns are searched with Rust's regex, where "$" is the end of the text; Python's "$" also matches
    # before a final newline, so it becomes "\Z". Any other "$" is not one the mirror can vouch for.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    if "$" in pattern:
        raise NotMirrored(f"pattern {pattern!r}")
    re.compile(pattern)
    return pattern


def _meta(metadata: Sequence[Any], annotation: Any) -> msgspec.Meta | None:
    values: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            values["ge"] = item.ge
        elif isinstance(item, annotated_types.Le):
            values["le"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            values["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            values["max_length"] = item.max_length
        elif type(item).__name__ == "_PydanticGeneralMetadata" and set(vars(item)) == {"pattern"}:
            values["pattern"] = _pattern(item.pattern)
        else:
            raise NotMirrored(f"constraint {item!r}")
    if annotation is int:
        values.setdefault("le", _INT64)  # what an int64 column holds; a larger value goes the usual way
    return msgspec.Meta(**values) if values else None


def _type(annotation: Any, metadata: Sequence[Any]) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        if len(members) != 1 or len(typing.get_args(annotation)) != 2:
            raise NotMirrored(f"type {annotation!r}")
        return _type(members[0], metadata) | None
    if typing.get_origin(annotation) is Literal:
        if metadata:
            raise NotMirrored(f"constraints on {annotation!r}")
        return annotation
    if annotation not in (str, int, float, bool):
        raise NotMirrored(f"type {annotation!r}")
    meta = _meta(metadata, annotation)
    return annotation if meta is None else Annotated[annotation, meta]


def mirror(model: type[BaseModel], *, overrides: dict[str, tuple[Any, Any]] | None = None) -> type[msgspec.Struct]:
    """A msgspec struct accepting a subset of what ``model`` accepts from JSON, with the same values.

    ``overrides`` gives some fields another (type, default) (``msgspec.NODEFAULT``: required): narrower ones only."""
    decorators = model.__pydantic_decorators__
    overrides = overrides or {}
    if any(getattr(decorators, kind) for kind in ("validators", "root_validators", "model_validators")) or any(
        name not in overrides for info in decorators.field_validators.values() for name in info.info.fields
    ):
        raise NotMirrored(f"{model.__name__} has validators")
    if model.model_config.get("extra") != "forbid":
        raise NotMirrored(f"{model.__name__} allows extra fields")
    fields = []
    for name, field in model.model_fields.items():
        if field.alias not in (None, name):
            raise NotMirrored(f"{model.__name__}.{name} has an alias")
        if name in overrides:
            kind, default = overrides[name]
        else:
            kind = _type(field.annotation, field.metadata)
            if field.default_factory is not None:
                raise NotMirrored(f"{model.__name__}.{name} has a default factory")
            default = msgspec.NODEFAULT if field.is_required() else field.default
        fields.append((name, kind) if default is msgspec.NODEFAULT else (name, kind, default))
    return msgspec.defstruct(f"Wire{model.__name__}", fields, forbid_unknown_fields=True, frozen=True, kw_only=True)


@dataclass(frozen=True)
class Decoded:
    """What the fast path vouched for: ``rows[i]`` is the index in the input of ``envelopes[i]`` / ``payloads[i]``,
    whose id is ``ids[i]`` and time ``times[i]``; ``rest`` are the indexes left for the usual decoding."""

    rows: list[int]
    ids: list[str]
    envelopes: list[Any]
    payloads: list[Any]
    times: pa.TimestampArray
    rest: list[int]


class FastDecoder:
    """Decodes records of the given payload types; anything else (another type, a value the mirrors do not accept,
    a schema version to upcast, a time in another form) is left to the usual decoding."""

    def __init__(self, payloads: Sequence[type[EventPayload]]) -> None:
        types_ = tuple(p.event_type for p in payloads)
        envelope = mirror(
            CloudEvent,
            overrides={
                "id": (Annotated[str, msgspec.Meta(pattern=_UUID)], msgspec.NODEFAULT),
                "specversion": (Literal["1.0"], msgspec.NODEFAULT),
                "type": (Literal[types_], msgspec.NODEFAULT),
                "time": (str, msgspec.NODEFAULT),  # parsed below, all at once
                "data": (msgspec.Raw, msgspec.NODEFAULT),
            },
        )
        self._envelope = msgspec.json.Decoder(envelope)
        self._payloads = {p.event_type: (msgspec.json.Decoder(mirror(p)), p.schema_version) for p in payloads}

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        rows, envelopes, payloads, rest = [], [], [], []
        envelope_decoder, payload_decoders = self._envelope.decode, self._payloads
        for index, value in enumerate(values):
            try:
                envelope = envelope_decoder(value)
                decoder, version = payload_decoders[envelope.type]
                if envelope.schemaversion != version:
                    rest.append(index)
                    continue
                payload = decoder.decode(envelope.data)
            except (msgspec.DecodeError, TypeError):  # TypeError: a record without a value
                rest.append(index)
                continue
            rows.append(index)
            envelopes.append(envelope)
            payloads.append(payload)
        texts = pa.array([e.time for e in envelopes], pa.string())
        keep = pc.match_substring_regex(texts, _TIME).to_pylist()
        try:
            times = pc.cast(texts.filter(pa.array(keep, pa.bool_())), UTC_MICROS)
        except pa.ArrowInvalid:  # a date that does not exist (February 30th): found one by one
            keep = [ok and _parses(t) for ok, t in zip(keep, texts.to_pylist(), strict=True)]
            times = pc.cast(texts.filter(pa.array(keep, pa.bool_())), UTC_MICROS)
        if not all(keep):
            rest.extend(i for i, ok in zip(rows, keep, strict=True) if not ok)
            rows, envelopes, payloads = (
                [item for item, ok in zip(items, keep, strict=True) if ok] for items in (rows, envelopes, payloads)
            )
        # the envelope's id as pydantic keeps it (its validator lowers it)
        return Decoded(rows, [e.id.lower() for e in envelopes], envelopes, payloads, times, sorted(rest))


def _parses(text: str) -> bool:
    try:
        pc.cast(pa.array([text]), UTC_MICROS)
    except pa.ArrowInvalid:
        return False
    return True
