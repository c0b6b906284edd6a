"""What every service's part of the ``llmops`` command line shares: calling the service over HTTP with a bearer
token, turning its RFC 9457 problems into messages and exit codes, and streaming downloads to disk.

A service's ``cli.py`` keeps its commands, options and output; the plumbing is here. This module imports no web
framework and no database layer, so that ``llmops`` starts fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from llmops.settings import ClientSettings

#: The media type of the services' errors (the same as :data:`llmops.errors.PROBLEM_JSON`, which imports FastAPI).
PROBLEM_JSON = "application/problem+json"

#: Connecting should be quick; a download, an export or a long verification may pause for minutes between bytes.
TIMEOUT = httpx.Timeout(30.0, read=600.0)

#: Results (tables, JSON) go to stdout; errors, notices and progress to stderr.
out = Console()
err = Console(stderr=True, soft_wrap=True)

#: The ``--token`` option every command that calls a service has.
Token = Annotated[str | None, typer.Option("--token", help="bearer token (default: LLMOPS_CLIENT_TOKEN)")]

#: Builds a table of a problem's errors (given the problem and its non-empty ``errors``), or None for a plain list.
ErrorsTable = Callable[[dict[str, Any], list[dict[str, Any]]], RenderableType | None]


def url_option(service: str) -> Any:
    """The ``--url`` option of a service's commands; its default is named after :class:`ClientSettings`'
    ``<service>_url`` (``LLMOPS_CLIENT_<SERVICE>_URL``)."""
    default = ClientSettings.model_fields[f"{service}_url"].default
    help_ = f"the {service} service's base URL (default: LLMOPS_CLIENT_{service.upper()}_URL, else {default})"
    return Annotated[str | None, typer.Option("--url", help=help_)]


def fail(message: str, *details: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` and each detail (indented) on stderr, and end the command with ``code``."""
    err.print(f"[red]error:[/red] {escape(message)}")
    for detail in details:
        err.print(f"  {escape(detail)}")
    raise typer.Exit(code)


@contextmanager
def connect(
    service_name: str,
    url: str | None,
    token: str | None,
    *,
    default_url: str | None = None,
    timeout: httpx.Timeout = TIMEOUT,
    issue_hint: str = "llmops token issue --role ROLE --project P",
) -> Iterator[httpx.Client]:
    """An HTTP client for a service, sending the bearer token.

    ``url`` and ``token`` are the command's options; when not given, ``LLMOPS_CLIENT_TOKEN`` and ``default_url``
    (else :class:`ClientSettings`' ``<service_name>_url``) apply. A missing token (the message shows
    ``issue_hint``), an unreachable service or one that does not answer in time ends the command (exit 1).
    """
    settings = ClientSettings()
    token = token or (settings.token.get_secret_value() if settings.token else None)
    if not token:
        fail(f"no bearer token: pass --token or set LLMOPS_CLIENT_TOKEN (`{issue_hint}`)")
    base_url = url or default_url or getattr(settings, f"{service_name}_url")
    try:
        with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=timeout) as client:
            yield client
    except httpx.TimeoutException as exc:
        fail(f"the {service_name} service at {base_url} did not answer in time ({type(exc).__name__})")
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        fail(f"cannot reach the {service_name} service at {base_url}: {exc}")


def check(
    response: httpx.Response, *, hints: dict[str, str] | None = None, errors_table: ErrorsTable | None = None
) -> httpx.Response:
    """The response if it succeeded; else print why and exit 1.

    A problem document prints its status and detail, then its ``errors``: one ``field: message`` line each, or the
    table ``errors_table`` builds from them (when it builds one), then the hint ``hints`` has for the problem's
    type, if any. Any other failed response prints its status and the start of its body.
    """
    if response.is_success:
        return response
    response.read()
    if not response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        fail(f"{response.status_code} {response.reason_phrase}: {response.text[:500]}")
    problem = response.json()
    message = f"{response.status_code} {problem.get('detail') or problem.get('title')}"
    errors = problem.get("errors") or []
    hint = (hints or {}).get(problem.get("type"))
    hint_lines = [f"hint: {hint}"] if hint else []
    table = errors_table(problem, errors) if errors_table is not None and errors else None
    if table is None:
        fail(message, *(f"{error.get('field')}: {error.get('message')}" for error in errors), *hint_lines)
    err.print(f"[red]error:[/red] {escape(message)}")
    err.print(table)
    for line in hint_lines:
        err.print(escape(line))
    raise typer.Exit(1)


def params(**values: Any) -> dict[str, Any]:
    """Query parameters: the values given, without those that are None (the service's defaults apply)."""
    return {name: value for name, value in values.items() if value is not None}


def echo_json(value: Any) -> None:
    """Print ``value`` as one line of JSON on stdout (non-ASCII characters as they are)."""
    typer.echo(json.dumps(value, ensure_ascii=False))


def progress_bar(*, transient: bool = False) -> Progress:
    """A progress display of bytes on stderr: description, bar, bytes done/total, speed and time remaining."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=err, transient=transient)


@dataclass(frozen=True)
class Saved:
    """What :func:`save` wrote: the file, its size in bytes, its lines (newlines) and its sha256."""

    path: Path
    size: int
    lines: int
    sha256: str


def save(
    chunks: Iterable[bytes],
    path: Path,
    *,
    total: int | None = None,
    label: str = "downloading",
    transient: bool = False,
    verify: Callable[[Saved], None] | None = None,
) -> Saved:
    """Stream ``chunks`` to ``path`` with a progress bar (``label``, out of ``total`` bytes when known).

    The chunks are written to ``path.part``, which is renamed to ``path`` once complete and accepted by
    ``verify`` (which may end the command); on any error, or when the command ends, it is removed: a cut-off
    download never passes for a shorter file.
    """
    partial = path.with_name(path.name + ".part")
    size = lines = 0
    digest = hashlib.sha256()
    try:
        with progress_bar(transient=transient) as progress, partial.open("wb") as file:
            task = progress.add_task(escape(label), total=total)
            for chunk in chunks:
                file.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
                progress.update(task, completed=size)
        saved = Saved(path, size, lines, digest.hexdigest())
        if verify is not None:
            verify(saved)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return saved
