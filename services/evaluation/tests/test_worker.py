"""The evaluation worker on real Kafka, Postgres and object store: runs on a base model, on an adapter model version
and on an OpenAI-compatible endpoint complete with one score per example, intervals and the outputs' artifact; an
endpoint failing some examples counts them as errors; a dataset without a usable row fails the run with the reason;
a run that meets an outage of the object store is queued again and completes once the store is back; a malformed
request goes to the dead-letter topic and the worker carries on."""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from llmops.bus.dead_letters import DeadLetterReader, Selection
from llmops.settings import KafkaSettings
from llmops.testing import worker_behind_a_link
from llmops_evaluation.worker import EvaluationWorker
from llmops_schemas import topics

from .openai_server import openai_server
from .worker_support import (
    create_suite,
    examples_of,
    finished,
    instruction_rows,
    outbox_events,
    request_run,
    run_of,
    seed_base_model,
    seed_dataset,
    seed_model_version,
    wait_for_run,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def worker(evaluation_settings):
    running = EvaluationWorker(evaluation_settings, name="test-worker")
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.ready.wait(), 60)
    yield running
    running.stop()
    await asyncio.wait_for(task, 60)


@pytest.fixture
async def suite(evaluation):
    rows = instruction_rows(12)
    await seed_dataset(evaluation, rows)
    await create_suite(evaluation)
    return rows


async def artifact_lines(evaluation, run) -> list[dict]:
    body = await evaluation.runtime.store.get_bytes(run.artifact_sha256)
    assert hashlib.sha256(body).hexdigest() == run.artifact_sha256
    return [orjson.loads(line) for line in body.splitlines()]


class TestALocalModelRun:
    async def test_on_a_base_model_completes_with_a_score_per_example_intervals_and_the_artifact(
        self, evaluation, suite, worker, tiny_model
    ):
        await seed_base_model(evaluation, tiny_model)
        run_id = await request_run(evaluation, base_model="tiny")
        run = await finished(evaluation, run_id)
        assert run.status == "completed", run.error
        assert run.attempt == 1 and run.worker == "test-worker" and run.lease_until is None
        assert run.examples_total == run.examples_done == len(suite)
        assert len(await examples_of(evaluation, run_id)) == len(suite)
        for metric in ("bleu", "rouge_l", "exact_match"):
            summary = run.metrics[metric]
            assert summary["n"] == len(suite) and summary["low"] <= summary["mean"] <= summary["high"], summary
        assert "bleu" in run.signatures

        lines = await artifact_lines(evaluation, run)
        assert [line["index"] for line in lines] == list(range(len(suite)))
        assert {line["reference"] for line in lines} == {row["completion"] for row in suite}
        assert all(isinstance(line["output"], str) and line["latency_ms"] > 0 for line in lines)
        assert all(set(line["scores"]) >= {"bleu", "exact_match"} for line in lines)

        events = await outbox_events(evaluation, run_id)
        types = [e["type"] for e in events]
        assert types[:2] == ["evaluation.run.requested", "evaluation.run.started"]
        assert types[-2:] == ["evaluation.run.completed", "evaluation.gate.decided"]
        assert types.count("evaluation.run.completed") == 1
        assert events[1]["data"]["attempt"] == 1 and events[1]["data"]["examples"] == len(suite)
        completed = events[-2]["data"]
        assert completed["artifact_sha256"] == run.artifact_sha256 and completed["examples"] == len(suite)
        assert completed["metrics"]["bleu"]["high"] is not None

    async def test_on_an_adapter_model_version_completes(self, evaluation, suite, worker, tiny_model, tiny_adapter):
        base = await seed_base_model(evaluation, tiny_model)
        await seed_model_version(evaluation, base, tiny_adapter)
        run_id = await request_run(evaluation, model={"name": "tiny-lora", "version": 1})
        run = await finished(evaluation, run_id)
        assert run.status == "completed", run.error
        assert run.model_name == "tiny-lora" and len(await examples_of(evaluation, run_id)) == len(suite)

    async def test_a_dataset_without_a_usable_row_fails_the_run_with_the_reason(self, evaluation, worker, tiny_model):
        await seed_dataset(evaluation, [{"prompt": "no completion"}] * 3, name="broken")
        await create_suite(evaluation, name="broken-suite", dataset="broken")
        await seed_base_model(evaluation, tiny_model)
        run_id = await request_run(evaluation, suite="broken-suite", base_model="tiny")
        run = await finished(evaluation, run_id)
        assert run.status == "failed" and "no usable row" in run.error and "completion" in run.error
        failed = [e for e in await outbox_events(evaluation, run_id) if e["type"] == "evaluation.run.failed"]
        assert [e["data"]["reason"] for e in failed] == [run.error]


class TestAStoppingWorker:
    async def test_hands_its_run_back_and_the_next_worker_completes_it(
        self, evaluation_settings, evaluation, tiny_model
    ):
        await seed_dataset(evaluation, instruction_rows(160))
        await create_suite(evaluation, generation={"max_new_tokens": 24})
        await seed_base_model(evaluation, tiny_model)
        first = EvaluationWorker(evaluation_settings, name="first")
        task = asyncio.create_task(first.run())
        await asyncio.wait_for(first.ready.wait(), 60)
        run_id = await request_run(evaluation, base_model="tiny")
        try:
            await wait_for_run(evaluation, run_id, lambda run: run.status == "running" and run.examples_done >= 8)
        finally:
            first.stop()
            await asyncio.wait_for(task, 60)
        back = await run_of(evaluation, run_id)
        assert back.status == "queued" and back.worker is None and back.attempt == 0, back
        second = EvaluationWorker(evaluation_settings, name="second")
        task = asyncio.create_task(second.run())
        try:
            done = await finished(evaluation, run_id)
        finally:
            second.stop()
            await asyncio.wait_for(task, 60)
        assert done.status == "completed" and done.worker == "second" and done.attempt == 1
        assert len(await examples_of(evaluation, run_id)) == 160
        types = [e["type"] for e in await outbox_events(evaluation, run_id)]
        assert types.count("evaluation.run.completed") == 1 and types.count("evaluation.run.started") == 2


class TestAnOutageOfTheObjectStore:
    async def test_a_run_that_meets_it_is_queued_again_not_failed_and_completes_once_the_store_is_back(
        self, evaluation_settings, evaluation, suite, tiny_model
    ):
        await seed_base_model(evaluation, tiny_model)
        with capture_logs() as logs:
            run_id = await self.outage_met_and_waited_out(evaluation, evaluation_settings)
        run = await finished(evaluation, run_id)
        assert run.status == "completed", run.error
        assert run.attempt == 1, run  # the starts that met the outage were handed back, not counted
        assert len(await examples_of(evaluation, run_id)) == len(suite)
        told = [line["event"] for line in logs]
        # said once by the run's runner, with its cause; the worker only says it waits (no traceback of an outage)
        assert "evaluation.run.interrupted" in told and "evaluation.worker.run_waits_out_outage" in told, set(told)
        assert "evaluation.worker.run_interrupted" not in told

    async def outage_met_and_waited_out(self, evaluation, evaluation_settings) -> str:
        async with worker_behind_a_link(EvaluationWorker, evaluation_settings, name="test-worker-outage") as link:
            await link.cut()  # from now on the worker's way to the store: connection refused
            run_id = await request_run(evaluation, base_model="tiny")
            # taken (it has a start time), met the outage, handed back: queued again, not failed
            handed_back = await wait_for_run(
                evaluation, run_id, lambda run: run.started_at is not None and run.status in ("queued", "failed")
            )
            assert handed_back.status == "queued" and handed_back.worker is None, handed_back
            await link.restore()
            await finished(evaluation, run_id)
        return run_id


class TestAnEndpointRun:
    async def test_an_endpoint_answering_the_references_scores_exact_match_one(self, evaluation, suite, worker):
        replies = {row["prompt"]: row["completion"] for row in suite}
        with openai_server(replies) as (url, received):
            run_id = await request_run(evaluation, endpoint={"url": url, "model": "served"})
            run = await finished(evaluation, run_id)
        assert run.status == "completed", run.error
        assert run.metrics["exact_match"]["value"] == 1.0 and run.metrics["exact_match"]["n"] == len(suite)
        assert len(received) == len(suite)
        assert {r["authorization"] for r in received} == {"Bearer no-key"}  # never the machine's own token
        assert {r["body"]["model"] for r in received} == {"served"}

    async def test_examples_the_endpoint_fails_are_errors_and_the_rest_are_scored(self, evaluation, suite, worker):
        replies = {row["prompt"]: row["completion"] for row in suite}
        failing = {suite[0]["prompt"], suite[5]["prompt"]}
        with openai_server(replies, failing) as (url, _):
            run_id = await request_run(evaluation, endpoint={"url": url})
            run = await finished(evaluation, run_id)
        assert run.status == "completed", run.error
        exact = run.metrics["exact_match"]
        assert exact["n"] == len(suite) - 2 and exact["errors"] == 2 and exact["value"] == 1.0
        rows = await examples_of(evaluation, run_id)
        assert len(rows) == len(suite)
        assert sorted(row.index for row in rows if row.errors and "generation" in row.errors) == [0, 5]
        lines = await artifact_lines(evaluation, run)
        assert lines[0]["output"] is None and "500" in lines[0]["errors"]["generation"]


class TestAMalformedRequest:
    async def test_goes_to_the_dead_letter_topic_and_the_next_run_is_taken(self, evaluation, suite, worker):
        marker = f"not-an-event-{time.monotonic_ns()}".encode()
        producer = AIOKafkaProducer(bootstrap_servers=KafkaSettings().bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(topics.EVALUATIONS, marker, key=b"bad")
        finally:
            await producer.stop()
        replies = {row["prompt"]: row["completion"] for row in suite}
        with openai_server(replies) as (url, _):
            run = await finished(evaluation, await request_run(evaluation, endpoint={"url": url}))
        assert run.status == "completed"
        deadline = time.monotonic() + 60
        while True:
            async with DeadLetterReader(client_id="tests-evaluation-dlq") as reader:
                ours = [
                    letter.reason
                    async for letter in reader.scan(Selection(consumer=worker.group_id))
                    if letter.value == marker
                ]
            if ours:
                break
            assert time.monotonic() < deadline, "the malformed request was not dead-lettered"
            await asyncio.sleep(0.5)
        assert ours == ["not_json"]
