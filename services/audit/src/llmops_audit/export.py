"""Export files of the audit log (JSONL or CSV) and their offline verification.

An export is self-describing: a header (format, whether it is a contiguous piece of the chain, the signing key),
one record per entry with its columns, its chain hashes and the exact canonical event bytes that were hashed, and the
signed checkpoints in its range. Each column copies an attribute of the event and is checked against it; the time the
log received an entry is not in the hashed event, so it is not exported, as it would not be evidence.
:func:`verify_export` needs nothing but the file and, ideally, the public key obtained from a trusted channel: it is
what an outside auditor runs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmops_audit.chain import ABSENT, EVENT_COLUMNS, ChainVerifier, Entry, Report
from llmops_schemas.events.audit import CheckpointSigned

FORMAT = "llmops-audit-export/1"
CSV_COLUMNS = (
    "kind", "seq", "event_id", "type", "source", "subject", "actor", "project", "correlation_id", "causation_id",
    "time", "prev_hash", "hash", "event",
)  # fmt: skip
_NULLABLE = ("actor", "project", "correlation_id", "causation_id")


def header(*, contiguous: bool, filters: dict[str, Any], public_key: str, key_id: str) -> dict[str, Any]:
    return {
        "kind": "header",
        "format": FORMAT,
        "contiguous": contiguous,
        "filters": filters,
        "exported_at": datetime.now(UTC).isoformat(),
        "public_key": public_key,
        "key_id": key_id,
    }


def entry_record(row) -> dict[str, Any]:
    return {
        "kind": "entry",
        "seq": row.seq,
        "event_id": str(row.event_id),
        "type": row.type,
        "source": row.source,
        "subject": row.subject,
        "actor": row.actor,
        "project": row.project,
        "correlation_id": row.correlation_id,
        "causation_id": row.causation_id,
        "time": row.time.isoformat(),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "event": row.event,
    }


def checkpoint_record(checkpoint: CheckpointSigned) -> dict[str, Any]:
    return {"kind": "checkpoint", **checkpoint.model_dump(mode="json")}


def trailer(entries: int, first_seq: int | None, last_seq: int | None) -> dict[str, Any]:
    """The last record: how many entries the file holds, so a cut-off file is told from a complete one."""
    return {"kind": "trailer", "entries": entries, "first_seq": first_seq, "last_seq": last_seq}


def _entry(record: dict[str, Any]) -> Entry:
    try:
        columns = tuple(record.get(name, ABSENT) for name in EVENT_COLUMNS)
        return Entry(
            int(record["seq"]), record["prev_hash"], record["hash"], record["event"].encode(), _with_instant(columns)
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"entry {record.get('seq')!r} is malformed: {exc!r}") from exc


def _with_instant(columns: tuple[Any, ...]) -> tuple[Any, ...]:
    # The time as an instant, as the database gives it; text that is not a time stays as it is, to be reported.
    try:
        return (*columns[:-1], datetime.fromisoformat(columns[-1]))
    except (TypeError, ValueError):
        return columns


def _checkpoint(record: dict[str, Any]) -> CheckpointSigned:
    try:
        return CheckpointSigned.model_validate({k: v for k, v in record.items() if k != "kind"})
    except ValidationError as exc:
        raise ValueError(f"checkpoint {record.get('seq')!r} is malformed: {exc.errors()[0]['msg']}") from exc


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def csv_header() -> str:
    return _csv(CSV_COLUMNS)


def csv_row(record: dict[str, Any]) -> str:
    """One CSV line; the header record and checkpoints carry their JSON in the ``event`` column."""
    if record["kind"] == "entry":
        return _csv("" if record.get(c) is None else record[c] for c in CSV_COLUMNS)
    other = {"kind": record["kind"], "seq": record.get("seq", ""), "hash": record.get("hash", "")}
    other["event"] = json.dumps(record, separators=(",", ":"))
    return _csv(other.get(c, "") for c in CSV_COLUMNS)


def is_csv(path: Path) -> bool:
    """Whether ``path`` holds a CSV export (else JSONL)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return handle.readline().startswith("kind,")


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL or CSV export, whichever ``path`` holds; in CSV an empty column is read as null."""
    with path.open(newline="", encoding="utf-8") as handle:
        first = handle.readline()
        handle.seek(0)
        if first.startswith("kind,"):
            for row in csv.DictReader(handle):
                if row["kind"] == "entry":
                    yield {**row, **{c: None for c in _NULLABLE if row.get(c) == ""}, "seq": int(row["seq"])}
                else:
                    yield json.loads(row["event"])
        else:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"line {number} is not JSON: {exc}") from exc
                    if not isinstance(record, dict):
                        raise ValueError(f"line {number} is not a JSON object")
                    yield record


def verify_export(path: Path, *, public_key: bytes | None = None) -> tuple[Report, list[str]]:
    """Verify an export: every entry's hash and columns (against its hashed event), the links between entries (when
    contiguous), and every checkpoint's signature and hash. Returns the report and warnings (e.g. the key was taken
    from the file itself)."""
    import base64

    warnings: list[str] = []
    records = read_records(path)
    head = next(records, None)
    if head is None or head.get("kind") != "header" or head.get("format") != FORMAT:
        raise ValueError(f"{path} is not an {FORMAT} file (its first record is not the export header)")
    contiguous = bool(head.get("contiguous"))
    if not contiguous:
        warnings.append("filtered export: each entry's hash is checked, not the links between entries")
    if public_key is None:
        public_key = base64.b64decode(head["public_key"])
        warnings.append("no --public-key given: trusting the key written in the file itself")
    # Checkpoints come last in the file: read it once for them, then again for the entries (memory stays flat).
    signed, trailers = [], []
    for record in records:
        if record.get("kind") == "checkpoint":
            signed.append(_checkpoint(record))
        elif record.get("kind") == "trailer":
            trailers.append(record)
    verifier = ChainVerifier(contiguous=contiguous, blank_is_null=is_csv(path))
    verifier.feed(
        (_entry(r) for r in read_records(path) if r.get("kind") == "entry"),
        keep_hashes_for={c.seq for c in signed},
    )
    verifier.check_checkpoints(signed, public_key)
    report = verifier.report
    if not trailers:
        warnings.append("the file has no trailer record: it may have been cut off")
    elif trailers[-1].get("entries") != report.checked:
        at = (report.last_seq or 0) + 1
        report.fail(
            at,
            "truncated",
            f"the trailer announces {trailers[-1].get('entries')} entries, the file holds {report.checked}",
        )
    return report, warnings
