"""The hash chain and its checkpoints: pure functions, shared by the service and the offline verifier.

Entry ``seq`` has ``hash = sha256(seq as 8 bytes big-endian || previous hash (32 bytes) || canonical event bytes)``,
the first entry's previous hash being 32 zero bytes. Changing, removing or reordering any entry changes every hash
after it; a consistent rewrite of the whole chain is caught by the signed checkpoints held outside the database.
The columns an entry is queried and shown by (:data:`EVENT_COLUMNS`) are copies of the hashed event's attributes:
verification checks each against the event, so what an auditor reads is what the chain covers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from llmops_schemas import PAYLOADS, CloudEvent, canonical_json
from llmops_schemas.events.audit import CheckpointSigned, checkpoint_message

GENESIS = "0" * 64

#: Each column of the log that copies an attribute of the event, and that attribute's name in the envelope; an
#: entry's ``columns`` are given in this order (``time`` last).
EVENT_COLUMNS = {
    "event_id": "id",
    "type": "type",
    "source": "source",
    "subject": "subject",
    "actor": "actor",
    "project": "project",
    "correlation_id": "correlationid",
    "causation_id": "causationid",
    "time": "time",
}
_UNTIMED_ATTRIBUTES = tuple(EVENT_COLUMNS.values())[:-1]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: In an entry's ``columns``: a column its source does not carry (e.g. an older export), so not checked.
ABSENT: Any = _Absent()


def entry_hash(seq: int, prev_hash: str, canonical: bytes) -> str:
    """The chain hash of entry ``seq`` (hex)."""
    return hashlib.sha256(seq.to_bytes(8, "big") + bytes.fromhex(prev_hash) + canonical).hexdigest()


def redacted(event: CloudEvent) -> dict[str, Any]:
    """The envelope as the log stores it: payload fields marked sensitive replaced by the sha256 of their value."""
    document = event.to_json_dict()
    model = PAYLOADS.get(event.type)
    sensitive = model.sensitive_fields() if model is not None else frozenset()
    if sensitive:
        data = dict(document["data"])
        for name in sensitive & data.keys():
            data[name] = {"redacted": "sha256", "sha256": hashlib.sha256(canonical_json(data[name])).hexdigest()}
        document["data"] = data
    return document


# -- signing -----------------------------------------------------------------------------------------------------
class Signer:
    """Signs checkpoints with an Ed25519 key given as the base64 of its 32-byte seed."""

    def __init__(self, seed_b64: str) -> None:
        seed = base64.b64decode(seed_b64)
        if len(seed) != 32:
            raise ValueError("the audit signing key must be the base64 of 32 bytes (an Ed25519 seed)")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_b64 = base64.b64encode(self.public_key).decode()
        self.key_id = key_id(self.public_key)

    def sign(self, seq: int, chain_hash: str, signed_at: datetime) -> CheckpointSigned:
        signature = self._key.sign(checkpoint_message(seq, chain_hash))
        return CheckpointSigned(
            seq=seq,
            hash=chain_hash,
            signed_at=signed_at,
            key_id=self.key_id,
            public_key=self.public_key_b64,
            signature=base64.b64encode(signature).decode(),
        )


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def signature_valid(checkpoint: CheckpointSigned, trusted_public_key: bytes) -> bool:
    """Whether ``checkpoint`` was signed by the holder of ``trusted_public_key`` (not by the key it names)."""
    try:
        Ed25519PublicKey.from_public_bytes(trusted_public_key).verify(
            base64.b64decode(checkpoint.signature), checkpoint_message(checkpoint.seq, checkpoint.hash)
        )
        return True
    except (InvalidSignature, ValueError):
        return False


# -- verification ------------------------------------------------------------------------------------------------
class Entry(NamedTuple):
    """One stored entry, as read back from the database or an export; ``columns`` are the values stored beside it
    that copy the event's attributes, in :data:`EVENT_COLUMNS` order, each checked against the hashed event."""

    seq: int
    prev_hash: str
    hash: str
    canonical: bytes
    columns: tuple[Any, ...] | None = None


def columns_match(columns: tuple[Any, ...], canonical: bytes) -> bool:
    """Whether each column (in :data:`EVENT_COLUMNS` order, ``time`` a datetime) equals the attribute of the hashed
    event it copies: the quick test verification runs on every entry; :func:`mismatched_columns` says which differ."""
    try:
        event = orjson.loads(canonical)
        return columns == (*map(event.get, _UNTIMED_ATTRIBUTES), datetime.fromisoformat(event["time"]))
    except (AttributeError, KeyError, TypeError, ValueError):  # not an object, no time, not JSON: say which differ
        return False


def mismatched_columns(
    columns: tuple[Any, ...], canonical: bytes, *, blank_is_null: bool = False
) -> list[tuple[str, Any, Any]] | None:
    """``(column, stored value, hashed value)`` for each column (in :data:`EVENT_COLUMNS` order, :data:`ABSENT` for
    one not given) that differs from the attribute of the hashed event it copies; None when the event is not a JSON
    object. ``blank_is_null``: an empty string equals a missing value (CSV cannot tell them apart)."""
    try:
        event = orjson.loads(canonical)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    wrong = []
    for (name, attribute), stored in zip(EVENT_COLUMNS.items(), columns, strict=True):
        hashed = event.get(attribute)
        if stored is ABSENT:
            continue
        if name == "time":
            instant = _instant(stored)
            same = instant is not None and instant == _instant(hashed)
        elif blank_is_null and stored in ("", None):
            same = hashed in ("", None)
        else:
            same = stored == hashed
        if not same:
            wrong.append((name, stored, hashed))
    return wrong


def _instant(value: Any) -> datetime | None:
    # Columns hold datetimes, exports and events ISO 8601 text: compared as instants, not as spellings.
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Report:
    """The outcome of a verification: ``ok``, or the first broken sequence number and why."""

    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints_checked: int = 0
    first_broken_seq: int | None = None
    reason: str | None = None
    detail: str | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None and not self.problems

    def fail(self, seq: int, reason: str, detail: str) -> None:
        self.problems.append({"seq": seq, "reason": reason, "detail": detail})
        if self.first_broken_seq is None or seq < self.first_broken_seq:
            self.first_broken_seq, self.reason, self.detail = seq, reason, detail

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints_checked": self.checkpoints_checked,
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
            "detail": self.detail,
            "problems": self.problems[:100],
        }


class ChainVerifier:
    """Recomputes the chain over entries given in sequence order, and checks checkpoints against it.

    ``contiguous=False`` (a filtered export) checks each entry's own hash but not the links between entries.
    ``blank_is_null``: an empty column equals a missing attribute (entries read from CSV).
    """

    def __init__(
        self, *, expected_prev: str | None = None, contiguous: bool = True, blank_is_null: bool = False
    ) -> None:
        self.report = Report()
        self.contiguous = contiguous
        self.blank_is_null = blank_is_null
        self._expected_prev = expected_prev
        self._last_seq: int | None = None
        self.recomputed: dict[int, str] = {}

    def feed(self, entries: Iterable[Entry], *, keep_hashes_for: set[int] | None = None) -> None:
        # Runs for every entry of the log: the verifier's state is kept in locals for the loop.
        report, contiguous = self.report, self.contiguous
        expected_prev, last_seq, checked = self._expected_prev, self._last_seq, 0
        for seq, prev_hash, stored_hash, canonical, columns in entries:
            if contiguous:
                if last_seq is not None and seq != last_seq + 1:
                    report.fail(
                        last_seq + 1, "missing_sequence", f"entries {last_seq + 1}..{seq - 1} are missing (deleted?)"
                    )
                if expected_prev is None and seq == 1:
                    expected_prev = GENESIS
                if expected_prev is not None and prev_hash != expected_prev:
                    report.fail(seq, "prev_hash_mismatch", "the entry does not link to the entry before it")
            recomputed = entry_hash(seq, prev_hash, canonical)
            if recomputed != stored_hash:
                report.fail(seq, "hash_mismatch", "the stored event does not hash to the stored chain hash")
            if columns is not None and not columns_match(columns, canonical):
                self._report_columns(seq, columns, canonical)
            if keep_hashes_for is None or seq in keep_hashes_for:
                self.recomputed[seq] = recomputed
            expected_prev = recomputed if contiguous else None
            if report.first_seq is None:
                report.first_seq = seq
            last_seq = seq
            checked += 1
        self._expected_prev, self._last_seq = expected_prev, last_seq
        report.checked += checked
        report.last_seq = last_seq

    def _report_columns(self, seq: int, columns: tuple[Any, ...], canonical: bytes) -> None:
        wrong = mismatched_columns(columns, canonical, blank_is_null=self.blank_is_null)
        if wrong is None:
            self.report.fail(seq, "column_mismatch", "the stored event is not a JSON object: no column is covered")
        for name, stored, hashed in wrong or ():
            self.report.fail(
                seq,
                "column_mismatch",
                f"the {name} column ({_shown(stored)}) differs from the hashed event's "
                f"{EVENT_COLUMNS[name]} ({_shown(hashed)})",
            )

    def check_checkpoints(self, checkpoints: Iterable[CheckpointSigned], trusted_public_key: bytes) -> None:
        """Each checkpoint must carry a valid signature and match the recomputed chain at its sequence number."""
        report = self.report
        for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
            if not signature_valid(checkpoint, trusted_public_key):
                report.fail(
                    checkpoint.seq,
                    "bad_checkpoint_signature",
                    f"checkpoint at {checkpoint.seq} is not signed by the trusted key",
                )
                continue
            recomputed = self.recomputed.get(checkpoint.seq)
            if recomputed is None:
                continue  # outside the verified range
            report.checkpoints_checked += 1
            if recomputed != checkpoint.hash:
                report.fail(
                    checkpoint.seq,
                    "checkpoint_mismatch",
                    f"the chain at {checkpoint.seq} differs from the checkpoint signed at "
                    f"{checkpoint.signed_at.isoformat()}: entries up to {checkpoint.seq} were rewritten",
                )


def _shown(value: Any) -> str:
    text = value.isoformat() if isinstance(value, datetime) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
