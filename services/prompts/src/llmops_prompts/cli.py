"""`llmops prompts ...`: create prompts, commit versions, show, diff, move labels, render and test, through the
prompts service's API (``LLMOPS_CLIENT_PROMPTS_URL``, ``LLMOPS_CLIENT_TOKEN``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llmops.cli_kit import key_values
from llmops.client import Token, check, connect, echo_json, err, fail, out, params, url_option

app = typer.Typer(help="Prompts: create, version, show, diff, label, render, test.", no_args_is_help=True)

Url = url_option("prompts")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _path(project: str, name: str, *parts: str | int) -> str:
    return "/".join([f"/projects/{project}/prompts/{name}", *(str(p) for p in parts)]).rstrip("/")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"cannot read {what} from {path}: {exc}", code=2)


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, lists, true) is taken as such, else as text."""
    try:
        return key_values(pairs)
    except ValueError as exc:
        fail(f"--var {exc.args[0]!r} is not key=value", code=2)


@app.command()
def create(name: str, project: ProjectOpt, description: str = "", url: Url = None, token: Token = None) -> None:
    """Create a prompt."""
    with connect("prompts", url, token) as http:
        check(http.post(f"/projects/{project}/prompts", json={"name": name, "description": description}))
    out.print(f"created prompt {name} in {project}")


@app.command()
def version(
    name: str,
    project: ProjectOpt,
    file: Annotated[
        Path, typer.Option("--file", "-f", help='JSON: a template, or {"template": ..., "parameters": ...}')
    ],
    message: Annotated[str, typer.Option("--message", "-m", help="what changed and why")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Commit a new immutable version from a JSON file (text or chat template, variables' JSON Schemas)."""
    document = _read_json(file, "the template")
    body = document if "template" in document else {"template": document}
    with connect("prompts", url, token) as http:
        response = check(http.post(_path(project, name, "versions"), json=body | {"message": message}))
    result = response.json()
    if as_json:
        echo_json(result)
    elif response.status_code == 200:
        out.print(f"unchanged: the same template and parameters as version {result['version']}")
    else:
        out.print(f"committed version {result['version']} ({result['hash'][:16]}…)")


@app.command()
def show(name: str, project: ProjectOpt, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """A prompt's versions and labels."""
    with connect("prompts", url, token) as http:
        prompt = check(http.get(_path(project, name))).json()
    if as_json:
        echo_json(prompt)
        return
    versions = Table("version", "hash", "message", "author", "created", title=f"{name} ({project})")
    for v in prompt["versions"]:
        versions.add_row(str(v["version"]), v["hash"][:16] + "…", v["message"], v["author"], v["created_at"][:19])
    out.print(versions)
    labels = Table("label", "version", "protected", "moved by", "at", title="labels")
    for label in prompt["labels"]:
        labels.add_row(
            label["name"],
            str(label["version"]),
            "yes" if label["protected"] else "",
            label["updated_by"],
            label["updated_at"][:19],
        )
    out.print(labels)


@app.command()
def diff(
    name: str,
    from_version: int,
    to_version: int,
    project: ProjectOpt,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """What changed between two versions: template (unified diff), variables, parameters."""
    with connect("prompts", url, token) as http:
        result = check(http.get(_path(project, name, "diff"), params={"from": from_version, "to": to_version})).json()
    if as_json:
        echo_json(result)
        return
    out.print(result["template"] or "(templates identical)", markup=False, highlight=False)
    for section in ("variables", "parameters"):
        for key, change in result[section].items():
            out.print(f"{section[:-1]} {key}: {change['from']!r} -> {change['to']!r}", markup=False)


@app.command()
def label(
    name: str,
    label_name: Annotated[str, typer.Argument(metavar="LABEL")],
    project: ProjectOpt,
    to_version: Annotated[int | None, typer.Argument(metavar="[VERSION]", help="move the label here")] = None,
    reason: Annotated[str | None, typer.Option(help="why (required to move)")] = None,
    protect: Annotated[bool | None, typer.Option("--protect/--unprotect", help="(un)protect the label (admin)")] = None,
    history: Annotated[bool, typer.Option("--history", help="show the label's moves instead")] = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Move a label to a version (with --reason), or show its history (--history)."""
    with connect("prompts", url, token) as http:
        if history or to_version is None:
            moves = check(http.get(_path(project, name, "labels", label_name, "history"))).json()
            if as_json:
                echo_json(moves)
                return
            table = Table("from", "to", "by", "at", "protected", "why", title=f"{name}: {label_name}")
            for m in moves:
                table.add_row(
                    str(m["from_version"] or "-"),
                    str(m["to_version"]),
                    m["moved_by"],
                    m["moved_at"][:19],
                    "yes" if m["protected"] else "",
                    m["reason"],
                )
            out.print(table)
            return
        if not reason:
            fail("moving a label needs --reason", code=2)
        body = {"version": to_version, "reason": reason} | ({} if protect is None else {"protected": protect})
        move = check(http.put(_path(project, name, "labels", label_name), json=body), errors_table=None).json()
    if as_json:
        echo_json(move)
    else:
        out.print(
            f"{label_name}: {move['from_version'] or '-'} -> {move['to_version']}"
            + (" (protected)" if move["protected"] else "")
        )


@app.command()
def render(
    name: str,
    project: ProjectOpt,
    var: Annotated[list[str] | None, typer.Option("--var", help="key=value (JSON values allowed); repeatable")] = None,
    vars_file: Annotated[Path | None, typer.Option("--vars-file", help="a JSON object of variables")] = None,
    label_name: Annotated[str | None, typer.Option("--label", help="render what this label points at")] = None,
    version_number: Annotated[int | None, typer.Option("--version", help="render this version")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Render a prompt with variables (422 names each missing or mistyped variable)."""
    variables = (_read_json(vars_file, "the variables") if vars_file else {}) | parse_vars(var or [])
    body = params(label=label_name, version=version_number) | {"variables": variables}
    with connect("prompts", url, token) as http:
        result = check(http.post(_path(project, name, "render"), json=body)).json()
    if as_json:
        echo_json(result)
    elif "text" in result:
        out.print(result["text"], markup=False, highlight=False)
    else:
        for message in result["messages"]:
            out.print(f"[bold]{message['role']}[/bold]: ", end="")
            out.print(message["content"], markup=False, highlight=False)


@app.command()
def test(
    name: str,
    project: ProjectOpt,
    add: Annotated[
        Path | None,
        typer.Option(
            "--add", help='add test cases from a JSON list of {"name", "variables", "expect"} instead of running them'
        ),
    ] = None,
    label_name: Annotated[str | None, typer.Option("--label", help="run against this label's version")] = None,
    version_number: Annotated[int | None, typer.Option("--version", help="run against this version")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Run a prompt's test cases (exit 1 when one fails), or add test cases with --add."""
    with connect("prompts", url, token) as http:
        if add is not None:
            cases = _read_json(add, "the test cases")
            for case in cases if isinstance(cases, list) else [cases]:
                check(http.post(_path(project, name, "tests"), json=case))
            err.print(f"added {len(cases) if isinstance(cases, list) else 1} test case(s)")
            return
        result = check(
            http.post(_path(project, name, "tests", "run"), params=params(label=label_name, version=version_number))
        ).json()
    if as_json:
        echo_json(result)
    else:
        table = Table("test", "result", "failures", title=f"{name} v{result['version']}")
        for r in result["results"]:
            table.add_row(
                r["test"], "[green]pass[/green]" if r["passed"] else "[red]FAIL[/red]", "; ".join(r["failures"])
            )
        out.print(table)
    if not result["passed"]:
        raise typer.Exit(1)
