"""Audit events: the signed heads of the audit log's hash chain, to be held outside the platform's database."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload


class CheckpointSigned(EventPayload):
    """The audit log's head (sequence number and chain hash), signed with the audit service's Ed25519 key.

    The signature covers :func:`checkpoint_message` of ``seq`` and ``hash``; anyone holding the public key can check
    a copy of the log against it, so a rewrite of the chain after this point is detectable.
    """

    event_type: ClassVar[str] = "audit.checkpoint.signed"
    topic: ClassVar[str] = topics.AUDIT

    seq: int = Field(ge=1, description="sequence number of the last entry the checkpoint covers")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="chain hash of that entry (hex sha256)")
    signed_at: datetime
    key_id: str = Field(description="sha256 (hex, first 16) of the raw Ed25519 public key")
    public_key: str = Field(description="raw Ed25519 public key, base64")
    signature: str = Field(description="Ed25519 signature of checkpoint_message(seq, hash), base64")


def checkpoint_message(seq: int, chain_hash: str) -> bytes:
    """The bytes a checkpoint signature covers: a domain tag, the sequence number (8 bytes, big-endian), the hash."""
    return b"llmops-audit-checkpoint\x00" + seq.to_bytes(8, "big") + bytes.fromhex(chain_hash)
