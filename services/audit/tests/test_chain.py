"""The hash chain and checkpoints as pure functions: what both the service and the offline verifier rely on."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime

import pytest

from llmops_audit.chain import (
    ABSENT,
    EVENT_COLUMNS,
    GENESIS,
    ChainVerifier,
    Entry,
    Signer,
    entry_hash,
    redacted,
    signature_valid,
)
from llmops_schemas import canonical_json, new_event
from llmops_schemas.events import ProbeSent

SEED = base64.b64encode(b"k" * 32).decode()


def chain(count: int) -> list[Entry]:
    entries, prev = [], GENESIS
    for seq in range(1, count + 1):
        canonical = canonical_json({"id": str(seq), "data": {"n": seq}})
        digest = entry_hash(seq, prev, canonical)
        entries.append(Entry(seq, prev, digest, canonical))
        prev = digest
    return entries


def verify(entries, checkpoints=(), key: bytes | None = None, **options):
    verifier = ChainVerifier(**options)
    verifier.feed(entries)
    verifier.check_checkpoints(checkpoints, key or Signer(SEED).public_key)
    return verifier.report


class TestEntryHash:
    def test_covers_the_sequence_number_the_previous_hash_and_the_event_bytes(self):
        expected = hashlib.sha256((7).to_bytes(8, "big") + bytes(32) + b'{"a":1}').hexdigest()
        assert entry_hash(7, GENESIS, b'{"a":1}') == expected
        assert entry_hash(8, GENESIS, b'{"a":1}') != expected


class TestVerifier:
    def test_an_intact_chain_verifies(self):
        report = verify(chain(20))
        assert report.ok and report.checked == 20 and report.last_seq == 20

    def test_a_changed_event_is_reported_at_its_sequence_number(self):
        entries = chain(20)
        entries[9] = Entry(10, entries[9].prev_hash, entries[9].hash, b'{"forged":true}')
        report = verify(entries)
        assert (report.first_broken_seq, report.reason) == (10, "hash_mismatch")

    def test_a_removed_entry_is_reported_where_the_gap_starts(self):
        entries = chain(20)
        del entries[4]
        report = verify(entries)
        assert (report.first_broken_seq, report.reason) == (5, "missing_sequence")

    def test_a_first_entry_that_does_not_start_from_genesis_is_refused(self):
        entries = chain(3)
        forged_prev = "1" * 64
        entries[0] = Entry(1, forged_prev, entry_hash(1, forged_prev, entries[0].canonical), entries[0].canonical)
        assert verify(entries).reason == "prev_hash_mismatch"

    def test_a_consistent_rewrite_is_caught_by_the_checkpoint_signed_before_it(self):
        signer = Signer(SEED)
        entries = chain(30)
        checkpoint = signer.sign(20, entries[19].hash, datetime.now(UTC))
        # Rewrite entry 12 and recompute every hash after it: the chain alone still looks intact.
        rewritten, prev = entries[:11], entries[10].hash
        for e in entries[11:]:
            canonical = b'{"forged":true}' if e.seq == 12 else e.canonical
            digest = entry_hash(e.seq, prev, canonical)
            rewritten.append(Entry(e.seq, prev, digest, canonical))
            prev = digest
        assert verify(rewritten).ok
        report = verify(rewritten, [checkpoint], signer.public_key)
        assert (report.first_broken_seq, report.reason) == (20, "checkpoint_mismatch")

    def test_a_checkpoint_signed_by_another_key_is_refused(self):
        entries = chain(5)
        impostor = Signer(base64.b64encode(os.urandom(32)).decode())
        report = verify(entries, [impostor.sign(5, entries[4].hash, datetime.now(UTC))])
        assert report.reason == "bad_checkpoint_signature"

    def test_a_filtered_selection_checks_each_entry_but_not_the_links(self):
        entries = chain(20)[::3]
        assert verify(entries, contiguous=False).ok
        assert not verify(entries).ok


def chain_with_columns(count: int) -> list[Entry]:
    """Entries of real events with their columns, as the database gives them (time a datetime)."""
    entries, prev = [], GENESIS
    for seq in range(1, count + 1):
        event = new_event(ProbeSent(message=f"m{seq}", sequence=seq), subject=f"s{seq}", source="/t", actor="ann")
        canonical = canonical_json(redacted(event))
        digest = entry_hash(seq, prev, canonical)
        columns = tuple(getattr(event, attribute) for attribute in EVENT_COLUMNS.values())
        entries.append(Entry(seq, prev, digest, canonical, columns))
        prev = digest
    return entries


def with_column(entry: Entry, column: str, value) -> Entry:
    columns = list(entry.columns)
    columns[list(EVENT_COLUMNS).index(column)] = value
    return entry._replace(columns=tuple(columns))


class TestColumns:
    def test_columns_that_copy_the_hashed_event_verify(self):
        report = verify(chain_with_columns(5))
        assert report.ok and report.checked == 5

    def test_a_time_given_as_text_is_compared_as_an_instant(self):
        entries = [with_column(e, "time", e.columns[-1].isoformat()) for e in chain_with_columns(3)]
        assert verify(entries).ok

    @pytest.mark.parametrize("column", EVENT_COLUMNS)
    def test_a_column_that_differs_from_the_hashed_event_is_reported_naming_it(self, column):
        entries = chain_with_columns(5)
        forged = datetime(2020, 1, 1, tzinfo=UTC) if column == "time" else "forged"
        entries[2] = with_column(entries[2], column, forged)
        report = verify(entries)
        assert (report.first_broken_seq, report.reason) == (3, "column_mismatch")
        assert report.detail.startswith(f"the {column} column ")
        assert len(report.problems) == 1

    def test_a_null_column_for_an_attribute_the_event_has_is_reported(self):
        entries = chain_with_columns(2)
        entries[1] = with_column(entries[1], "actor", None)
        assert verify(entries).reason == "column_mismatch"

    def test_a_column_the_source_does_not_carry_is_not_checked(self):
        entries = [with_column(e, "source", ABSENT) for e in chain_with_columns(3)]
        assert verify(entries).ok

    def test_an_empty_column_equals_a_missing_attribute_only_when_blanks_are_nulls(self):
        entries = [with_column(e, "project", "") for e in chain_with_columns(2)]
        assert verify(entries, blank_is_null=True).ok
        assert verify(entries).reason == "column_mismatch"

    def test_an_event_that_is_not_a_json_object_covers_no_column(self):
        entries = chain_with_columns(2)
        entries[1] = entries[1]._replace(canonical=b"[1]")
        report = verify(entries)
        assert [p["reason"] for p in report.problems] == ["hash_mismatch", "column_mismatch"]


class TestSigner:
    def test_a_checkpoint_verifies_against_the_signer_public_key_only(self):
        signer = Signer(SEED)
        checkpoint = signer.sign(3, "ab" * 32, datetime.now(UTC))
        assert signature_valid(checkpoint, signer.public_key)
        assert not signature_valid(checkpoint.model_copy(update={"seq": 4}), signer.public_key)
        assert not signature_valid(checkpoint, Signer(base64.b64encode(b"x" * 32).decode()).public_key)

    def test_a_seed_that_is_not_32_bytes_is_refused(self):
        import pytest

        with pytest.raises(ValueError, match="32 bytes"):
            Signer(base64.b64encode(b"short").decode())
