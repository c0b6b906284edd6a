"""The compact set of row digests the parallel merge de-duplicates with: it must behave as a set of bytes."""

from __future__ import annotations

import os
import random

from llmops_datasets.digest_set import DigestSet


class TestDigestSet:
    def test_it_holds_what_a_set_holds_and_lists_it_sorted(self, monkeypatch, tmp_path):
        monkeypatch.setattr(DigestSet, "RECENT", 64)  # merge into the large array often
        monkeypatch.setattr("llmops_datasets.digest_set._SLICE", 7)  # and write it in many slices
        pool = [os.urandom(16) for _ in range(3000)] + [b"ab" + bytes(14), b"ab" + bytes(13) + b"\x01", bytes(16)]
        fill_like_a_set(pool, blocks=60, largest=120, path=tmp_path / "hashes")

    def test_the_recent_part_is_merged_into_the_large_one_slice_by_slice(self, monkeypatch, tmp_path):
        monkeypatch.setattr(DigestSet, "RECENT", 10)
        monkeypatch.setattr("llmops_datasets.digest_set._SLICE", 3)
        digests, written = DigestSet(), [os.urandom(16) for _ in range(25)]
        for start in range(0, 25, 5):
            digests.add(b"".join(written[start : start + 5]))
        assert (len(digests._large[0]), len(digests._recent[0])) == (20, 5)
        digests.write(tmp_path / "hashes")
        assert (tmp_path / "hashes").read_bytes() == b"".join(sorted(written))

    def test_digests_whose_first_halves_tie_are_told_apart(self, monkeypatch, tmp_path):
        monkeypatch.setattr(DigestSet, "RECENT", 16)
        firsts = [os.urandom(8) for _ in range(4)]
        pool = [random.choice(firsts) + os.urandom(8) for _ in range(300)]
        fill_like_a_set(pool, blocks=40, largest=40, path=tmp_path / "hashes")


def fill_like_a_set(pool: list[bytes], *, blocks: int, largest: int, path) -> None:
    """Blocks of digests drawn from ``pool`` (repeats within and across blocks) go into a DigestSet and a set: they
    must agree on membership before each block, on size after, and on the sorted row-hash file at the end."""
    digests, expected = DigestSet(), set()
    for n in range(blocks):
        block = random.choices(pool, k=random.randrange(0, largest))
        data = b"".join(block)
        known = digests.known(data)
        assert known.tolist() == [digest in expected for digest in block]
        digests.add(data, known if n % 2 else None)  # with the answer the merge already has, or asking again
        expected.update(block)
        assert len(digests) == len(expected)
    digests.write(path)
    assert path.read_bytes() == b"".join(sorted(expected))
