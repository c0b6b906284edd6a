"""What the serving worker's tests share beside the fixtures: models in the object store, deployments requested the
way the API does (rows and the ``deployment.requested`` event in one transaction), a running worker, and waiting on
a deployment's state."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, select, update

from llmops.artifacts import put_directory
from llmops.bus import add_to_outbox, outbox
from llmops.testing import running
from llmops_deployment.models import deployment_logs, deployment_replicas, deployments
from llmops_deployment.worker import ServingWorker
from llmops_schemas import new_event, topics
from llmops_schemas.events.deployments import (
    DeploymentRequested,
    DeploymentStopRequested,
    ExternalEndpoint,
    ServedModel,
)
from llmops_schemas.events.training import BaseModelRef


def make_adapter(base_dir: Path, out_dir: Path) -> Path:
    """A LoRA adapter of the tiny model with non-zero weights (so merging changes the model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out_dir)
    return out_dir


async def upload(service, directory: Path) -> str:
    return (await put_directory(service.runtime.store, directory)).sha256


def full_model(sha256: str, name: str = "tiny-full") -> ServedModel:
    return ServedModel(
        model_version_id=str(uuid.uuid4()),
        name=name,
        version=1,
        kind="full",
        manifest_sha256=sha256,
        base_model=BaseModelRef(base_model_id="b1", name="tiny", source="upload", manifest_sha256=sha256),
    )


def adapter_model(adapter_sha: str, base_sha: str, name: str = "tiny-lora") -> ServedModel:
    return ServedModel(
        model_version_id=str(uuid.uuid4()),
        name=name,
        version=1,
        kind="adapter",
        manifest_sha256=adapter_sha,
        base_model=BaseModelRef(base_model_id="b1", name="tiny", source="upload", manifest_sha256=base_sha),
    )


async def request_deployment(
    service,
    *,
    backend: str = "transformers",
    model: ServedModel | None = None,
    external: ExternalEndpoint | None = None,
    replicas: int = 1,
    pool: str = "cpu",
    name: str | None = None,
) -> str:
    """A deployment with its replica rows and its ``deployment.requested`` event, as the API writes them."""
    deployment_id = str(uuid.uuid4())
    payload = DeploymentRequested(
        deployment_id=deployment_id,
        project="p1",
        name=name or f"d-{deployment_id[:8]}",
        pool=pool,
        backend=backend,
        replicas=replicas,
        model=model,
        external=external,
        requested_by="eve",
    )
    async with service.runtime.db.transaction() as session:
        await session.execute(
            insert(deployments).values(
                id=deployment_id,
                project="p1",
                name=payload.name,
                backend=backend,
                pool=pool,
                replicas=replicas,
                model_name=None if model is None else model.name,
                model_version=None if model is None else model.version,
                model_version_id=None if model is None else model.model_version_id,
                model=None if model is None else model.model_dump(mode="json"),
                external=None if external is None else external.model_dump(mode="json"),
                status="requested",
                requested_by="eve",
            )
        )
        await session.execute(
            insert(deployment_replicas), [{"deployment_id": deployment_id, "replica": i} for i in range(replicas)]
        )
        await add_to_outbox(session, event_of(payload, deployment_id))
    return deployment_id


async def request_stop(service, deployment_id: str) -> None:
    """What the API does on a stop: the deployment ``stopping`` and ``deployment.stop.requested``."""
    payload = DeploymentStopRequested(deployment_id=deployment_id, project="p1", requested_by="eve")
    async with service.runtime.db.transaction() as session:
        await session.execute(update(deployments).where(deployments.c.id == deployment_id).values(status="stopping"))
        await add_to_outbox(session, event_of(payload, deployment_id))


def event_of(payload, deployment_id: str):
    return new_event(payload, subject=deployment_id, source="/llmops/deployment", actor="eve", project="p1")


async def send_raw(value: bytes, key: bytes = b"test") -> None:
    """Bytes onto the deployments topic, as a redelivery or a broken producer would put them there."""
    from aiokafka import AIOKafkaProducer

    from llmops.settings import KafkaSettings

    producer = AIOKafkaProducer(bootstrap_servers=KafkaSettings().bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topics.DEPLOYMENTS, value, key=key)
    finally:
        await producer.stop()


@asynccontextmanager
async def serving(settings, name: str = "test-worker", **changes: Any) -> AsyncIterator[ServingWorker]:
    """A serving worker running (its consumer assigned) for the block; stopped (replicas handed back) after it."""
    async with running(
        ServingWorker(settings.model_copy(update=changes) if changes else settings, name=name)
    ) as worker:
        yield worker


async def deployment_of(service, deployment_id: str) -> Any:
    async with service.runtime.db.sessions() as session:
        return (await session.execute(select(deployments).where(deployments.c.id == deployment_id))).one()


async def replicas_of(service, deployment_id: str) -> list[Any]:
    query = select(deployment_replicas).where(deployment_replicas.c.deployment_id == deployment_id)
    async with service.runtime.db.sessions() as session:
        return list((await session.execute(query.order_by(deployment_replicas.c.replica))).all())


async def logs_of(service, deployment_id: str) -> list[str]:
    query = select(deployment_logs.c.line).where(deployment_logs.c.deployment_id == deployment_id)
    async with service.runtime.db.sessions() as session:
        return list((await session.execute(query.order_by(deployment_logs.c.id))).scalars())


async def wait_for(service, deployment_id: str, predicate, *, within: float = 120) -> Any:
    """The replica 0 once ``predicate(replica)`` holds."""
    deadline = time.monotonic() + within
    while True:
        replicas = await replicas_of(service, deployment_id)
        if predicate(replicas[0]):
            return replicas[0]
        assert time.monotonic() < deadline, f"the replica never got there: {replicas[0]}"
        await asyncio.sleep(0.2)


async def wait_for_event(service, deployment_id: str, event_type: str, count: int = 1, *, within: float = 120):
    deadline = time.monotonic() + within
    while True:
        events = [e for e in await outbox_events(service, deployment_id) if e["type"] == event_type]
        if len(events) >= count:
            return events
        assert time.monotonic() < deadline, f"no {count} {event_type} within {within} s"
        await asyncio.sleep(0.2)


async def outbox_events(service, subject: str | None = None) -> list[dict]:
    """Every event the service (or a worker sharing its database) has written to its outbox, in order."""
    async with service.runtime.db.sessions() as session:
        rows = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        events = [orjson.loads(p) for p in rows]
    return [e for e in events if subject is None or e["subject"] == subject]


async def chat(endpoint: str, model: str, api_key: str | None = None) -> Any:
    """One chat completion through the hub's client, as an application would call the backend."""
    from huggingface_hub import AsyncInferenceClient

    client = AsyncInferenceClient(base_url=endpoint, api_key=api_key, timeout=60)
    try:
        return await client.chat_completion(messages=[{"role": "user", "content": "Hi"}], model=model, max_tokens=4)
    finally:
        await client.close()


@contextmanager
def openai_server(key: str | None = None) -> Iterator[tuple[str, list[dict]]]:
    """A real OpenAI-style server on a thread (``/v1/models``, ``/v1/chat/completions``); yields its ``/v1`` URL and
    the requests it received. With ``key``, it answers 401 to calls without it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return None

        def _allowed(self) -> bool:
            received.append({"path": self.path, "authorization": self.headers.get("authorization")})
            if key is not None and self.headers.get("authorization") != f"Bearer {key}":
                self._send(401, {"error": "no key"})
                return False
            return True

        def do_GET(self) -> None:
            if self._allowed():
                self._send(200, {"object": "list", "data": [{"id": "gpt-x", "object": "model"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            if self._allowed():
                message = {"role": "assistant", "content": "hi"}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
                body = {"id": "c1", "object": "chat.completion", "created": 0, "model": "gpt-x"}
                self._send(200, {**body, "choices": [choice], "usage": usage})

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", received
    finally:
        server.shutdown()
        server.server_close()
