"""The hash chain and its checkpoints: pure functions, shared by the service and the offline verifier.

Entry ``seq`` has ``hash = sha256(seq as 8 bytes big-endian || previous hash (32 bytes) || canonical event bytes)``,
the first entry's previous hash being 32 zero bytes. Changing, removing or reordering any entry changes every hash
after it; a consistent rewrite of the whole chain is caught by the signed checkpoints held outside the database.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from llmops_schemas import PAYLOADS, CloudEvent, canonical_json
from llmops_schemas.events.audit import CheckpointSigned, checkpoint_message

GENESIS = "0" * 64


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
@dataclass(frozen=True)
class Entry:
    """One stored entry, as read back from the database or an export."""

    seq: int
    prev_hash: str
    hash: str
    canonical: bytes


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
    """

    def __init__(self, *, expected_prev: str | None = None, contiguous: bool = True) -> None:
        self.report = Report()
        self.contiguous = contiguous
        self._expected_prev = expected_prev
        self._last_seq: int | None = None
        self.recomputed: dict[int, str] = {}

    def feed(self, entries: Iterable[Entry], *, keep_hashes_for: set[int] | None = None) -> None:
        report = self.report
        for entry in entries:
            if report.first_seq is None:
                report.first_seq = entry.seq
            if self.contiguous and self._last_seq is not None and entry.seq != self._last_seq + 1:
                report.fail(
                    self._last_seq + 1,
                    "missing_sequence",
                    f"entries {self._last_seq + 1}..{entry.seq - 1} are missing (deleted?)",
                )
            if self.contiguous and self._expected_prev is None and entry.seq == 1:
                self._expected_prev = GENESIS
            if self.contiguous and self._expected_prev is not None and entry.prev_hash != self._expected_prev:
                report.fail(entry.seq, "prev_hash_mismatch", "the entry does not link to the entry before it")
            recomputed = entry_hash(entry.seq, entry.prev_hash, entry.canonical)
            if recomputed != entry.hash:
                report.fail(entry.seq, "hash_mismatch", "the stored event does not hash to the stored chain hash")
            if keep_hashes_for is None or entry.seq in keep_hashes_for:
                self.recomputed[entry.seq] = recomputed
            self._expected_prev = recomputed if self.contiguous else None
            self._last_seq = entry.seq
            report.checked += 1
            report.last_seq = entry.seq

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
