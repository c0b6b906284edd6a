"""The demo's monitoring step: a policy says "when this deployment drifts, re-run its evaluation suite". Another
system's gateway (the demo, with a plain Kafka producer) publishes two hours of ``inference.completed`` records for
the deployment: an hour of normal traffic, then an hour of shifted traffic (longer questions on another topic, slower
answers, some refusals). The monitoring service stores them (Parquet), counts them (metrics), flags the refusals
(an anomaly event), and a drift report of the second hour against the first finds the shift; the drift event
triggers the policies: the evaluation service re-runs the suite on the deployed model version, and the training
service retrains that version's recipe (base model, method, hyperparameters) on the newest version of the dataset,
which arrived meanwhile with questions on the new topic; the new model version's lineage names that version (what
``llmops monitor metrics|anomalies|drift|policies`` and ``llmops models lineage`` print)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from rich.console import Console

from llmops.settings import KafkaSettings
from llmops_monitoring.cli.drift import columns_table, reports_table
from llmops_monitoring.cli.metrics import anomalies_table, metrics_table
from llmops_monitoring.cli.rules import actions_table
from llmops_schemas import new_event, topics
from llmops_schemas.events import InferenceCompleted

ROUTE = "support-assistant"
PER_HOUR = 300
_ORDERS = (
    "order",
    "parcel",
    "delivery",
    "tracking",
    "courier",
    "shipped",
    "arrived",
    "late",
    "refund",
    "return",
    "address",
    "package",
)
_RECIPES = (
    "recipe",
    "oven",
    "flour",
    "butter",
    "garlic",
    "basil",
    "pasta",
    "simmer",
    "roast",
    "dough",
    "yeast",
    "broth",
    "saffron",
    "custard",
)
_COMMON = ["please", "can", "you", "check", "my", "the", "a", "is", "it", "why", "when", "help", "thanks"]
REFUSAL = "I'm sorry, but I can't help with that request."


def _text(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words if rng.random() < 0.6 else _COMMON) for _ in range(n)).capitalize() + "."


def traffic(deployment: dict, start: datetime, *, shifted: bool, seed: int) -> list[Any]:
    """An hour of records: normal, or shifted (longer inputs on recipes, 1.8x slower, a fifth refused)."""
    rng = random.Random(seed)
    events = []
    for i in range(PER_HOUR):
        words = _RECIPES if shifted else _ORDERS
        question = _text(rng, words, int(rng.lognormvariate(2.6 if not shifted else 3.5, 0.4)) + 3)
        refused = shifted and rng.random() < 0.2
        answer = REFUSAL if refused else _text(rng, words, int(rng.lognormvariate(3.2, 0.4)) + 3)
        tokens_out = max(1, len(answer) // 4)
        latency = (40 + 18 * tokens_out * rng.lognormvariate(0, 0.25)) * (1.8 if shifted else 1.0)
        request_id = uuid.uuid4().hex
        event = new_event(
            InferenceCompleted(
                request_id=request_id,
                project="demo",
                route=ROUTE,
                api="chat.completions",
                deployment_id=deployment["id"],
                model_version_id=deployment["model_version_id"],
                user=f"customer-{rng.randrange(40)}",
                latency_ms=latency,
                time_to_first_token_ms=latency / 5,
                tokens_in=max(1, len(question) // 4),
                tokens_out=tokens_out,
                cost=0.000002 * (len(question) + len(answer)) / 4,
                finish_reason="stop",
                input=question,
                output=answer,
            ),
            subject=request_id,
            source="urn:demo:partner-gateway",
            project="demo",
        )
        events.append(event.model_copy(update={"time": start + timedelta(seconds=i * 3600 / PER_HOUR)}))
    return events


async def publish(events: list[Any]) -> None:
    """As another system would: a plain idempotent Kafka producer, the platform's JSON Schema, no platform code."""
    producer = AIOKafkaProducer(
        bootstrap_servers=KafkaSettings().bootstrap_servers, enable_idempotence=True, linger_ms=10
    )
    await producer.start()
    try:
        sent = [await producer.send(topics.INFERENCE, e.to_bytes(), key=e.subject.encode()) for e in events]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _checked(response: httpx.Response) -> Any:
    if response.is_error:
        raise SystemExit(f"demo failed: {response.request.method} {response.request.url.path}: {response.text}")
    return response.json()


async def _until(what: str, probe, *, within: float = 180) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"demo failed: {what} within {within:.0f} s")
        await asyncio.sleep(0.3)


async def run(
    api: httpx.AsyncClient,
    evaluation_api: httpx.AsyncClient,
    console: Console,
    *,
    engineer: dict[str, str],
    deployment: dict,
    suite: dict,
    scratch: Path,
    follow_run,
    retrain: Any,
) -> None:
    async def on_drift(verb: str, action: dict[str, Any]) -> dict:
        body = {
            # a name per deployment: the project keeps the policies of earlier demo runs
            "name": f"{verb} {deployment['name']} on drift {deployment['id'][:8]}",
            "deployment_id": deployment["id"],
            "on": "drift",
            "cool_down_seconds": 3600,
            **action,
        }
        return _checked(await api.post("/projects/demo/monitoring/policies", json=body, headers=engineer))

    policy = await on_drift("re-evaluate", {"action": "evaluate", "suite_id": suite["suite_id"]})
    retraining = await on_drift("retrain", {"action": "retrain", "dataset_id": retrain.dataset["id"]})
    console.print(
        f"7. policies: when {deployment['name']} drifts, re-run suite {suite['name']!r}, and retrain its model "
        f"version on the newest version of dataset {retrain.dataset['name']} (cool-down "
        f"{policy['cool_down_seconds'] // 60} min)"
    )
    newer = await retrain.new_data()
    console.print(
        f"   dataset {newer['name']} v{newer['version']} arrived ({newer['rows']} rows, recipe questions added; "
        f"sha256 {newer['sha256'][:16]}…), and the training service has it"
    )
    now = datetime.now(UTC).replace(microsecond=0)
    normal = traffic(deployment, now - timedelta(hours=2), shifted=False, seed=1)
    shifted = traffic(deployment, now - timedelta(hours=1), shifted=True, seed=2)
    await publish(normal + shifted)
    console.print(
        f"   a partner gateway published {len(normal)} normal and {len(shifted)} shifted inference.completed records "
        "on Kafka (longer questions on another topic, slower answers, a fifth refused)"
    )
    window = {"start": (now - timedelta(hours=2)).isoformat(), "deployment_id": deployment["id"]}

    async def counted() -> Any:
        body = _checked(
            await api.get(
                "/projects/demo/monitoring/metrics", params={**window, "resolution": "hour"}, headers=engineer
            )
        )
        return body if sum(g["requests"] for g in body["groups"]) >= len(normal) + len(shifted) else None

    await _until("the records to be counted", counted)
    stepped = _checked(
        await api.get(
            "/projects/demo/monitoring/metrics",
            params={**window, "resolution": "hour", "step": "true"},
            headers=engineer,
        )
    )
    console.print(metrics_table(stepped["groups"], [], True))

    async def assessed() -> Any:  # the service assesses closed windows every few seconds
        windows = _checked(await api.get("/projects/demo/monitoring/anomalies", params=window, headers=engineer))
        return windows["windows"] if any(w["flags"] for w in windows["windows"]) else None

    anomalies = await _until("the refusals to be flagged", assessed)
    flagged = [w for w in anomalies if w["flags"]]
    console.print(anomalies_table(flagged[-3:]))
    console.print("   refusals past their threshold in those windows: monitoring.anomaly.detected (throttled)")

    report = _checked(
        await api.post(
            "/projects/demo/monitoring/drift",
            json={
                "deployment_id": deployment["id"],
                "start": (now - timedelta(hours=1)).isoformat(),
                "end": now.isoformat(),
            },
            headers=engineer,
        )
    )
    console.print(reports_table([report]))
    console.print(columns_table(report))
    html = await api.get(f"/projects/demo/monitoring/drift/{report['id']}/html", headers=engineer)
    saved = scratch / f"drift-{report['id']}.html"
    saved.write_bytes(html.content)
    console.print(f"   Evidently's report: {saved} (`llmops monitor drift open -p demo {report['id']}`)")
    if not report.get("detected"):
        raise SystemExit("demo failed: the shifted hour did not drift")

    async def triggered_run() -> Any:
        runs = _checked(await evaluation_api.get("/projects/demo/evaluation/runs", headers=engineer))
        found = [r for r in runs if r["trigger"] == "monitoring.policy.triggered"]
        return found[0] if found else None

    rerun = await _until("the policy's re-evaluation to start", triggered_run)
    actions = _checked(await api.get(f"/projects/demo/monitoring/policies/{policy['id']}/actions", headers=engineer))
    console.print(actions_table(actions))
    rerun = await follow_run(rerun["id"], f"re-evaluation of {deployment['name']} (policy)")
    console.print(
        f"   monitoring.drift.detected -> monitoring.policy.triggered -> evaluation run {rerun['id']} "
        f"({rerun['status']}): each event caused by the one before, one correlation id"
    )

    async def retrain_triggered() -> Any:
        done = _checked(
            await api.get(f"/projects/demo/monitoring/policies/{retraining['id']}/actions", headers=engineer)
        )
        return next((a for a in done if a["outcome"] == "triggered" and a["event_id"]), None)

    action = await _until("the policy's retrain to be triggered", retrain_triggered)
    version = await retrain.follow(action["event_id"], newer)
    console.print(
        f"   monitoring.drift.detected -> monitoring.policy.triggered -> training job -> "
        f"[bold]{ROUTE} v{version['version']}[/bold], "
        f"trained on {newer['name']} v{newer['version']} (its lineage above)"
    )
