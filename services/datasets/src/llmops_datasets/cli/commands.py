"""The commands of `llmops datasets`, their options, and what they send."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from llmops import client as llmops_client
from llmops.cli_kit import UPLOAD_TIMEOUT, AsJson, api_path, post_file, print_items, when
from llmops.client import TIMEOUT, Saved, Token, echo_json, err, fail, out, params, save, url_option
from llmops_datasets.cli.tables import (
    SplitName,
    cleaning_settings,
    cleaning_table,
    datasets_table,
    invalid_rows_table,
    preview_table,
    row_errors_table,
    version_table,
    versions_table,
)
from llmops_datasets.formats import FileType, Format

app = typer.Typer(help="Datasets: create, upload, list, show, preview, download, deprecate.", no_args_is_help=True)

#: The Content-Type each file type is uploaded with (the service accepts these among others).
CONTENT_TYPE: dict[FileType, str] = {
    FileType.JSONL: "application/jsonl",
    FileType.CSV: "text/csv",
    FileType.PARQUET: "application/vnd.apache.parquet",
}
#: File extensions the upload's --type defaults from.
EXTENSIONS: dict[str, FileType] = {
    ".jsonl": FileType.JSONL,
    ".ndjson": FileType.JSONL,
    ".csv": FileType.CSV,
    ".parquet": FileType.PARQUET,
}
#: What to do about an upload's problem, by problem type (the service's words name its query parameters).
UPLOAD_HINTS = {"urn:llmops:problem:invalid-rows": "fix those rows, or pass --keep-valid to store only the valid ones"}

Url = url_option("datasets")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project the dataset belongs to")]
Name = Annotated[str, typer.Argument(help="the dataset's name")]
Version = Annotated[int, typer.Argument(help="the version number", min=1)]
Split = Annotated[SplitName | None, typer.Option("--split", help="one split only (default: every row)")]


# -- HTTP and errors (the plumbing is llmops.client's) -----------------------------------------------------------
def connect(
    url: str | None, token: str | None, *, timeout: httpx.Timeout = TIMEOUT
) -> AbstractContextManager[httpx.Client]:
    """An HTTP client for the datasets service; a missing token or an unreachable service ends the command (exit 1)."""
    issue_hint = "llmops token issue --role data-steward --project P ..."
    return llmops_client.connect("datasets", url, token, timeout=timeout, issue_hint=issue_hint)


def check(response: httpx.Response, *, hints: dict[str, str] | None = None) -> httpx.Response:
    """The response if it succeeded; else print the problem's detail and its errors (a table of the rows that do not
    match the format, with line, field and message), and the hint for the problem's type if any; exit 1."""
    return llmops_client.check(response, hints=hints, errors_table=invalid_rows_table)


def dataset_path(project: str, *parts: str | int) -> str:
    """``/projects/{project}/datasets[/part...]``, each part quoted."""
    return api_path(project, "datasets", *parts)


# -- pure helpers ------------------------------------------------------------------------------------------------
def file_type_of(path: Path) -> FileType:
    """The file type an extension stands for (.jsonl/.ndjson, .csv, .parquet; any case)."""
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise typer.BadParameter(
            f"cannot tell the file type of {path.name!r} from its extension ({', '.join(EXTENSIONS)}); pass --type",
            param_hint="'--type'",
        )
    return found


def upload_params(
    *,
    redact_pii: str | None = None,
    pii_locales: str | None = None,
    min_chars: int | None = None,
    max_chars: int | None = None,
    dedupe: bool = True,
    normalize: bool = True,
    drop_empty: bool = True,
    keep_valid: bool = False,
    train: float | None = None,
    validation: float | None = None,
    test: float | None = None,
    seed: int | None = None,
    delimiter: str | None = None,
) -> dict[str, Any]:
    """The upload's query parameters: only what the user chose; the service's defaults apply to the rest."""
    return params(
        redact_pii=redact_pii,
        pii_locales=pii_locales,
        min_chars=min_chars,
        max_chars=max_chars,
        dedupe=None if dedupe else False,
        normalize=None if normalize else False,
        drop_empty=None if drop_empty else False,
        keep_valid=True if keep_valid else None,
        train=train,
        validation=validation,
        test=test,
        seed=seed,
        delimiter="\t" if delimiter == "tab" else delimiter,
    )


# -- commands ----------------------------------------------------------------------------------------------------
@app.command()
def create(
    name: Name,
    format_: Annotated[Format, typer.Option("--format", help="the format every row must have")],
    project: ProjectOpt,
    description: Annotated[str, typer.Option(help="what the dataset is for")] = "",
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a dataset with a declared row format (chat, instruction, text, classification)."""
    body = {"name": name, "format": format_.value, "description": description}
    with connect(url, token) as client:
        dataset = check(client.post(dataset_path(project), json=body)).json()
    if as_json:
        echo_json(dataset)
        return
    out.print(f"created dataset [bold]{escape(dataset['name'])}[/bold] ({dataset['format']}) in project {project}")


@app.command()
def upload(
    name: Name,
    file: Annotated[Path, typer.Argument(help="a JSONL, CSV or Parquet file", exists=True, dir_okay=False)],
    project: ProjectOpt,
    type_: Annotated[
        FileType | None, typer.Option("--type", help="the file's type (default: from its extension)")
    ] = None,
    redact_pii: Annotated[
        str | None, typer.Option("--redact-pii", help="PII kinds to redact: 'all' or a list, e.g. email,phone")
    ] = None,
    pii_locales: Annotated[
        str | None,
        typer.Option(
            "--pii-locales", help="locales whose phones and national ids to redact, e.g. de_DE,fr_FR (default: all)"
        ),
    ] = None,
    min_chars: Annotated[int | None, typer.Option(help="drop rows with fewer characters of text")] = None,
    max_chars: Annotated[int | None, typer.Option(help="drop rows with more characters of text")] = None,
    dedupe: Annotated[bool, typer.Option("--dedupe/--no-dedupe", help="drop exact duplicate rows")] = True,
    normalize: Annotated[
        bool, typer.Option("--normalize/--no-normalize", help="Unicode NFC and whitespace normalisation")
    ] = True,
    drop_empty: Annotated[bool, typer.Option("--drop-empty/--keep-empty", help="drop rows whose text is empty")] = True,
    keep_valid: Annotated[
        bool, typer.Option("--keep-valid", help="store the valid rows when some are invalid (default: refuse)")
    ] = False,
    train: Annotated[float | None, typer.Option(help="share of rows in the train split (default 0.8)")] = None,
    validation: Annotated[float | None, typer.Option(help="share in the validation split (default 0.1)")] = None,
    test: Annotated[float | None, typer.Option(help="share in the test split (default 0.1)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the split assignment (default 42)")] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="a CSV file's delimiter: , ; | or tab (default: the one its header shows)")
    ] = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Upload FILE as a new version of dataset NAME: validated, cleaned and stored by the service.

    The file is streamed. Exit 1 when rows do not match the dataset's format (each is listed by line and field)
    unless --keep-valid; the same content as an existing version stores nothing and says so.
    """
    file_type = type_ or file_type_of(file)
    query = upload_params(
        redact_pii=redact_pii,
        pii_locales=pii_locales,
        min_chars=min_chars,
        max_chars=max_chars,
        dedupe=dedupe,
        normalize=normalize,
        drop_empty=drop_empty,
        keep_valid=keep_valid,
        train=train,
        validation=validation,
        test=test,
        seed=seed,
        delimiter=delimiter,
    )
    headers = {"content-type": CONTENT_TYPE[file_type], "content-length": str(file.stat().st_size)}
    waiting = "the service is validating, cleaning and storing the rows"
    with connect(url, token, timeout=UPLOAD_TIMEOUT) as client:
        path = dataset_path(project, name, "versions")
        response = post_file(client, path, file, waiting=waiting, headers=headers, params=query)
    version = check(response, hints=UPLOAD_HINTS).json()
    created = response.status_code == 201
    notice = (
        f"[green]created[/green] version {version['version']} of {escape(name)}"
        if created
        else f"[yellow]unchanged[/yellow]: same content as version {version['version']} of {escape(name)}; "
        "nothing new was stored"
    )
    if as_json:
        err.print(notice)
        echo_json(version)
        return
    out.print(notice)
    out.print(version_table(version))
    if created:
        out.print(cleaning_table(version["cleaning"]))
        out.print(f"cleaning settings: {escape(cleaning_settings(version['cleaning'].get('config') or {}))}")
        if version.get("errors"):
            out.print(row_errors_table(version["errors"], title="invalid rows dropped (--keep-valid)"))


@app.command("list")
def list_datasets(
    project: ProjectOpt,
    search: Annotated[str | None, typer.Option("--search", help="search in names and descriptions")] = None,
    format_: Annotated[Format | None, typer.Option("--format", help="only datasets of this format")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (1..500)")] = 100,
    offset: Annotated[int, typer.Option(help="skip this many")] = 0,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """List and search the project's datasets."""
    query = params(q=search, format=format_.value if format_ else None, limit=limit, offset=offset)
    with connect(url, token) as client:
        items = check(client.get(dataset_path(project), params=query)).json()
    print_items(items, as_json, datasets_table, "no datasets")
    if items and not as_json and len(items) == limit:
        err.print(f"[yellow]more may match:[/yellow] pass --offset {offset + limit}")


@app.command()
def show(
    name: Name,
    project: ProjectOpt,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """A dataset and its versions (rows, hash, splits, diff to the previous version, deprecation)."""
    with connect(url, token) as client:
        dataset = check(client.get(dataset_path(project, name))).json()
    if as_json:
        echo_json(dataset)
        return
    out.print(f"[bold]{escape(dataset['name'])}[/bold] ({dataset['format']}) in project {escape(dataset['project'])}")
    if dataset.get("description"):
        out.print(escape(dataset["description"]))
    out.print(f"created {when(dataset['created_at'])} by {escape(dataset['created_by'])}")
    if dataset["versions"]:
        out.print(versions_table(dataset["versions"]))
    else:
        out.print("no versions yet: `llmops datasets upload`")


@app.command()
def preview(
    name: Name,
    version: Version,
    project: ProjectOpt,
    rows: Annotated[int, typer.Option("--rows", help="how many rows (the service caps it)", min=1)] = 20,
    split: Split = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """The first rows of a version, or of one of its splits."""
    with connect(url, token) as client:
        path = dataset_path(project, name, "versions", version, "preview")
        items = check(client.get(path, params=params(rows=rows, split=split))).json()
    print_items(items, as_json, preview_table, "no rows")


@app.command()
def download(
    name: Name,
    version: Version,
    project: ProjectOpt,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="the file to write (JSONL)", dir_okay=False)
    ] = None,
    split: Split = None,
    presigned: Annotated[
        bool, typer.Option("--presigned", help="print a presigned URL of the whole version instead")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Download a version (or one split) as JSONL, streamed to OUTPUT.part and renamed when complete.

    A whole version is checked against its sha256.
    """
    base = dataset_path(project, name, "versions", version)
    if presigned:
        with connect(url, token) as client:
            answer = check(client.get(f"{base}/download", params=params(presigned=True, split=split))).json()
        typer.echo(answer["url"])
        return
    if output is None:
        raise typer.BadParameter("pass --output FILE (or --presigned for a URL)", param_hint="'--output'")
    # Streamed to OUTPUT.part and renamed when complete: a cut-off download must not pass for a smaller version.
    with connect(url, token) as client:
        info = check(client.get(base)).json()

        def verify(saved: Saved) -> None:
            if split is None and saved.sha256 != info["sha256"]:
                fail(f"the download's sha256 {saved.sha256} is not the version's {info['sha256']}; nothing was kept")

        with client.stream("GET", f"{base}/download", params=params(split=split)) as response:
            check(response)
            declared = response.headers.get("content-length")
            total = int(declared) if declared else (info["size_bytes"] if split is None else None)
            label = f"downloading {name} v{version}" + (f" {split}" if split else "")
            saved = save(response.iter_bytes(), output, total=total, label=label, verify=verify)
    err.print(f"wrote {saved.size:,} bytes ({saved.lines:,} rows) to {escape(str(output))}")


@app.command()
def deprecate(
    name: Name,
    version: Version,
    project: ProjectOpt,
    reason: Annotated[str, typer.Option("--reason", help="why (recorded and shown with the version)")],
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Deprecate a version: it stays readable, and training refuses it."""
    with connect(url, token) as client:
        found = check(
            client.post(dataset_path(project, name, "versions", version, "deprecate"), json={"reason": reason})
        )
    deprecated = found.json()
    if as_json:
        echo_json(deprecated)
        return
    out.print(f"deprecated version {deprecated['version']} of {escape(name)}: {escape(reason)}")
