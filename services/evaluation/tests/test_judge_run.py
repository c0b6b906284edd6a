"""An LLM judge in a run, on real Kafka, Postgres and S3: its rubric is a prompt version, it is called over HTTP, its
raw answers are kept, and answers without a valid score are counted as unparseable, never as zeros."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from llmops_evaluation import repository
from llmops_evaluation.worker import EvaluationWorker

from .openai_server import openai_server
from .worker_support import create_suite, examples_of, finished, instruction_rows, request_run, seed_dataset

pytestmark = pytest.mark.integration

RUBRIC = {
    "kind": "chat",
    "messages": [
        {"role": "system", "content": 'Grade the answer from 1 to 5. Reply with JSON: {"score": N}.'},
        {"role": "user", "content": "Question: {{ input }}\nReference: {{ reference }}\nAnswer: {{ output }}"},
    ],
    "variables": {"input": {"type": "string"}, "output": {"type": "string"}, "reference": {"type": "string"}},
}


@contextmanager
def judge_server() -> Iterator[str]:
    """A judge that grades 4 in JSON, except for questions about even items: there it rambles (no JSON)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return None

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            prompt = body["messages"][-1]["content"]
            number = int(prompt.split("item ")[1].split("?")[0])
            answer = "I would rather not say." if number % 2 == 0 else 'Fair enough. {"score": 4}'
            data = json.dumps(
                {
                    "id": "j",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "judge-7b",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                    ],
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def worker(evaluation_settings):
    running = EvaluationWorker(evaluation_settings, name="judge-test-worker")
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.ready.wait(), 60)
    yield running
    running.stop()
    await asyncio.wait_for(task, 60)


async def test_a_judge_that_returns_garbage_yields_unparseable_counts_not_zeros(evaluation, worker):
    rows = instruction_rows(8)
    await seed_dataset(evaluation, rows)
    async with evaluation.runtime.db.transaction() as session:
        await repository.insert_prompt_version(
            session,
            {
                "version_id": str(uuid.uuid4()),
                "prompt_id": str(uuid.uuid4()),
                "project": "p1",
                "name": "grader",
                "version": 1,
                "template": RUBRIC,
                "hash": "d" * 64,
            },
        )
    replies = {row["prompt"]: row["completion"] for row in rows}
    with judge_server() as judge, openai_server(replies) as (served, _):
        judge_config = {
            "type": "judge",
            "endpoint": judge,
            "model": "judge-7b",
            "rubric_prompt": {"name": "grader", "version": 1},
        }
        suite = await create_suite(
            evaluation,
            scorers=[judge_config, {"type": "custom", "entry_point": "word_overlap"}],
            gates=["judge_score >= 3"],
        )
        assert suite.spec["scorers"][0]["rubric"]["kind"] == "chat"  # the prompt version's template, stored
        run = await finished(evaluation, await request_run(evaluation, endpoint={"url": served}))
    assert run.status == "completed", run.error
    judged = run.metrics["judge_score"]
    assert judged["unparseable"] == 4 and judged["n"] == 4 and judged["errors"] == 0
    assert judged["value"] == 4.0  # the mean of the parseable answers: no zero for the others
    assert run.metrics["word_overlap"]["n"] == 8  # the custom scorer from its entry point ran too
    examples = await examples_of(evaluation, run.id)
    even = [e for e in examples if e.index % 2 == 0]
    assert all("judge_score" not in e.scores and e.unparseable for e in even)
    assert all(e.scores["judge_score"] == 4.0 for e in examples if e.index % 2 == 1)
    artifact = await evaluation.runtime.store.get_bytes(run.artifact_sha256)
    lines = [orjson.loads(line) for line in artifact.splitlines()]
    raw = json.dumps(lines[0])
    assert "I would rather not say." in raw and "judge-7b" in raw  # the judge's raw answer and model are kept
