"""`make chaos`: the platform as deployed (`llmops up`: seven services, the gateway, the CPU workers, each a process)
on a Postgres, a Kafka and an object store (SeaweedFS) of this run's own (``llmops.infra.private``), under mixed load
while its parts are killed one after the other and the Kafka broker, Postgres and the object store are each stopped
and started again. Bounded and self-stopping; afterwards it checks the invariants, prints them, and exits 1 when one
fails.

Load: dataset versions uploaded, prompt versions committed and labels moved, LoRA jobs of a tiny model on the newest
dataset version, the trained model's aliases moved, budgets set (too large to refuse anything), evaluation runs (of
a suite attached to the trained model: each version registered starts one; and of the base model, asked for), chat
requests through the gateway to an external deployment, and ``inference.completed`` records published by another
system with a plain Kafka client, some malformed on purpose.

Faults, in turn: each of the eleven processes SIGKILLed (then started again, as a supervisor would), then the broker,
Postgres and the object store each stopped (for 5 s, plus the time their stop and start take) and started again.

Invariants:

- every event any service committed to its outbox was published and is in the audit log (once: the log's event ids
  are unique), and the audit chain verifies;
- no training job or evaluation run is left queued or running, and no deployment left starting, once the load stops;
- every training job and evaluation run completed: none failed for the faults (outages are waited out);
- the dead-letter topic holds the malformed records sent on purpose and nothing else;
- each gateway request that got an answer has exactly one record (completed or failed, as the client saw it), and
  served + refused + failed + unanswered add up to the requests sent. Exempt: a 503 ``gateway_unavailable`` given
  before the caller is known (no project to record it under, like a 401), and the records of requests answered in
  the second before the gateway's SIGKILL, still in its memory (counted and printed);
- every projection of another service's events holds exactly what a rebuild from its topics gives, key and content
  (``projections.py``: dataset and prompt versions, base models, model versions and aliases, suites, gate decisions
  and overrides, deployments, budgets, evaluation runs and gate passes, the deployment service's inference records),
  and the monitoring service counted each inference event once: its minute and hour metrics and its record store
  hold as many requests as the inference topic has events. Checked once every consumer group has read its topics to
  the end (no lag) and nothing has moved for 5 s.

The training and evaluation workers' SIGKILLs wait (at most ``AIM_SECONDS``) for a job or run to be running, so that
they land in the middle of one (the faults line says whether one was).

``--broken commit-first`` runs the same with every consumer committing its offsets before its transaction (a
sitecustomize in the processes' path patches it), to show the checks catch a broken delivery guarantee: each process
then shows when a batch is in that window (a file named by its pid), and its SIGKILL waits up to
``AIM_SECONDS`` for it, so the kills land where the break loses data.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from projections import PROJECTIONS  # beside this script
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from llmops.auth import Role, issue_token
from llmops.db import Database
from llmops.infra.private import free_port, private_kafka, private_postgres, private_seaweedfs
from llmops.settings import ClientSettings
from llmops.stack import PARTS, Stack
from llmops_schemas import new_event, topics
from llmops_schemas.events import InferenceCompleted

console = Console(width=140)
SERVICES = ("audit", "datasets", "prompts", "training", "evaluation", "deployment", "monitoring")
PROJECT = "chaos"
STUB = Path(__file__).parents[2] / "services" / "deployment" / "tests" / "gateway" / "stub_backend.py"
BREAKS = Path(__file__).with_name("breaks")
MALFORMED = 5
#: The gateway keeps records in memory until Kafka has them (tens of milliseconds when Kafka is up): those of requests
#: answered this long before its SIGKILL may be lost with it, by design (it writes nothing to disk).
BUFFERED_SECONDS = 1.0
#: Answers already sent when the signal lands arrive a little after it.
ON_THE_WIRE = 0.5
EXTERNAL = 200
ALIASES = ("production", "candidate")
#: How long a SIGKILL waits for its process to be in the window a break opens (a broken run), or at work (a worker).
AIM_SECONDS = 30


def auth(role: Role, subject: str = "chaos") -> dict[str, str]:
    return {"authorization": f"Bearer {issue_token(subject, [role], [PROJECT])}"}


class Platform:
    """The private infrastructure and the processes on it."""

    def __init__(self, home: Path, broken: str | None) -> None:
        self.home, self.broken = home, broken
        self.postgres, self.pg = private_postgres(home / "pg", SERVICES)
        self.kafka, self.kafka_settings = private_kafka(home / "kafka", topics.ALL_TOPICS)
        self.object_store, self.s3 = private_seaweedfs(home / "s3")
        env = {
            "LLMOPS_S3_ENDPOINT": self.s3.endpoint,
            "LLMOPS_HOME": str(home),
            "LLMOPS_POSTGRES_PORT": str(self.pg.port),
            "LLMOPS_KAFKA_BOOTSTRAP_SERVERS": self.kafka_settings.bootstrap_servers,
            "LLMOPS_DEPLOYMENT_ALLOWED_EXTERNAL_HOSTS": '["127.0.0.1"]',
            "LLMOPS_MONITORING_RECORDS_WORKERS": "1",
            "LLMOPS_MONITORING_RECORDS_PREFIX": f"chaos/{home.name}/records",
            "LLMOPS_MONITORING_REPORTS_PREFIX": f"chaos/{home.name}/drift",
            "LLMOPS_TRAINING_PROGRESS_INTERVAL_SECONDS": "1",
            "LLMOPS_DEPLOYMENT_GATEWAY_CACHE_SECONDS": "1",
            "LLMOPS_DEPLOYMENT_LEASE_SECONDS": "5",
        }
        if broken:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BREAKS), os.environ.get("PYTHONPATH")]))
            env["LLMOPS_CHAOS_BREAK"] = broken
        for name in (*SERVICES, "gateway"):
            env[f"LLMOPS_CLIENT_{name.upper()}_URL"] = f"http://127.0.0.1:{free_port()}"
        self.env = env
        self.client = ClientSettings(
            **{f"{name}_url": env[f"LLMOPS_CLIENT_{name.upper()}_URL"] for name in (*SERVICES, "gateway")}
        )
        self.stack = Stack(home=home, client=self.client, env=env)

    def start(self) -> None:
        self.postgres.start()
        self.kafka.start()
        self.object_store.start()
        self.stack.up(log=lambda line: console.print(f"   {line}", style="dim"))

    def close(self) -> None:
        self.stack.down(log=lambda _: None)
        self.kafka.stop()
        self.object_store.stop()
        self.postgres.close()

    def db(self, service: str) -> Database:
        return Database(self.pg.url(f"llmops_{service}", user=f"llmops_{service}"))


class Load:
    """The mixed load, each kind a task, every outcome counted."""

    def __init__(self, platform: Platform, rng: random.Random) -> None:
        self.platform, self.rng = platform, rng
        self.counts: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []  # (request id, outcome) through the gateway
        self.phase = "before the faults"  # the last fault begun, for each request
        self.phases: dict[str, str] = {}
        self.answered_at: dict[str, float] = {}
        self.gateway_killed_at: list[float] = []
        self.malformed: list[bytes] = []
        self.dataset_version: int | None = None  # the newest uploaded
        self.stopping = asyncio.Event()

    async def _http(self, url: str, role: Role) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, headers=auth(role), timeout=30)

    async def _loop(self, kind: str, step, pause: float) -> None:
        """``step()`` until stopped; an error (a part being down) is counted and retried after the pause."""
        while not self.stopping.is_set():
            try:
                done = await step()
                self.counts[f"{kind} {'ok' if done is not False else 'waiting'}"] += 1
            except (httpx.HTTPError, OSError) as exc:
                self.counts[f"{kind} error {type(exc).__name__}"] += 1
            except Answered as answered:
                self.counts[f"{kind} {answered.status}"] += 1
            await asyncio.sleep(pause)

    async def run(self, gateway_key: str, dataset: str, prompt: str, base_model: str) -> None:
        client = self.platform.client
        datasets = await self._http(client.datasets_url, Role.DATA_STEWARD)
        prompts = await self._http(client.prompts_url, Role.ML_ENGINEER)
        training = await self._http(client.training_url, Role.ML_ENGINEER)
        evaluation = await self._http(client.evaluation_url, Role.ML_ENGINEER)
        deployment = await self._http(client.deployment_url, Role.ML_ENGINEER)
        gateway = httpx.AsyncClient(
            base_url=client.gateway_url, headers={"authorization": f"Bearer {gateway_key}"}, timeout=30
        )

        async def upload() -> None:
            rows = b"".join(
                orjson.dumps(
                    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
                )
                + b"\n"
                for i in range(self.rng.randrange(10, 40))
            )
            version = _ok(
                await datasets.post(
                    f"/projects/{PROJECT}/datasets/{dataset}/versions",
                    content=rows,
                    params={"train": 0.8, "validation": 0, "test": 0.2},
                    headers={"content-type": "application/jsonl"},
                )
            )
            self.dataset_version = max(self.dataset_version or 0, version["version"])

        async def commit_prompt() -> None:
            template = {
                "kind": "chat",
                "messages": [{"role": "user", "content": "Answer {{ q }} (" + uuid.uuid4().hex[:6] + ")"}],
                "variables": {"q": {"type": "string"}},
            }
            body = {"template": template, "message": "chaos"}
            version = _ok(await prompts.post(f"/projects/{PROJECT}/prompts/{prompt}/versions", json=body))
            _ok(
                await prompts.put(
                    f"/projects/{PROJECT}/prompts/{prompt}/labels/production",
                    json={"version": version["version"], "reason": "chaos"},
                )
            )

        async def train() -> bool:
            if self.dataset_version is None:
                return False  # no dataset version yet: nothing done
            body = {
                "base_model": base_model,
                "dataset": {"name": dataset, "version": self.dataset_version},
                "method": "lora",
                "model_name": "chaos-model",
                "hyperparameters": {"max_steps": 5, "batch_size": 2, "max_seq_length": 32},
            }
            _ok(await training.post(f"/projects/{PROJECT}/training/jobs", json=body))
            return True

        suite: dict = {}

        async def evaluate() -> bool:
            """The suite first (attached to the trained model: each version registered starts a run of it), once the
            evaluation service has the dataset; then runs of it on the base model."""
            if self.dataset_version is None:
                return False
            if not suite:
                body = {
                    "name": "chaos-suite",
                    "dataset": {"name": dataset, "version": self.dataset_version, "split": "test"},
                    "generation": {"max_new_tokens": 4},
                    "scorers": [{"type": "rouge"}],
                    "gates": ["rouge_l >= 0"],
                    "models": ["chaos-model"],
                }
                suite.update(_ok(await evaluation.post(f"/projects/{PROJECT}/evaluation/suites", json=body)))
                return True
            body = {"suite": "chaos-suite", "base_model": base_model, "pool": "cpu"}
            _ok(await evaluation.post(f"/projects/{PROJECT}/evaluation/runs", json=body))
            return True

        async def move_alias() -> bool:
            model = await training.get(f"/projects/{PROJECT}/models/chaos-model")
            if model.status_code == 404:
                return False  # no version trained yet
            versions = [v["version"] for v in _ok(model)["versions"]]
            body = {"version": self.rng.choice(versions), "reason": "chaos"}
            _ok(
                await training.put(
                    f"/projects/{PROJECT}/models/chaos-model/aliases/{self.rng.choice(ALIASES)}", json=body
                )
            )
            return True

        async def set_budget() -> None:
            scope = self.rng.choice(["project", "user"])
            body = {
                "scope": scope,
                "period": self.rng.choice(["day", "month"]),
                "max_tokens": 10**12 + self.rng.randrange(1000),
                "max_cost": 1e9,
            }
            if scope == "user":
                body["subject"] = f"chaos-user-{self.rng.randrange(3)}"
            _ok(await deployment.put(f"/projects/{PROJECT}/budgets", json=body))

        async def ask() -> None:
            request_id = uuid.uuid4().hex
            outcome = "unanswered"
            try:
                answer = await gateway.post(
                    "/v1/chat/completions",
                    json={"model": "chaos", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
                    headers={"x-request-id": request_id},
                )
                outcome = str(answer.status_code)
                if answer.status_code == 503 and answer.json().get("error", {}).get("code") == "gateway_unavailable":
                    outcome = "503 unavailable"  # refused at once: before the caller is known, nothing to record
                self.answered_at[request_id] = time.monotonic()
            finally:
                self.requests.append((request_id, outcome))
                self.phases[request_id] = self.phase

        async def external() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.platform.kafka_settings.bootstrap_servers)
            await producer.start()
            try:
                for i in range(EXTERNAL):
                    if self.stopping.is_set():
                        break
                    if i % (EXTERNAL // MALFORMED) == 7:
                        value = b"{not json " + uuid.uuid4().hex.encode()
                        self.malformed.append(value)
                        await producer.send_and_wait(topics.INFERENCE, value, key=b"malformed")
                        continue
                    event = new_event(
                        InferenceCompleted(
                            request_id=f"ext-{uuid.uuid4().hex}",
                            project=PROJECT,
                            route="partner",
                            api="chat.completions",
                            latency_ms=10.0,
                            tokens_in=3,
                            tokens_out=4,
                            cost=0.0,
                        ),
                        subject=f"ext-{i}",
                        source="urn:chaos:partner",
                        project=PROJECT,
                    )
                    await producer.send_and_wait(topics.INFERENCE, event.to_bytes(), key=event.subject.encode())
                    self.counts["external sent"] += 1
                    await asyncio.sleep(0.2)
            except Exception as exc:  # the broker restarting: what was sent is counted, the rest is not sent
                self.counts[f"external stopped {type(exc).__name__}"] += 1
            finally:
                await producer.stop()

        try:
            await asyncio.gather(
                self._loop("upload", upload, 2.0),
                self._loop("prompt", commit_prompt, 1.5),
                self._loop("train", train, 25.0),
                self._loop("evaluate", evaluate, 20.0),
                self._loop("alias", move_alias, 5.0),
                self._loop("budget", set_budget, 4.0),
                *(self._loop("ask", ask, 0.05) for _ in range(3)),
                external(),
            )
        finally:
            for http in (datasets, prompts, training, evaluation, deployment, gateway):
                await http.aclose()


class Answered(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _ok(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        raise Answered(response.status_code)
    return response.json()


def start_stub(port: int) -> subprocess.Popen:
    """The external deployment's backend: the gateway tests' OpenAI-compatible stub, in a process of its own."""
    return subprocess.Popen([sys.executable, str(STUB), "--port", str(port)], stdout=subprocess.DEVNULL)


async def prepare(platform: Platform, scratch: Path) -> tuple[str, str, str, str, subprocess.Popen]:
    """A dataset, a prompt, a tiny base model, a suite on the model, an external deployment behind route ``chaos``
    and an API key; the key, the dataset, the prompt, the base model and the stub backend's process."""
    client = platform.client
    steward, engineer = auth(Role.DATA_STEWARD), auth(Role.ML_ENGINEER)
    async with httpx.AsyncClient(timeout=120) as http:
        dataset, prompt, base = "chaos-data", "chaos-prompt", "chaos-tiny"
        _ok(
            await http.post(
                f"{client.datasets_url}/projects/{PROJECT}/datasets",
                json={"name": dataset, "format": "chat"},
                headers=steward,
            )
        )
        _ok(
            await http.post(f"{client.prompts_url}/projects/{PROJECT}/prompts", json={"name": prompt}, headers=engineer)
        )
        from llmops.tiny_model import build_tiny_model
        from llmops_training.cli import registry

        tiny = await asyncio.to_thread(build_tiny_model, scratch / "tiny")
        archive = scratch / "tiny.tar"
        await asyncio.to_thread(registry.pack, tiny, archive)
        _ok(
            await http.post(
                f"{client.training_url}/projects/{PROJECT}/base-models/{base}/upload",
                content=archive.read_bytes(),
                headers=engineer | {"content-type": registry.TAR},
            )
        )
        port = free_port()
        stub = await asyncio.to_thread(start_stub, port)
        body = {
            "name": "partner",
            "backend": "external",
            "external": {"url": f"http://127.0.0.1:{port}/v1", "model": "stub"},
        }
        deployment = _ok(
            await http.post(f"{client.deployment_url}/projects/{PROJECT}/deployments", json=body, headers=engineer)
        )
        deadline = time.monotonic() + 120
        while (
            _ok(
                await http.get(
                    f"{client.deployment_url}/projects/{PROJECT}/deployments/{deployment['id']}", headers=engineer
                )
            )["status"]
            != "ready"
        ):
            if time.monotonic() > deadline:
                raise SystemExit("chaos: the external deployment did not become ready")
            await asyncio.sleep(0.3)
        _ok(
            await http.put(
                f"{client.deployment_url}/projects/{PROJECT}/routes/chaos",
                json={"targets": [{"deployment_id": deployment["id"], "weight": 1}], "reason": "chaos"},
                headers=engineer,
            )
        )
        key = _ok(
            await http.post(
                f"{client.deployment_url}/projects/{PROJECT}/keys", json={"name": "chaos"}, headers=engineer
            )
        )
    return key["secret"], dataset, prompt, base, stub


async def faults(platform: Platform, rng: random.Random, load: Load, gap: float) -> list[str]:
    """Each part SIGKILLed in turn and started again, then the broker, Postgres and the object store restarted; what
    was done."""
    done = []
    order = [part.name for part in PARTS]
    rng.shuffle(order)
    for name in order:
        await asyncio.sleep(gap)
        process = platform.stack.process(next(p for p in PARTS if p.name == name))
        pid = process.pid()
        if pid is not None:
            aimed = await in_the_window(platform, pid) if platform.broken else await at_work(platform, name)
            load.phase = f"SIGKILL {name}"
            if name == "gateway":
                load.gateway_killed_at.append(time.monotonic())
            os.kill(pid, 9)
            done.append(f"SIGKILL {name} (pid {pid}{aimed})")
            console.print(f"   [red]SIGKILL[/red] {name} (pid {pid}{aimed})")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(platform.stack.up, [name], log=lambda _: None)
    for label, part in (
        ("Kafka broker", platform.kafka),
        ("Postgres", platform.postgres),
        ("object store", platform.object_store),
    ):
        await asyncio.sleep(gap)
        console.print(f"   [red]restart[/red] {label}")
        load.phase = f"restart {label}"
        stopping = time.monotonic()
        await asyncio.to_thread(part.stop)
        await asyncio.sleep(5)
        await asyncio.to_thread(part.start)
        done.append(f"restarted {label} (away for {time.monotonic() - stopping:.0f} s)")
    return done


async def in_the_window(platform: Platform, pid: int) -> str:
    """Wait (at most ``AIM_SECONDS``) until process ``pid`` has a batch between its early commit and its transaction,
    as the broken-on-purpose sitecustomize shows it; what to say of the kill."""
    marker = platform.home / "chaos-windows" / str(pid)
    deadline = time.monotonic() + AIM_SECONDS
    while time.monotonic() < deadline:
        if marker.exists():
            return ", in its commit-first window"
        await asyncio.sleep(0.01)
    return ", no batch in its window"


#: The workers whose SIGKILL waits (at most ``AIM_SECONDS``) for them to be at work: the table of their work.
AT_WORK = {"training-worker": ("training", "jobs"), "evaluation-worker": ("evaluation", "runs")}


async def at_work(platform: Platform, name: str) -> str:
    """For a training or evaluation worker, wait (at most ``AIM_SECONDS``) until a job or run is running, so that its
    SIGKILL lands in the middle of one; what to say of the kill."""
    if name not in AT_WORK:
        return ""
    service, table = AT_WORK[name]
    deadline = time.monotonic() + AIM_SECONDS
    while time.monotonic() < deadline:
        db = platform.db(service)
        try:
            async with db.sessions() as session:
                running = (
                    await session.execute(text(f"SELECT count(*) FROM {table} WHERE status = 'running'"))  # noqa: S608
                ).scalar_one()
        except Exception:  # Postgres away: look again
            running = 0
        finally:
            await db.dispose()
        if running:
            return f", {running} {table} running"
        await asyncio.sleep(0.2)
    return f", no {table} running"


async def settle(platform: Platform, within: float = 300) -> None:
    """Wait until nothing moves: every outbox published, the audit log caught up, jobs and runs ended, every consumer
    group at the end of its topics."""
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        state = await snapshot(platform)
        state["lagging"] = await lagging(platform)
        if state == last and not state["unpublished"] and not state["unfinished"] and not state["lagging"]:
            return
        last = state
        await asyncio.sleep(5)
    console.print(f"[yellow]not settled after {within:.0f} s: {last}[/yellow]")


async def snapshot(platform: Platform) -> dict:
    unpublished, unfinished, outbox_ids = 0, {}, set()
    for service in SERVICES:
        db = platform.db(service)
        try:
            async with db.sessions() as session:
                unpublished += (
                    await session.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
                ).scalar_one()
                outbox_ids |= {
                    str(r[0])
                    for r in await session.execute(
                        text("SELECT event_id FROM outbox WHERE topic <> :t"), {"t": topics.INFERENCE}
                    )
                }
                if service == "training":
                    unfinished["jobs"] = (
                        await session.execute(text("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"))
                    ).scalar_one()
                if service == "evaluation":
                    unfinished["runs"] = (
                        await session.execute(text("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"))
                    ).scalar_one()
                if service == "deployment":
                    unfinished["deployments"] = (
                        await session.execute(
                            text("SELECT count(*) FROM deployments WHERE status IN ('requested', 'starting')")
                        )
                    ).scalar_one()
        finally:
            await db.dispose()
    audit = platform.db("audit")
    try:
        async with audit.sessions() as session:
            audited = {str(r[0]) for r in await session.execute(text("SELECT event_id FROM audit_log"))}
    finally:
        await audit.dispose()
    return {
        "unpublished": unpublished,
        "unfinished": {k: v for k, v in unfinished.items() if v},
        "outbox": len(outbox_ids),
        "missing": len(outbox_ids - audited),
        "audited": len(audited),  # settled: nothing more arrives between two looks
    }


async def lagging(platform: Platform) -> dict[str, int]:
    """The consumer groups not yet at the end of the topics they read: how many records each has left."""
    bootstrap = platform.kafka_settings.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        left = {}
        for group, _protocol in await admin.list_consumer_groups():
            committed = await admin.list_consumer_group_offsets(group)
            read = sorted({topic for topic, _ in committed})
            # every partition of those topics (a consumer's own metadata knows none of them: it subscribed to none)
            described = await admin.describe_topics(read) if read else []
            partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
            ends = await consumer.end_offsets(partitions) if partitions else {}
            behind = sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
            if behind > 0:
                left[group] = behind
        return left
    finally:
        await consumer.stop()
        await admin.close()


async def whole_topic(platform: Platform, topic: str) -> list:
    """Every record of ``topic`` from its start to its end now."""
    bootstrap = platform.kafka_settings.bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)  # its metadata: the topic's partitions
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await producer.partitions_for(topic)]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                found += messages
        return found
    finally:
        await consumer.stop()


async def dead_letters(platform: Platform) -> list[tuple[bytes, str]]:
    """Each dead letter's original bytes and reason."""
    return [
        (m.value, dict(m.headers).get("x-dlq-reason", b"").decode())
        for m in await whole_topic(platform, topics.DEAD_LETTER)
    ]


async def gateway_records(platform: Platform, ids: set[str]) -> Counter:
    """How many records each of ``ids`` has on the inference topic, by the status they say the client got."""
    counts: Counter = Counter()
    for message in await whole_topic(platform, topics.INFERENCE):
        try:
            event = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            continue
        data = event.get("data") or {}
        if data.get("request_id") in ids:
            status = "200" if event["type"] == "inference.completed" else str(data.get("status"))
            counts[(data["request_id"], status)] += 1
    return counts


async def compare_projections(platform: Platform) -> list[str]:
    """Each projection (``projections.PROJECTIONS``) compared with its rebuild from its topics: what differs, as
    lines (a malformed record on a topic is no event: the dead-letter check accounts for it)."""
    differences, events = [], {}
    for projection in PROJECTIONS:
        for topic in projection.topics:
            if topic not in events:
                events[topic] = []
                for message in await whole_topic(platform, topic):
                    try:
                        events[topic].append(orjson.loads(message.value))
                    except orjson.JSONDecodeError:
                        continue
        expected = projection.rebuild([e for t in projection.topics for e in events[t]], PROJECT)
        db = platform.db(projection.service)
        try:
            async with db.sessions() as session:
                held = {tuple(row) for row in await session.execute(text(projection.sql), {"p": PROJECT})}
        finally:
            await db.dispose()
        if held != expected:
            differences.append(
                f"{projection.service}.{projection.name}: {len(expected - held)} missing, "
                f"{len(held - expected)} not as the topic says (e.g. {sorted(held - expected, key=str)[:2]} "
                f"for {sorted(expected - held, key=str)[:2]})"
            )
    return differences


async def outcomes_of_work(platform: Platform) -> dict[str, dict[str, int]]:
    """How the training jobs and evaluation runs of the load ended, by status."""
    found = {}
    for service, table in (("training", "jobs"), ("evaluation", "runs")):
        db = platform.db(service)
        try:
            async with db.sessions() as session:
                rows = await session.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY status"))  # noqa: S608
                found[table] = {status: count for status, count in rows}
        finally:
            await db.dispose()
    return found


async def check(platform: Platform, load: Load) -> list[tuple[str, bool, str]]:
    results = []
    state = await snapshot(platform)
    results.append(
        (
            "every committed event published and in the audit log",
            state["unpublished"] == 0 and state["missing"] == 0,
            f"{state['outbox']} events in the outboxes, {state['unpublished']} unpublished, "
            f"{state['missing']} missing from the audit log",
        )
    )
    async with httpx.AsyncClient(base_url=platform.client.audit_url, timeout=120) as http:
        token = {"authorization": f"Bearer {issue_token('chaos-auditor', [Role.AUDITOR], ['*'])}"}
        report = (await http.get("/audit/verify", headers=token)).json()
    results.append(("the audit chain verifies", bool(report.get("ok")), f"{report.get('checked')} entries checked"))
    results.append(
        ("no job, run or deployment left in progress", not state["unfinished"], str(state["unfinished"] or "none"))
    )
    ended = await outcomes_of_work(platform)
    failed = {table: statuses.get("failed", 0) for table, statuses in ended.items()}
    results.append(
        (
            "every training job and evaluation run completed (the faults are outages, not failures)",
            not any(failed.values()) and all(statuses.get("completed") for statuses in ended.values()),
            f"by status: {ended}",
        )
    )
    differences = await compare_projections(platform)
    results.append(
        (
            "every projection equals its rebuild from its topics",
            not differences,
            "; ".join(differences) or f"{len(PROJECTIONS)} projections, each as its topics rebuild it",
        )
    )
    letters = await dead_letters(platform)
    unexpected = [(value[:60], reason) for value, reason in letters if value not in set(load.malformed)]
    missing = [value for value in load.malformed if value not in {v for v, _ in letters}]
    results.append(
        (
            "dead letters: the malformed records sent, nothing else",
            not unexpected and not missing,
            f"{len(letters)} dead letters for {len(load.malformed)} malformed sent; unexpected {unexpected[:3]}, "
            f"missing {len(missing)}",
        )
    )
    answered = {rid: outcome for rid, outcome in load.requests if outcome != "unanswered"}
    records = await gateway_records(platform, {rid for rid, _ in load.requests})
    per_request: Counter = Counter()
    for (rid, _status), n in records.items():
        per_request[rid] += n

    def buffered_at_a_kill(rid: str) -> bool:  # answered just before the gateway's SIGKILL: its record was in memory
        at = load.answered_at.get(rid, 0.0)
        return any(killed - BUFFERED_SECONDS <= at <= killed + ON_THE_WIRE for killed in load.gateway_killed_at)

    wrong = [
        rid
        for rid, outcome in answered.items()
        if outcome != "503 unavailable"
        and not (per_request[rid] == 0 and buffered_at_a_kill(rid))
        and (per_request[rid] != 1 or records[(rid, outcome)] != 1)
    ]
    lost_with_buffer = sum(1 for rid in answered if per_request[rid] == 0 and buffered_at_a_kill(rid))
    doubled = [rid for rid, n in per_request.items() if n > 1]
    outcomes = Counter(outcome for _, outcome in load.requests)
    if wrong:
        where = Counter((load.phases[rid], answered[rid], per_request[rid]) for rid in wrong)
        console.print("answered requests without exactly one matching record (phase, answer, records): " + str(where))
    results.append(
        (
            "each answered gateway request recorded once, as answered; the counts add up",
            not wrong and not doubled and sum(outcomes.values()) == len(load.requests),
            f"{len(load.requests)} sent: {dict(outcomes)}; {len(wrong)} answered without exactly one matching "
            f"record, {len(doubled)} recorded twice, {lost_with_buffer} lost in the gateway's buffer at its SIGKILL",
        )
    )
    return results


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="llmops-chaos-"))
    console.rule(f"[bold]chaos run (seed {args.seed}{', broken: ' + args.broken if args.broken else ''})")
    platform = Platform(home, args.broken)
    stub = None
    began = time.monotonic()
    try:
        await asyncio.to_thread(platform.start)
        key, dataset, prompt, base, stub = await prepare(platform, home)
        load = Load(platform, rng)
        running = asyncio.create_task(load.run(key, dataset, prompt, base))
        done = await faults(platform, rng, load, args.gap)
        await asyncio.sleep(args.gap)
        load.stopping.set()
        await running
        await asyncio.to_thread(platform.stack.up, log=lambda _: None)  # whatever is still down
        await settle(platform)
        results = await check(platform, load)
    finally:
        if stub is not None:
            stub.kill()
        await asyncio.to_thread(platform.close)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    table = Table("load", "count", title="load")
    for kind, count in sorted(load.counts.items()):
        table.add_row(kind, str(count))
    console.print(table)
    console.print("faults: " + "; ".join(done))
    table = Table("invariant", "holds", "detail", title=f"invariants after {time.monotonic() - began:.0f} s")
    for name, ok, detail in results:
        table.add_row(name, "[green]yes[/green]" if ok else "[red]NO[/red]", detail)
    console.print(table)
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    parser.add_argument("--gap", type=float, default=6.0, help="seconds between faults")
    parser.add_argument("--broken", choices=["commit-first"], default=os.environ.get("CHAOS_BREAK") or None)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, data)")
    sys.exit(asyncio.run(main(parser.parse_args())))
