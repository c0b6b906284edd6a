"""`llmops audit ...`: query, trace, export and verify the audit log (through the service's API), and verify an
export offline."""

from __future__ import annotations

import base64
import binascii
import csv
import json
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from llmops import client as llmops_client
from llmops.client import Token, check, echo_json, err, fail, out, params, save, url_option

app = typer.Typer(
    help="The audit log: query, history, export, verify; verify-export works offline.", no_args_is_help=True
)


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


Url = url_option("audit")
AsJson = Annotated[bool, typer.Option("--json", help="print JSON (one object per line) instead of a table")]
EventType = Annotated[str | None, typer.Option("--type", help="event type, e.g. dataset.version.created")]
Actor = Annotated[str | None, typer.Option(help="who caused the event")]
Subject = Annotated[str | None, typer.Option(help="the resource the event is about")]
Project = Annotated[str | None, typer.Option(help="project")]
CorrelationId = Annotated[str | None, typer.Option(help="everything one request caused")]
FromTime = Annotated[str | None, typer.Option(help="events at or after this ISO 8601 time")]
ToTime = Annotated[str | None, typer.Option(help="events before this ISO 8601 time")]
FromSeq = Annotated[int | None, typer.Option(help="first sequence number")]
ToSeq = Annotated[int | None, typer.Option(help="last sequence number")]


# -- the service's API -------------------------------------------------------------------------------------------
def connect(url: str | None, token: str | None) -> AbstractContextManager[httpx.Client]:
    """An HTTP client for the audit service; a missing token or an unreachable service ends the command (exit 1)."""
    return llmops_client.connect("audit", url, token, issue_hint="llmops token issue --role auditor ...")


def entries(client: httpx.Client, query: dict[str, Any], *, follow: bool) -> Iterator[dict[str, Any]]:
    """The entries of one page, or of every page when ``follow`` (each ``next_cursor`` in turn)."""
    cursor = None
    while True:
        page = check(client.get("/audit/events", params=params(**query, cursor=cursor))).json()
        yield from page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return
        if not follow:
            err.print("[yellow]more entries match:[/yellow] pass --all to fetch every page")
            return


# -- output ------------------------------------------------------------------------------------------------------
def show_entries(items: Iterable[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for item in items:
            echo_json(item)
        return
    table = Table("seq", "time", "type", "subject", "actor", "project")
    for item in items:
        cells = (item["seq"], item["time"], item["type"], item["subject"], item["actor"], item["project"])
        table.add_row(*("" if c is None else escape(str(c)) for c in cells))
    if table.row_count:
        out.print(table)
    else:
        err.print("no entries")


def show_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report))
        return
    span = f"seq {report['first_seq']}..{report['last_seq']}" if report["checked"] else "no entries"
    checked = f"{report['checked']} entries checked ({span}), {report['checkpoints_checked']} checkpoints matched"
    if report["ok"]:
        out.print(f"[green]ok[/green]: {checked}")
        return
    out.print(f"[red]broken[/red] at seq {report['first_broken_seq']}: {report['reason']}: {escape(report['detail'])}")
    out.print(checked)
    for problem in report["problems"][1:]:
        out.print(f"  seq {problem['seq']}: {problem['reason']}: {escape(problem['detail'])}")


# -- commands ----------------------------------------------------------------------------------------------------
@app.command()
def query(
    type_: EventType = None,
    actor: Actor = None,
    subject: Subject = None,
    project: Project = None,
    correlation_id: CorrelationId = None,
    from_time: FromTime = None,
    to_time: ToTime = None,
    limit: Annotated[int, typer.Option(help="entries per page (1..1000)")] = 100,
    all_pages: Annotated[bool, typer.Option("--all", help="follow the pages to the last entry")] = False,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Query the log by type, actor, subject, project, correlation id and time, in chain order."""
    selection = params(
        type=type_,
        actor=actor,
        subject=subject,
        project=project,
        correlation_id=correlation_id,
        from_time=from_time,
        to_time=to_time,
        limit=limit,
    )
    with connect(url, token) as client:
        show_entries(entries(client, selection, follow=all_pages), as_json)


@app.command()
def history(
    subject: Annotated[str, typer.Argument(help="the resource, e.g. a dataset version id")],
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Every event about SUBJECT and every event linked to those by causation (causes and effects)."""
    with connect(url, token) as client:
        show_entries(check(client.get(f"/audit/subjects/{quote(subject, safe='')}/history")).json(), as_json)


@app.command("export")
def export_log(
    output: Annotated[Path, typer.Option("--output", "-o", help="the file to write", dir_okay=False)],
    format_: Annotated[Format, typer.Option("--format", help="file format")] = Format.JSONL,
    type_: EventType = None,
    actor: Actor = None,
    subject: Subject = None,
    project: Project = None,
    correlation_id: CorrelationId = None,
    from_time: FromTime = None,
    to_time: ToTime = None,
    from_seq: FromSeq = None,
    to_seq: ToSeq = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Download entries with their chain hashes and signed checkpoints into a file.

    The download is streamed to disk. Check the file offline with `verify-export`. Only a sequence range (no other
    filter) exports a contiguous piece of the chain, whose links can be checked.
    """
    selection = params(
        format=format_.value,
        type=type_,
        actor=actor,
        subject=subject,
        project=project,
        correlation_id=correlation_id,
        from_time=from_time,
        to_time=to_time,
        from_seq=from_seq,
        to_seq=to_seq,
    )
    # Streamed to OUTPUT.part and renamed when complete: a cut-off download must not pass for a shorter export.
    with connect(url, token) as client, client.stream("GET", "/audit/export", params=selection) as response:
        check(response)
        saved = save(response.iter_bytes(), output, label="exporting", transient=True)
    err.print(f"wrote {saved.size:,} bytes to {escape(str(output))}")


@app.command()
def verify(
    from_seq: FromSeq = None,
    to_seq: ToSeq = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Have the service recompute the chain and check its signed checkpoints.

    Checks all of the chain unless --from-seq/--to-seq narrow it. Exit 0 when intact, 1 when broken.
    """
    with connect(url, token) as client:
        report = check(client.get("/audit/verify", params=params(from_seq=from_seq, to_seq=to_seq))).json()
    show_report(report, as_json)
    if not report["ok"]:
        raise typer.Exit(1)


def public_key_bytes(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        key = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise typer.BadParameter(f"not base64: {exc}", param_hint="'--public-key'") from exc
    if len(key) != 32:
        raise typer.BadParameter(f"an Ed25519 public key is 32 bytes, not {len(key)}", param_hint="'--public-key'")
    return key


@app.command("verify-export")
def verify_export(
    file: Annotated[Path, typer.Argument(help="a JSONL or CSV export", exists=True, dir_okay=False)],
    public_key: Annotated[
        str | None,
        typer.Option(help="the service's public key (base64), from a trusted channel; default: the file's own"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Verify an export file offline, without the service.

    Checks each entry's hash, the links between entries (contiguous exports) and each checkpoint's signature.
    Exit 0 when intact, 1 when broken, 2 when the file is not a readable export.
    """
    from llmops_audit import export  # the chain's hashing and signatures, needed by this command only

    key = public_key_bytes(public_key)
    try:
        report, warnings = export.verify_export(file, public_key=key)
    # A malformed record surfaces from verify_export as any of these, not only ValueError.
    except (ValueError, KeyError, TypeError, AttributeError, OSError, csv.Error) as exc:
        fail(f"{file} is not a readable export: {type(exc).__name__}: {exc}", code=2)
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    show_report(report.as_dict(), as_json)
    if not report.ok:
        raise typer.Exit(1)
