"""`llmops up | ps | down` as a user runs them: eleven processes (seven services, the gateway, three workers) started
from the real command, each ready (a service's /readyz, a worker holding its partitions); a SIGKILLed part shows as
stopped and the next `up` starts it alone; `down` stops every part gracefully.

The same platform exports its traces by OTLP to a collector stand-in: one deployment request makes one trace across
the deployment service's HTTP span, the serving worker's span and the monitoring service's consumer spans.

The platform runs here on databases, consumer groups and an audit topic of this test alone (new groups start at the
topics' ends), so it neither reads nor changes what the other tests and the demo left on the shared infrastructure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry.trace import SpanKind

from llmops import infra
from llmops.db import create_database, drop_database
from llmops.infra.base import pid_alive
from llmops.settings import ClientSettings, KafkaSettings, PostgresSettings
from llmops.stack import PARTS, Stack
from llmops.testing import LLMOPS, bearer
from llmops.tokens import Role
from llmops_schemas import new_event, topics
from llmops_schemas.events import InferenceCompleted

from .collector import Collector

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SERVICES = ("audit", "datasets", "prompts", "training", "evaluation", "deployment", "monitoring")
#: Settings with a group or a starting point (LLMOPS_<SERVICE>_<NAME>): each gets this test's own.
GROUPS = {
    "datasets": ("consumer",),
    "training": ("consumer", "worker"),
    "evaluation": ("consumer", "worker"),
    "deployment": ("consumer", "worker"),
    "monitoring": ("consumer", "records"),
}


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


STUB = Path(__file__).parents[2] / "services" / "deployment" / "tests" / "gateway" / "stub_backend.py"


@pytest.fixture
def collector():
    with Collector() as running:
        yield running


@pytest.fixture
def stub_backend():
    """An OpenAI-compatible stub server (an external deployment's backend); its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(STUB), "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.kill()
        process.wait()


@pytest.fixture
async def platform_env(infra_up, tmp_path, collector):
    """The environment of a platform of this test's own; the databases and the audit topic are removed after."""
    run = uuid.uuid4().hex[:10]
    pg = PostgresSettings()
    env = {
        "LLMOPS_HOME": str(tmp_path),
        "LLMOPS_MONITORING_RECORDS_WORKERS": "1",
        "LLMOPS_DEPLOYMENT_ALLOWED_EXTERNAL_HOSTS": '["127.0.0.1"]',
        # every process exports its spans to the collector, in batches a fifth of a second apart
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    for name in (*SERVICES, "gateway"):
        env[f"LLMOPS_CLIENT_{name.upper()}_URL"] = f"http://127.0.0.1:{free_port()}"
    databases = []
    for service in SERVICES:
        database = f"llmops_{service}_stack_{run}"
        await create_database(database, pg, owner=f"llmops_{service}", connect=(f"llmops_{service}_app",))
        databases.append(database)
        prefix = f"LLMOPS_{service.upper()}_"
        env[prefix + "DATABASE_URL"] = pg.url(database, user=f"llmops_{service}_app")
        env[prefix + "MIGRATIONS_DATABASE_URL"] = pg.url(database, user=f"llmops_{service}")
        for kind in GROUPS.get(service, ()):
            field = "consumer_group" if kind == "consumer" else f"{kind}_group"
            env[prefix + field.upper()] = f"stack-{run}-{service}-{kind}"
            env[prefix + f"{kind.upper()}_OFFSET_RESET"] = "latest"
    audit_topic = f"stack-audit-{run}"
    env["LLMOPS_AUDIT_TOPICS"] = f'["{audit_topic}"]'
    env["LLMOPS_AUDIT_CONSUMER_GROUP"] = f"stack-{run}-audit"
    bootstrap = KafkaSettings().bootstrap_servers
    await infra.ensure_topics(bootstrap, [audit_topic], 1, 1)
    # the records group starts where the inference topic ends now, however late its workers join
    await commit_ends(bootstrap, env["LLMOPS_MONITORING_RECORDS_GROUP"], topics.INFERENCE)
    try:
        yield env
    finally:
        Stack(home=tmp_path, client=client_of(env)).down(log=lambda _: None)
        for database in databases:
            await drop_database(database, pg)
        await infra.delete_topics(bootstrap, [audit_topic])


async def commit_ends(bootstrap: str, group: str, topic: str) -> None:
    """Commit ``group``'s offsets at ``topic``'s current ends (a new group that then starts from here)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await producer.partitions_for(topic)]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        assert partitions, f"{topic} exists"
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


def client_of(env: dict[str, str]) -> ClientSettings:
    names = (*SERVICES, "gateway")
    return ClientSettings(**{f"{name}_url": env[f"LLMOPS_CLIENT_{name.upper()}_URL"] for name in names})


async def llmops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(
        subprocess.run,
        [LLMOPS, *args],
        env={**os.environ, "COLUMNS": "240", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


async def test_up_ps_down_runs_every_part_in_a_process_of_its_own(platform_env, tmp_path, collector, stub_backend):
    env = platform_env
    stack = Stack(home=tmp_path, client=client_of(env))

    up = await llmops(env, "up", "--no-infra")
    assert up.returncode == 0, up.stdout + up.stderr
    rows = {row.name: row for row in stack.status()}
    assert set(rows) == {part.name for part in PARTS}
    assert {name: row.state for name, row in rows.items()} == {part.name: "ready" for part in PARTS}
    pids = {name: row.pid for name, row in rows.items()}
    assert len(set(pids.values())) == len(PARTS), "each part runs in a process of its own"
    async with httpx.AsyncClient(timeout=10) as http:
        for name in (*SERVICES, "gateway"):
            url = env[f"LLMOPS_CLIENT_{name.upper()}_URL"]
            answer = await http.get(f"{url}/readyz")
            assert answer.status_code == 200, (name, answer.text)
            if name != "gateway":  # each service is the one it says, on its own port
                assert (await http.get(f"{url}/healthz")).json()["service"] == name
    deployment_id = await one_trace_across_the_processes(env, collector, stub_backend)
    await records_reach_the_monitoring_service(env, deployment_id)

    ps = await llmops(env, "ps")
    assert ps.returncode == 0
    for part in PARTS:
        assert part.name in ps.stdout and str(pids[part.name]) in ps.stdout

    # A part killed outright shows as stopped; the next `up` starts it alone and leaves the others as they are.
    os.kill(pids["prompts"], signal.SIGKILL)
    stopped = await asyncio.to_thread(_wait_for, lambda: stack.status()[PART_INDEX["prompts"]].pid is None)
    assert stopped, "a killed part shows as stopped"
    again = await llmops(env, "up", "--no-infra")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started prompts" in again.stderr and again.stderr.count("started ") == 1, again.stderr
    after = {row.name: row for row in stack.status()}
    assert after["prompts"].state == "ready" and after["prompts"].pid != pids["prompts"]
    assert {n: r.pid for n, r in after.items() if n != "prompts"} == {n: p for n, p in pids.items() if n != "prompts"}

    down = await llmops(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [row.state for row in stack.status()] == ["stopped"] * len(PARTS)
    assert not any(pid_alive(pid) for pid in (*pids.values(), after["prompts"].pid))
    # Gracefully: each worker left its consumer group itself rather than being killed.
    for service in ("training", "evaluation", "deployment"):
        log = await asyncio.to_thread((tmp_path / "stack" / "logs" / f"{service}-worker.log").read_text)
        assert f'"{service}.worker.stopped"' in log
    assert "nothing was running" in (await llmops(env, "down")).stderr


async def test_an_unknown_part_is_refused_naming_the_choices(tmp_path):
    result = await llmops({"LLMOPS_HOME": str(tmp_path)}, "up", "--no-infra", "trainer")
    assert result.returncode == 2
    assert "unknown part(s) trainer" in result.stderr and "training-worker" in result.stderr


async def one_trace_across_the_processes(env: dict[str, str], collector: Collector, backend_url: str) -> str:
    """A deployment of an external server, requested over HTTP: the request's span (deployment service), the
    serving worker's span for the replica it starts, and the monitoring service's consumer spans for
    ``deployment.requested`` (child of the request) and ``deployment.ready`` (child of the worker's span) are one
    trace; the events carried it in their envelopes' ``traceparent``."""
    url = env["LLMOPS_CLIENT_DEPLOYMENT_URL"]
    body = {"name": "traced", "backend": "external", "external": {"url": backend_url, "model": "stub"}}
    async with httpx.AsyncClient(base_url=url, headers=bearer(Role.ML_ENGINEER), timeout=30) as http:
        created = await http.post("/projects/p1/deployments", json=body)
        assert created.status_code == 201, created.text
        deployment_id = created.json()["id"]

        async def ready() -> bool:
            return (await http.get(f"/projects/p1/deployments/{deployment_id}")).json()["status"] == "ready"

        assert await _eventually(ready, within=120), "the external deployment became ready"

    def whole_trace() -> list | None:
        requests = collector.named("POST /projects/{project}/deployments", "deployment")
        if not requests:
            return None
        spans = collector.trace(requests[0].trace_id)
        names = {(span.service, span.name) for span in spans}
        wanted = {
            ("deployment-worker", "serve replica"),
            ("monitoring", "process deployment.requested"),
            ("monitoring", "process deployment.ready"),
        }
        return spans if wanted <= names else None

    assert await asyncio.to_thread(_wait_for, whole_trace, 60), f"spans seen: {collector.spans}"
    spans = whole_trace()
    by_name = {(span.service, span.name): span for span in spans}
    request = by_name["deployment", "POST /projects/{project}/deployments"]
    worker = by_name["deployment-worker", "serve replica"]
    tree = [(s.service, s.name, s.span_id, s.parent_id) for s in spans]
    assert request.kind == SpanKind.SERVER.value + 1  # OTLP's enum counts from unspecified
    assert request.parent_id == "", f"one server span, the trace's root: {tree}"
    assert [s.name for s in spans].count(request.name) == 1, tree
    # the events and the claimed row carry the context current where they were written: the endpoint's span,
    # inside the request's server span
    assert descends(worker, request, spans), f"the worker continued the trace of the request: {tree}"
    assert worker.attributes["llmops.deployment_id"] == deployment_id
    # it lasts from the claim until the replica is ready: the health check of the backend at least
    assert worker.seconds > 0.001, f"the worker's span lasted {worker.seconds} s"
    assert descends(by_name["monitoring", "process deployment.requested"], request, spans), tree
    ready_span = by_name["monitoring", "process deployment.ready"]
    assert ready_span.parent_id == worker.span_id, "deployment.ready carried the worker's span"
    assert ready_span.attributes["cloudevents.event_type"] == "deployment.ready"
    return deployment_id


async def records_reach_the_monitoring_service(env: dict[str, str], deployment_id: str) -> None:
    """The served monitoring service runs its records workers: inference records another system publishes on Kafka
    are stored and counted (its metrics API)."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    events = [
        new_event(
            InferenceCompleted(
                request_id=f"stack-{i}",
                project="p1",
                route="traced",
                api="chat.completions",
                deployment_id=deployment_id,
                latency_ms=20.0 + i,
                tokens_in=5,
                tokens_out=7,
                cost=0.0,
                finish_reason="stop",
            ),
            subject=f"stack-{i}",
            source="urn:tests:stack",
            project="p1",
        )
        for i in range(3)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=KafkaSettings().bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topics.INFERENCE, event.to_bytes(), key=event.subject.encode())
    finally:
        await producer.stop()
    url = env["LLMOPS_CLIENT_MONITORING_URL"]
    params = {"start": start.isoformat(), "deployment_id": deployment_id, "resolution": "hour"}
    async with httpx.AsyncClient(base_url=url, headers=bearer(Role.ML_ENGINEER), timeout=30) as http:

        async def counted() -> bool:
            answer = await http.get("/projects/p1/monitoring/metrics", params=params)
            assert answer.status_code == 200, answer.text
            return sum(group["requests"] for group in answer.json()["groups"]) == len(events)

        assert await _eventually(counted, within=120), "the records were ingested by the records workers"


def descends(span, ancestor, spans) -> bool:
    """Whether ``ancestor`` is on ``span``'s chain of parents."""
    parents = {s.span_id: s.parent_id for s in spans}
    current = span.parent_id
    while current:
        if current == ancestor.span_id:
            return True
        current = parents.get(current, "")
    return False


async def _eventually(predicate, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


PART_INDEX = {part.name: i for i, part in enumerate(PARTS)}


def _wait_for(condition, within: float = 30) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
