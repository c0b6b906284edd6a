"""What the services' commands share beyond the HTTP plumbing of :mod:`llmops.client`: project paths, ``key=value``
options, times and listings for people, and a file uploaded with a progress bar.

Like :mod:`llmops.client`, it imports no web framework and no database layer, so that ``llmops`` starts fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import RenderableType
from rich.markup import escape
from rich.progress import Progress

from llmops.client import echo_json, err, fail, out, progress_bar

#: An upload is answered once the service has processed every byte: no read limit (Ctrl-C cancels).
UPLOAD_TIMEOUT = httpx.Timeout(30.0, read=None)
#: Bytes read from a file per chunk sent.
CHUNK = 1 << 20

#: The ``--json`` option of a command that prints tables otherwise.
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def api_path(project: str, *parts: str | int) -> str:
    """``/projects/{project}/part/...``, each part quoted."""
    return "/".join(["/projects", *(quote(str(p), safe="") for p in (project, *parts))])


def key_values(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, lists, true) is taken as such, else as text.
    Raises ``ValueError`` naming the first pair that is not ``key=value``."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(pair)
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value
    return values


def when(timestamp: str | None) -> str:
    """An ISO 8601 time from the API, to the second: ``2026-01-31 12:00:00``."""
    return "" if not timestamp else timestamp.replace("T", " ")[:19]


def print_items(
    items: list[dict[str, Any]], as_json: bool, table: Callable[[list[dict[str, Any]]], RenderableType], empty: str
) -> None:
    """A listing: one JSON line per item, or a table, or (on stderr) ``empty`` when there is nothing."""
    if as_json:
        for item in items:
            echo_json(item)
    elif not items:
        err.print(empty)
    else:
        out.print(table(items))


def stop(progress: Progress) -> None:
    """Stop a progress display once (stopping it again would print another blank line on a non-terminal)."""
    if progress.live.is_started:
        progress.stop()


@contextmanager
def sending(path: Path, label: str, waiting: str) -> Iterator[tuple[Iterator[bytes], Progress]]:
    """The file's chunks, read as they are sent (never the whole file in memory), with a progress bar over the bytes
    sent; once all are sent, a spinner saying ``waiting`` while the service works on them."""
    progress = progress_bar()
    task = progress.add_task(f"uploading {escape(label)}", total=path.stat().st_size)
    spinner = err.status(waiting)

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                yield chunk
                progress.advance(task, len(chunk))
        stop(progress)
        spinner.start()

    progress.start()
    try:
        yield chunks(), progress
    finally:
        stop(progress)
        spinner.stop()


def post_file(
    client: httpx.Client,
    path: str,
    file: Path,
    *,
    waiting: str,
    headers: dict[str, str],
    params: dict[str, Any] | None = None,
    label: str | None = None,
) -> httpx.Response:
    """POST ``file`` to ``path`` as the request body, streamed with :func:`sending`; a connection that breaks on the
    way ends the command (exit 1), saying how many bytes were sent. The response is the caller's to check."""
    with sending(file, label or file.name, waiting) as (chunks, progress):
        try:
            return client.post(path, content=chunks, params=params, headers=headers)
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            stop(progress)
            sent = int(progress.tasks[0].completed)
            fail(f"the connection to {client.base_url} broke during the upload (after {sent:,} bytes sent): {exc}")
