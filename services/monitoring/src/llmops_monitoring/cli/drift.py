"""``llmops monitor drift run|list|show|open|baseline``: Evidently drift reports of deployments."""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import AsJson, api_path, print_items, when
from llmops.client import Token, echo_json, err, out, params
from llmops_monitoring.cli.common import DeploymentOpt, ProjectOpt, Since, Until, Url, check, connect, moment, number

drift_app = typer.Typer(
    help="Drift reports: run one now, list, show, open the HTML, pin a baseline.", no_args_is_help=True
)
ReportId = Annotated[str, typer.Argument(help="the report's id (as `llmops monitor drift list` prints it)")]
#: Evidently works for a while on large windows: wait for it.
SLOW = httpx.Timeout(30.0, read=600.0)


def reports_table(reports: list[dict[str, Any]]) -> Table:
    table = Table(title="drift reports")
    for head in ("id", "deployment", "trigger", "current window", "rows cur/ref", "drifted share", "status", "event"):
        table.add_column(head)
    for r in reports:
        share = "-" if r["drifted_share"] is None else f"{r['drifted_share']:.2f} / {r['threshold']:.2f}"
        drifted = "[red]drifted[/red]" if r.get("drifted") else r["status"]
        table.add_row(
            r["id"],
            escape(r["deployment_id"]),
            r["trigger"],
            f"{when(r['current_start'])} → {when(r['current_end'])[11:]}",
            f"{r['current_rows']}/{r['reference_rows']}",
            share,
            drifted if r["status"] == "done" else f"{r['status']}: {escape(r.get('reason') or '')}",
            "published" if r.get("detected") else "",
        )
    return table


def columns_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"drift report {report['id']} · {escape(report['deployment_id'])}")
    for head in ("column", "method", "score", "threshold", "drifted"):
        table.add_column(head)
    for c in report.get("columns") or []:
        table.add_row(
            c["column"],
            c["method"],
            number(c["score"]),
            number(c["threshold"]),
            "[red]yes[/red]" if c["drifted"] else "no",
        )
    return table


@drift_app.command("run")
def run(
    project: ProjectOpt,
    deployment: Annotated[str, typer.Option("--deployment", "-d", help="the deployment")],
    since: Since = "1h",
    until: Until = None,
    reference_since: Annotated[str | None, typer.Option("--reference-since")] = None,
    reference_until: Annotated[str | None, typer.Option("--reference-until")] = None,
    evaluation: Annotated[
        bool,
        typer.Option(
            "--against-evaluation", help="compare with the examples of the evaluation that gated the model version"
        ),
    ] = False,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Run a drift report now: the window against the pinned baseline, or the window just before, or the given one,
    or (--against-evaluation) the evaluation run that let the deployment's model version through its gate."""
    body = params(
        deployment_id=deployment,
        start=moment(since),
        end=moment(until),
        reference_start=moment(reference_since),
        reference_end=moment(reference_until),
        reference="evaluation_dataset" if evaluation else None,
    )
    with connect(url, token, timeout=SLOW) as http:
        report = check(http.post(api_path(project, "monitoring", "drift"), json=body)).json()
    if as_json:
        echo_json(report)
        return
    out.print(reports_table([report]))
    if report["status"] == "done":
        out.print(columns_table(report))


@drift_app.command("list")
def list_reports(
    project: ProjectOpt,
    deployment: DeploymentOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """The project's drift reports, newest first."""
    with connect(url, token) as http:
        body = check(
            http.get(api_path(project, "monitoring", "drift"), params=params(deployment_id=deployment, limit=limit))
        ).json()
    print_items(body["reports"], as_json, reports_table, "no drift reports yet")


@drift_app.command("show")
def show(
    project: ProjectOpt, report_id: ReportId, as_json: AsJson = False, url: Url = None, token: Token = None
) -> None:
    """One report's numbers, column by column."""
    with connect(url, token) as http:
        report = check(http.get(api_path(project, "monitoring", "drift", report_id))).json()
    if as_json:
        echo_json(report)
        return
    out.print(reports_table([report]))
    out.print(columns_table(report))


@drift_app.command("open")
def open_report(
    project: ProjectOpt,
    report_id: ReportId,
    save: Annotated[Path | None, typer.Option("--save", help="write the HTML here instead of a temporary file")] = None,
    browser: Annotated[bool, typer.Option(help="open it in a browser")] = True,
    url: Url = None,
    token: Token = None,
) -> None:
    """Fetch the report's HTML (Evidently's rendering) and open it in a browser."""
    with connect(url, token, timeout=SLOW) as http:
        html = check(http.get(api_path(project, "monitoring", "drift", report_id, "html"))).content
    if save is None:
        save = Path(tempfile.mkdtemp(prefix="llmops-drift-")) / f"{report_id}.html"
    save.write_bytes(html)
    err.print(f"report written to {save}")
    if browser and not webbrowser.open(save.resolve().as_uri()):
        err.print("no browser to open it in: open the file above")


@drift_app.command("baseline")
def baseline(
    project: ProjectOpt,
    deployment: Annotated[str, typer.Option("--deployment", "-d", help="the deployment")],
    since: Since = None,
    until: Until = None,
    clear: Annotated[bool, typer.Option("--clear", help="unpin: compare with the window before again")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Pin the reference window of a deployment's reports (--since/--until), or --clear it."""
    path = api_path(project, "monitoring", "drift", "baselines", deployment)
    with connect(url, token) as http:
        if clear:
            check(http.delete(path))
            err.print(f"baseline of {deployment} unpinned")
            return
        if since is None:
            raise typer.BadParameter("give the window with --since (and --until)", param_hint="--since")
        pinned = check(http.put(path, json=params(start=moment(since), end=moment(until) or moment("0m")))).json()
    err.print(f"baseline of {deployment}: {when(pinned['start'])} → {when(pinned['end'])}")
