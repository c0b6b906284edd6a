"""`llmops eval run|runs|show|compare|gates|override`: run a suite (following its progress), read its metrics with
their intervals, compare two runs, read gate decisions and record an override."""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llmops.cli_kit import AsJson, api_path, print_items
from llmops.client import Token, echo_json, err, fail, out, params
from llmops_evaluation.cli.common import (
    TERMINAL,
    ProjectOpt,
    RunId,
    Url,
    check,
    comparison_table,
    connect,
    decision_table,
    metrics_table,
    runs_table,
)


def parse_model(value: str) -> dict[str, Any]:
    """``NAME:VERSION`` or ``NAME@ALIAS`` as the run request's ``model``; anything else is a usage error."""
    if "@" in value:
        name, _, alias = value.partition("@")
        if name and alias:
            return {"name": name, "alias": alias}
    name, sep, version = value.rpartition(":")
    if sep and name and version.isdigit() and int(version) >= 1:
        return {"name": name, "version": int(version)}
    raise typer.BadParameter(f"{value!r} is not NAME:VERSION or NAME@ALIAS", param_hint="'--model'")


def run_body(
    suite: str,
    *,
    suite_version: int | None,
    model: str | None,
    base_model: str | None,
    endpoint: str | None,
    endpoint_model: str | None,
    pool: str,
) -> dict[str, Any]:
    chosen = [
        option
        for option, value in (("--model", model), ("--base-model", base_model), ("--endpoint", endpoint))
        if value is not None
    ]
    if len(chosen) != 1:
        raise typer.BadParameter("name exactly one of --model, --base-model and --endpoint")
    body: dict[str, Any] = {"suite": suite, "pool": pool}
    if suite_version is not None:
        body["suite_version"] = suite_version
    if model is not None:
        body["model"] = parse_model(model)
    elif base_model is not None:
        body["base_model"] = base_model
    else:
        body["endpoint"] = {"url": endpoint} | ({"model": endpoint_model} if endpoint_model else {})
    return body


def run_progress(console: Console) -> Progress:
    """A run's progress: stage, bar over its examples, examples/s, time elapsed."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("examples  {task.fields[speed]}/s"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console)


def follow_run(client: httpx.Client, project: str, run_id: str, interval: float, console: Console = err) -> dict:
    """Poll a run until it ends, showing its progress; the ended run."""
    with run_progress(console) as progress:
        task = progress.add_task("queued", total=None, speed="-")
        while True:
            run = check(client.get(api_path(project, "evaluation", "runs", run_id))).json()
            figures = run.get("progress") or {}
            speed = figures.get("examples_per_second")
            progress.update(
                task,
                description=f"{run['status']} {figures.get('stage', '')}".strip(),
                total=figures.get("total") or run.get("examples_total"),
                completed=figures.get("done") or run.get("examples_done") or 0,
                speed="-" if speed is None else f"{speed:.1f}",
            )
            if run["status"] in TERMINAL:
                return run
            time.sleep(interval)


def register(app: typer.Typer) -> None:
    """Add the run, comparison and gate commands to ``llmops eval``."""

    @app.command("run")
    def run(
        project: ProjectOpt,
        suite: Annotated[str, typer.Argument(help="the suite to run")],
        model: Annotated[str | None, typer.Option("--model", help="NAME:VERSION or NAME@ALIAS")] = None,
        base_model: Annotated[str | None, typer.Option("--base-model", help="a base model of the project")] = None,
        endpoint: Annotated[str | None, typer.Option("--endpoint", help="an OpenAI-compatible base URL")] = None,
        endpoint_model: Annotated[str | None, typer.Option("--endpoint-model", help="the model it serves")] = None,
        suite_version: Annotated[int | None, typer.Option("--suite-version", min=1, help="default: latest")] = None,
        pool: Annotated[str, typer.Option("--pool", help="the worker pool that runs it")] = "cpu",
        follow: Annotated[bool, typer.Option("--follow", "-f", help="follow until the run ends")] = False,
        interval: Annotated[float, typer.Option("--interval", min=0.1, help="seconds between polls")] = 1.0,
        as_json: AsJson = False,
        url: Url = None,
        token: Token = None,
    ) -> None:
        """Run a suite on a model version (or an alias), a base model or an endpoint."""
        body = run_body(
            suite,
            suite_version=suite_version,
            model=model,
            base_model=base_model,
            endpoint=endpoint,
            endpoint_model=endpoint_model,
            pool=pool,
        )
        with connect(url, token) as client:
            started = check(client.post(api_path(project, "evaluation", "runs"), json=body)).json()
            if not follow:
                echo_json(started) if as_json else err.print(f"run {started['id']} queued for pool {pool!r}")
                return
            ended = follow_run(client, project, started["id"], interval)
        echo_json(ended) if as_json else out.print(metrics_table(ended))
        if ended["status"] == "failed":
            fail(f"run {ended['id']} failed: {ended.get('error') or 'no reason given'}")

    @app.command("runs")
    def runs(
        project: ProjectOpt,
        suite: Annotated[str | None, typer.Option("--suite", help="only this suite's runs")] = None,
        model: Annotated[str | None, typer.Option("--model", help="only this model's runs")] = None,
        as_json: AsJson = False,
        url: Url = None,
        token: Token = None,
    ) -> None:
        """The project's runs, newest first."""
        with connect(url, token) as client:
            found = check(client.get(api_path(project, "evaluation", "runs"), params=params(suite=suite, model=model)))
        print_items(found.json(), as_json, runs_table, "no runs yet")

    @app.command("show")
    def show(project: ProjectOpt, run_id: RunId, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
        """A run's status and metrics with their bootstrap 95% intervals."""
        with connect(url, token) as client:
            found = check(client.get(api_path(project, "evaluation", "runs", run_id))).json()
        echo_json(found) if as_json else out.print(metrics_table(found))

    @app.command("compare")
    def compare(
        project: ProjectOpt,
        baseline: Annotated[str, typer.Argument(help="the run compared against (e.g. production's)")],
        candidate: Annotated[str, typer.Argument(help="the run judged")],
        as_json: AsJson = False,
        url: Url = None,
        token: Token = None,
    ) -> None:
        """Two runs of one suite version, example by example: differences with paired intervals and p-values."""
        with connect(url, token) as client:
            query = params(baseline=baseline, candidate=candidate)
            found = check(client.get(api_path(project, "evaluation", "compare"), params=query)).json()
        echo_json(found) if as_json else out.print(comparison_table(found))

    @app.command("gates")
    def gates(
        project: ProjectOpt,
        model: Annotated[str | None, typer.Option("--model", help="only this model's decisions")] = None,
        version: Annotated[int | None, typer.Option("--version", min=1, help="only this version's")] = None,
        run_id: Annotated[str | None, typer.Option("--run", help="only this run's decision")] = None,
        as_json: AsJson = False,
        url: Url = None,
        token: Token = None,
    ) -> None:
        """Gate decisions, newest first, rule by rule, with overrides."""
        with connect(url, token) as client:
            query = params(model=model, version=version, run_id=run_id)
            found = check(client.get(api_path(project, "evaluation", "gates"), params=query)).json()
        if as_json:
            for decision in found:
                echo_json(decision)
        elif not found:
            err.print("no gate decisions yet")
        for decision in [] if as_json else found:
            out.print(decision_table(decision))

    @app.command("override")
    def override(
        project: ProjectOpt,
        decision_id: Annotated[str, typer.Argument(help="the decision's id (`llmops eval gates` shows it)")],
        reason: Annotated[str, typer.Option("--reason", help="why (recorded and audited)")],
        passed: Annotated[bool, typer.Option("--pass/--fail", help="the outcome recorded")] = True,
        url: Url = None,
        token: Token = None,
    ) -> None:
        """Record another outcome for a gate decision (admins only)."""
        with connect(url, token) as client:
            path = api_path(project, "evaluation", "gates", decision_id, "overrides")
            recorded = check(client.post(path, json={"passed": passed, "reason": reason})).json()
        outcome = "pass" if recorded["passed"] else "fail"
        err.print(f"override {recorded['id']} recorded: {outcome}, by {escape(recorded['actor'])}")
