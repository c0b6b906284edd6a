"""The demo's evaluation step: a suite attached to the demo's model runs by itself when training registers a version
(``model.version.registered``), the base model is run on the same suite by request, and the two are compared example
by example before the gate's decision is shown (what ``llmops eval run|compare|gates`` print)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from rich.console import Console

from llmops_evaluation.cli.common import comparison_table, decision_table, metrics_table
from llmops_evaluation.cli.runs import run_progress

#: The suite: the demo dataset's test split, scored by BLEU, chrF and ROUGE; its gate asks for ROUGE-L.
SCORERS = [{"type": "bleu"}, {"type": "chrf"}, {"type": "rouge"}]
GATES = ["rouge_l >= 0.1"]
TERMINAL = ("completed", "failed")


def _checked(response: httpx.Response) -> dict:
    if response.is_error:
        raise SystemExit(f"demo failed: {response.request.method} {response.request.url.path}: {response.text}")
    return response.json()


async def create_suite(api: httpx.AsyncClient, headers: dict[str, str], dataset: dict, model_name: str) -> dict:
    """The suite, once the dataset version has reached the evaluation service (its projection, fed by Kafka)."""
    body = {
        "name": "support-quality",
        "dataset": {"name": dataset["name"], "version": dataset["version"], "split": "test"},
        "generation": {"max_new_tokens": 24},
        "scorers": SCORERS,
        "gates": GATES,
        "models": [model_name],
    }
    deadline = time.monotonic() + 180
    while True:
        response = await api.post("/projects/demo/evaluation/suites", json=body, headers=headers)
        waiting = response.status_code == 422 and "no dataset version" in response.text
        if not waiting or time.monotonic() > deadline:
            return _checked(response)
        await asyncio.sleep(0.2)


async def request_base_run(api: httpx.AsyncClient, headers: dict[str, str], base_name: str, pool: str) -> dict:
    """A run of the suite on the base model, once its registration has reached the evaluation service."""
    body = {"suite": "support-quality", "base_model": base_name, "pool": pool}
    deadline = time.monotonic() + 180
    while True:
        response = await api.post("/projects/demo/evaluation/runs", json=body, headers=headers)
        waiting = response.status_code == 422 and "no base model" in response.text
        if not waiting or time.monotonic() > deadline:
            return _checked(response)
        await asyncio.sleep(0.2)


async def triggered_run(api: httpx.AsyncClient, headers: dict[str, str], model_name: str, version: int) -> dict:
    """The run ``model.version.registered`` started for the trained version."""
    deadline = time.monotonic() + 120
    while True:
        runs = (await api.get("/projects/demo/evaluation/runs", params={"model": model_name}, headers=headers)).json()
        found = [run for run in runs if run["target"].get("model_version") == version]
        if found or time.monotonic() > deadline:
            if not found:
                raise SystemExit("demo failed: the registered version started no evaluation run")
            return found[0]
        await asyncio.sleep(0.2)


async def follow(api: httpx.AsyncClient, headers: dict[str, str], run_id: str, console: Console, label: str) -> dict:
    """A run's progress bar until it ends (what `llmops eval run --follow` shows)."""
    deadline = time.monotonic() + 600
    with run_progress(console) as progress:
        task = progress.add_task(label, total=None, speed="-")
        while True:
            run = (await api.get(f"/projects/demo/evaluation/runs/{run_id}", headers=headers)).json()
            figures = run.get("progress") or {}
            speed = figures.get("examples_per_second")
            progress.update(
                task,
                description=f"{label}: {figures.get('stage') if run['status'] == 'running' else run['status']}",
                total=figures.get("total") or run.get("examples_total"),
                completed=figures.get("done") or run.get("examples_done") or 0,
                speed="-" if speed is None else f"{speed:.1f}",
            )
            if run["status"] in TERMINAL or time.monotonic() > deadline:
                return run
            await asyncio.sleep(0.2)


async def gate_of(api: httpx.AsyncClient, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found = (await api.get("/projects/demo/evaluation/gates", params={"run_id": run_id}, headers=headers)).json()
        if found or time.monotonic() > deadline:
            return found[0]
        await asyncio.sleep(0.2)


async def show_results(
    api: httpx.AsyncClient, headers: dict[str, str], base_run: dict, tuned_run: dict, console: Console
) -> None:
    for run in (base_run, tuned_run):
        if run["status"] != "completed":
            raise SystemExit(f"demo failed: evaluation run {run['id']} ended {run['status']}: {run.get('error')}")
        console.print(metrics_table(run))
    compared = await api.get(
        "/projects/demo/evaluation/compare",
        params={"baseline": base_run["id"], "candidate": tuned_run["id"]},
        headers=headers,
    )
    console.print(comparison_table(_checked(compared)))
    console.print(decision_table(await gate_of(api, headers, tuned_run["id"])))
