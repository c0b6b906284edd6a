"""The datasets commands' tables for people (``--json`` prints what the API returns instead)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from rich.filesize import decimal
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import when

CELL_MAX = 200  # characters of a preview cell


class SplitName(StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


SPLITS = tuple(SplitName)


def cell(value: Any, limit: int = CELL_MAX) -> str:
    """A preview cell: strings as they are, anything else as compact JSON; cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_counts(splits: dict[str, Any]) -> list[int]:
    counts = splits.get("counts") or {}
    return [counts.get(name, 0) for name in SPLITS]


def splits_text(splits: dict[str, Any]) -> str:
    return "  ".join(f"{name} {count:,}" for name, count in zip(SPLITS, split_counts(splits), strict=True))


def diff_text(diff: dict[str, int] | None) -> str:
    if not diff:
        return ""
    return f"+{diff.get('added', 0):,} -{diff.get('removed', 0):,} ={diff.get('unchanged', 0):,}"


def invalid_rows_table(problem: dict[str, Any], errors: list[dict[str, Any]]) -> Table | None:
    """The table of an upload's invalid rows when every error names its line; else None (a list of fields)."""
    if not all("line" in error for error in errors):
        return None
    return row_errors_table(errors, title=row_errors_title(problem, errors))


def row_errors_title(problem: dict[str, Any], errors: list[dict[str, Any]]) -> str:
    invalid = problem.get("invalid_rows")
    if isinstance(invalid, int) and invalid > len(errors):
        return f"{invalid:,} invalid rows; the first {len(errors)} errors"
    return "invalid rows"


# -- output ------------------------------------------------------------------------------------------------------
def row_errors_table(errors: Iterable[dict[str, Any]], *, title: str = "invalid rows") -> Table:
    table = Table("line", "field", "message", title=title, title_justify="left")
    for error in errors:
        field, message = escape(str(error.get("field", ""))), escape(str(error.get("message", "")))
        table.add_row(str(error.get("line", "")), field, message)
    return table


def version_table(version: dict[str, Any]) -> Table:
    table = Table(show_header=False, title=f"version {version['version']}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("sha256", version["sha256"])
    table.add_row("rows", f"{version['row_count']:,}")
    table.add_row("size", decimal(version["size_bytes"]))
    table.add_row("splits", splits_text(version.get("splits") or {}))
    table.add_row("source", str(version.get("source_type", "")))
    if version.get("diff"):
        table.add_row("diff to parent", f"{diff_text(version['diff'])} (added, removed, unchanged)")
    if version.get("invalid_rows_dropped"):
        table.add_row("invalid rows dropped", f"{version['invalid_rows_dropped']:,}")
    table.add_row("created", f"{when(version['created_at'])} by {escape(version['created_by'])}")
    if version.get("deprecated_at"):
        reason = escape(version.get("deprecation_reason") or "")
        by = escape(version.get("deprecated_by") or "")
        table.add_row("[red]deprecated[/red]", f"{when(version['deprecated_at'])} by {by}: {reason}")
    table.add_row("uri", escape(version["uri"]))
    return table


CLEANING_STEPS = (
    ("rows_read", "rows read"),
    ("invalid_rows", "invalid rows"),
    ("rows_normalized", "rows normalized"),
    ("empty_removed", "empty rows removed"),
    ("duplicates_removed", "duplicates removed"),
    ("too_short_removed", "too short, removed"),
    ("too_long_removed", "too long, removed"),
    ("rows_with_pii", "rows with PII redacted"),
    ("rows_kept", "rows kept"),
)


def cleaning_settings(config: dict[str, Any]) -> str:
    """The cleaning an upload asked for, in one line."""
    switches = [name if config.get(name) else f"no {name}" for name in ("normalize", "drop_empty", "dedupe")]
    bounds = [f"{name}={config[name]}" for name in ("min_chars", "max_chars") if config.get(name) is not None]
    redact = f"redact_pii={','.join(config['redact_pii'])}" if config.get("redact_pii") else "no PII redaction"
    return ", ".join([*switches, *bounds, redact])


def cleaning_table(report: dict[str, Any]) -> Table:
    table = Table("step", "rows", title="cleaning report", title_justify="left")
    table.columns[1].justify = "right"
    for key, label in CLEANING_STEPS:
        if key in report:
            table.add_row(label, f"{report[key]:,}")
    for kind, count in (report.get("pii_redacted") or {}).items():
        table.add_row(f"  {escape(kind)} redacted", f"{count:,}")
    return table


def datasets_table(items: list[dict[str, Any]]) -> Table:
    table = Table("name", "format", "latest", "description", "created by", "created")
    for item in items:
        latest = item.get("latest_version")
        table.add_row(
            escape(item["name"]),
            item["format"],
            "" if latest is None else str(latest),
            escape(cell(item.get("description") or "", 80)),
            escape(item["created_by"]),
            when(item["created_at"]),
        )
    return table


def versions_table(versions: list[dict[str, Any]]) -> Table:
    table = Table("version", "rows", "size", "sha256", "train/val/test", "diff", "source", "created", "by", "status")
    for v in versions:
        status = f"[red]deprecated[/red]: {escape(v.get('deprecation_reason') or '')}" if v.get("deprecated_at") else ""
        table.add_row(
            str(v["version"]),
            f"{v['row_count']:,}",
            decimal(v["size_bytes"]),
            v["sha256"][:12],
            "/".join(f"{count:,}" for count in split_counts(v.get("splits") or {})),
            diff_text(v.get("diff")),
            str(v.get("source_type", "")),
            when(v["created_at"]),
            escape(v["created_by"]),
            status,
        )
    return table


def preview_table(rows: list[dict[str, Any]]) -> Table:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = Table("#", *columns)
    for number, row in enumerate(rows, start=1):
        table.add_row(str(number), *(escape(cell(row[c])) if c in row else "" for c in columns))
    return table
