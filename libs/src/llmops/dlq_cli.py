"""`llmops dlq list|show|replay`: the dead-letter topic through the audit service's admin API.

Dead letters are what consumers could not process: list them with their reasons, show one with its headers and the
start of its value, and once the cause is fixed replay them to their original topics (consumers are idempotent, so
replaying twice is harmless). Needs an admin token for every project (``llmops token issue --role admin -p '*'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from llmops import client as llmops_client
from llmops.client import Token, check, echo_json, err, fail, out, params, url_option

app = typer.Typer(
    help="Dead letters: list, show and replay what consumers could not process (through the audit service).",
    no_args_is_help=True,
)

Url = url_option("audit")
AsJson = Annotated[bool, typer.Option("--json", help="print JSON (one object per line) instead of a table")]
Reason = Annotated[str | None, typer.Option(help="why they were dead-lettered, e.g. handler_failed, not_json")]
Consumer = Annotated[str | None, typer.Option(help="the consumer that gave up on them")]
Ids = Annotated[list[str] | None, typer.Option("--id", help="a dead letter, <partition>-<offset>; repeatable")]
Topic = Annotated[str | None, typer.Option("--topic", help="their original topic, e.g. llmops.datasets")]
FromTime = Annotated[str | None, typer.Option(help="dead-lettered at or after this ISO 8601 time")]
ToTime = Annotated[str | None, typer.Option(help="dead-lettered before this ISO 8601 time")]

ADMIN_HINT = "llmops token issue --role admin --project '*'"


def connect(url: str | None, token: str | None):
    """An HTTP client for the audit service; a missing token or an unreachable service ends the command (exit 1)."""
    return llmops_client.connect("audit", url, token, issue_hint=ADMIN_HINT)


def letters(client: httpx.Client, query: dict[str, Any], *, follow: bool) -> Iterator[dict[str, Any]]:
    """The dead letters of one page, or of every page when ``follow``."""
    cursor = None
    while True:
        page = check(client.get("/admin/dead-letters", params=params(**query, cursor=cursor))).json()
        yield from page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return
        if not follow:
            err.print("[yellow]more dead letters match:[/yellow] pass --all to fetch every page")
            return


@app.command("list")
def list_letters(
    reason: Reason = None,
    consumer: Consumer = None,
    topic: Topic = None,
    from_time: FromTime = None,
    to_time: ToTime = None,
    limit: Annotated[int, typer.Option(help="dead letters per page (1..500)")] = 50,
    all_pages: Annotated[bool, typer.Option("--all", help="follow the pages to the last dead letter")] = False,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """List dead letters with their reasons (oldest first within each partition of the dead-letter topic)."""
    query = params(reason=reason, consumer=consumer, topic=topic, from_time=from_time, to_time=to_time, limit=limit)
    with connect(url, token) as client:
        items = letters(client, query, follow=all_pages)
        if as_json:
            for item in items:
                echo_json(item)
            return
        table = Table("id", "time", "reason", "consumer", "topic", "attempts", "key", "error")
        for item in items:
            cells = ("id", "time", "reason", "consumer", "topic", "attempts", "key", "error")
            table.add_row(*("" if item[c] is None else escape(str(item[c])) for c in cells))
    if table.row_count:
        out.print(table)
    else:
        err.print("no dead letters match")


@app.command()
def show(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="<partition>-<offset>, as `list` shows it")],
    preview_bytes: Annotated[int, typer.Option(help="how much of the value to show (0..65536 bytes)")] = 4096,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Show one dead letter: why, where from, every header, and the start of its value."""
    with connect(url, token) as client:
        letter = check(client.get(f"/admin/dead-letters/{letter_id}", params={"preview_bytes": preview_bytes})).json()
    if as_json:
        echo_json(letter)
        return
    table = Table("field", "value", show_header=False)
    for name in ("id", "time", "reason", "consumer", "topic", "original_partition", "original_offset", "attempts"):
        table.add_row(name, escape(str(letter[name])))
    table.add_row("key", escape(str(letter["key"])))
    table.add_row("error", escape(str(letter["error"])))
    for name, value in letter["headers"].items():
        table.add_row(f"header {escape(name)}", escape(value))
    out.print(table)
    cut = " (truncated)" if letter["value_truncated"] else ""
    out.print(f"value: {letter['size']:,} bytes, {letter['value_encoding']}{cut}")
    out.print(escape(letter["value_preview"]), soft_wrap=True)


@app.command()
def replay(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="a dead letter <partition>-<offset>; repeatable")
    ] = None,
    reason: Reason = None,
    consumer: Consumer = None,
    topic: Topic = None,
    from_time: FromTime = None,
    to_time: ToTime = None,
    everything: Annotated[bool, typer.Option("--all", help="replay every dead letter on the topic")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be replayed; publish nothing")] = False,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Publish dead letters again to their original topics, marked as replays, once their cause is fixed.

    Choose them with --id, with filters (--reason, --consumer, --topic, --from-time, --to-time), or --all; one kind
    of selector at a time. The replay is recorded in the audit log.
    """
    criteria = params(reason=reason, consumer=consumer, topic=topic, from_time=from_time, to_time=to_time)
    chosen = [kind for kind, given in (("--id", ids), ("filters", criteria), ("--all", everything)) if given]
    if len(chosen) != 1:
        together = f", not {' and '.join(chosen)} together" if chosen else ""
        fail(
            "say which dead letters to replay: --id, filters (--reason, --consumer, --topic, --from-time, --to-time) "
            f"or --all{together}",
            code=2,
        )
    body: dict[str, Any] = {"dry_run": dry_run}
    body |= {"ids": ids} if ids else {"filter": criteria} if criteria else {"all": True}
    with connect(url, token) as client:
        result = check(client.post("/admin/dead-letters/replay", json=body)).json()
    if as_json:
        echo_json(result)
        return
    out.print(escape(summary(result)))
    for letter_id, why in result["skipped"].items():
        err.print(f"[yellow]skipped[/yellow] {escape(letter_id)}: {escape(why)}")


def summary(result: dict[str, Any]) -> str:
    """One line saying what a replay did: how many, to which topics, and the audit event recording it."""
    count, topics = result["count"], result["topics"]
    if not count:
        skipped = len(result["skipped"])
        return f"no dead letters replayed ({skipped} skipped)" if skipped else "no dead letters match: nothing replayed"
    noun = "dead letter" if count == 1 else "dead letters"
    if len(topics) == 1:
        where = f"to {next(iter(topics))}"
    else:
        where = "to " + ", ".join(f"{topic} ({n})" for topic, n in sorted(topics.items()))
    ids = result["ids"]
    span = f"{ids[0]}" if count == 1 else f"{ids[0]} … {ids[-1]}"
    if result["dry_run"]:
        return f"would replay {count} {noun} {where} ({span}); dry run: nothing published"
    return f"replayed {count} {noun} {where} ({span}; audit event {result['event_id']})"
