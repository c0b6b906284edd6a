"""The demo's deployment step: the LoRA version that passed its gate is deployed on the demo's CPU pool (a serving
worker merges the adapter into its base and runs ``transformers serve``), put behind a route, and called through the
gateway with an API key by the official ``openai`` client. A second version, deployed by an admin past its missing
gate (an audited override), takes 20% of the traffic; a rollback puts the route back for the very next request; and
one answer's lineage is traced back to its dataset (what ``llmops deploy|routes|keys|lineage`` print)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import openai
from rich.console import Console
from rich.table import Table

from llmops_deployment.cli.common import deployment_table
from llmops_deployment.cli.lineage import lineage_tree
from llmops_deployment.cli.routes import route_table

ROUTE = "support-assistant"
QUESTION = "My order 1004 has not arrived, can you check?"
SETTLED = ("ready", "failed", "stopped")


def _checked(response: httpx.Response) -> dict:
    if response.is_error:
        raise SystemExit(f"demo failed: {response.request.method} {response.request.url.path}: {response.text}")
    return response.json()


async def deploy(
    api: httpx.AsyncClient, headers: dict[str, str], model: str, version: int, pool: str, *, override: str | None = None
) -> httpx.Response:
    """Ask for a deployment, once the model version has reached the deployment service (its projection, fed by
    Kafka); a refusal by the gate (409) is returned to the caller."""
    body: dict[str, Any] = {
        "name": f"{model}-v{version}",
        "model": {"name": model, "version": version},
        "backend": "transformers",
        "pool": pool,
        "generation": {"max_tokens": 16, "temperature": 0},
    }
    if override is not None:
        body["override_reason"] = override
    deadline = time.monotonic() + 60
    while True:
        response = await api.post("/projects/demo/deployments", json=body, headers=headers)
        waiting = response.status_code == 422 and "model" in response.text
        if not waiting or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


async def deploy_gated(api: httpx.AsyncClient, headers: dict[str, str], model: str, version: int, pool: str) -> dict:
    """The version whose gate passed; waits for the gate's decision to reach the deployment service."""
    deadline = time.monotonic() + 60
    while True:
        response = await deploy(api, headers, model, version, pool)
        if response.status_code != 409 or time.monotonic() > deadline:
            return _checked(response)
        await asyncio.sleep(0.2)


async def wait_ready(api: httpx.AsyncClient, headers: dict[str, str], deployment_id: str, console: Console) -> dict:
    """The deployment once a replica serves (what ``llmops deploy create --wait`` waits for)."""
    deadline = time.monotonic() + 300
    with console.status(f"deployment {deployment_id[:8]}…: the worker fetches, merges and starts the model server"):
        while True:
            deployment = _checked(await api.get(f"/projects/demo/deployments/{deployment_id}", headers=headers))
            if deployment["status"] in SETTLED or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    if deployment["status"] != "ready":
        console.print(deployment_table(deployment))
        raise SystemExit(f"demo failed: deployment {deployment_id} is {deployment['status']}")
    return deployment


async def ask(client: openai.AsyncOpenAI, count: int, *, user: str = "demo-user") -> list[tuple[str, str, Any]]:
    """``count`` chat requests through the gateway: (request id, deployment id, completion) of each."""
    answers = []
    for i in range(count):
        raw = await client.chat.completions.with_raw_response.create(
            model=ROUTE,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=12,
            user=f"{user}-{i}",
        )
        answers.append((raw.headers["x-request-id"], raw.headers.get("x-llmops-deployment", "?"), raw.parse()))
    return answers


async def lineage(api: httpx.AsyncClient, headers: dict[str, str], request_id: str) -> dict:
    """The answer's lineage, once its record has come back through Kafka."""
    deadline = time.monotonic() + 60
    while True:
        response = await api.get(f"/projects/demo/inferences/{request_id}/lineage", headers=headers)
        if response.status_code != 404 or time.monotonic() > deadline:
            return _checked(response)
        await asyncio.sleep(0.2)


def show_answers(console: Console, title: str, answers: list[tuple[str, str, Any]], names: dict[str, str]) -> None:
    table = Table("request id", "served by", "answer", "tokens in/out", title=title)
    for request_id, deployment_id, completion in answers:
        usage = completion.usage
        table.add_row(
            request_id,
            names.get(deployment_id, deployment_id),
            repr(completion.choices[0].message.content),
            f"{usage.prompt_tokens}/{usage.completion_tokens}" if usage else "-",
        )
    console.print(table)


def split_counts(answers: list[tuple[str, str, Any]], names: dict[str, str]) -> str:
    counts = Counter(names.get(deployment_id, deployment_id) for _, deployment_id, _ in answers)
    return ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))


async def run(
    api: httpx.AsyncClient,
    gateway_url: str,
    console: Console,
    *,
    engineer: dict[str, str],
    admin: dict[str, str],
    model: str,
    version: int,
    second_version: Any,
    pool: str,
) -> tuple[str, dict]:
    """The whole step; ``second_version()`` trains the second version and returns its number. Returns the request id
    whose lineage was shown, and the first deployment (the one the route serves after the rollback)."""
    first = await deploy_gated(api, engineer, model, version, pool)
    console.print(f"6. {model} v{version} passed its gate ({first['gates'][0]['suite']}): deployment requested")
    first = await wait_ready(api, engineer, first["id"], console)
    console.print(deployment_table(first))
    route = _checked(
        await api.put(
            f"/projects/demo/routes/{ROUTE}",
            json={"targets": [{"deployment_id": first["id"], "weight": 1}], "reason": "first release"},
            headers=engineer,
        )
    )
    key = _checked(await api.post("/projects/demo/keys", json={"name": "demo-app"}, headers=engineer))
    console.print(f"   route {ROUTE!r} v{route['version']} -> {first['name']}; API key {key['prefix']}… created")
    names = {first["id"]: first["name"]}
    client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=key["secret"], max_retries=0)
    try:
        show_answers(console, "   three requests through the gateway (openai client)", await ask(client, 3), names)

        newer = await second_version()
        refused = await deploy(api, engineer, model, newer, pool)
        gate = refused.json().get("detail", refused.text) if refused.status_code == 409 else "passed"
        second = (
            await deploy(api, admin, model, newer, pool, override="canary while its evaluation runs (demo)")
            if refused.status_code == 409
            else refused
        )
        second = await wait_ready(api, engineer, _checked(second)["id"], console)
        names[second["id"]] = second["name"]
        console.print(
            f"   {model} v{newer} trained; for an ml-engineer its gate says: {gate}\n"
            f"   an admin deployed it anyway with a reason (deployment.gate.overridden, audited)"
        )
        canary = _checked(
            await api.post(
                f"/projects/demo/routes/{ROUTE}/split",
                json={"deployment_id": second["id"], "percent": 20, "reason": "canary"},
                headers=engineer,
            )
        )
        console.print(route_table(canary))
        answers = await ask(client, 40)
        console.print(f"   40 requests after the 20% split: {split_counts(answers, names)}")
        back = _checked(
            await api.post(f"/projects/demo/routes/{ROUTE}/rollback", json={"reason": "canary ends"}, headers=engineer)
        )
        after = await ask(client, 5, user="after-rollback")
        console.print(
            f"   rollback: route v{back['version']} is v{back['version'] - 2} again; "
            f"the next 5 requests: {split_counts(after, names)}"
        )
    finally:
        await client.close()
    request_id = after[0][0]
    found = await lineage(api, engineer, request_id)
    console.print(lineage_tree(found))
    return request_id, first
