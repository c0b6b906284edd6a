"""An evaluation worker SIGKILLed mid-run, as an out-of-memory kill would: its generation process dies with it, the
next worker takes the run over once the lease has expired and completes it once, with one set of scores and one
``evaluation.run.completed``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from llmops_evaluation.worker import EvaluationWorker

from ..worker_support import (
    create_suite,
    examples_of,
    finished,
    instruction_rows,
    outbox_events,
    request_run,
    run_of,
    seed_base_model,
    seed_dataset,
    wait_for_run,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

#: Enough examples for several seconds of generation on the tiny model.
EXAMPLES = 240


def worker_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "LLMOPS_EVALUATION_DATABASE_URL": settings.db_url,
        "LLMOPS_EVALUATION_WORKER_GROUP": settings.worker_group,
        "LLMOPS_EVALUATION_WORKER_OFFSET_RESET": settings.worker_offset_reset,
        "LLMOPS_EVALUATION_LEASE_SECONDS": str(settings.lease_seconds),
        "LLMOPS_EVALUATION_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "LLMOPS_EVALUATION_PROGRESS_INTERVAL_SECONDS": "0.2",
        "LLMOPS_EVALUATION_GENERATION_BATCH_SIZE": str(settings.generation_batch_size),
        "LLMOPS_EVALUATION_BOOTSTRAP_RESAMPLES": str(settings.bootstrap_resamples),
        "LLMOPS_EVALUATION_WORK_DIR": str(settings.work_dir),
        "LLMOPS_EVALUATION_CACHE_DIR": str(settings.cache_dir),
        "LLMOPS_EVALUATION_OUTBOX_POLL_INTERVAL": "0.05",
    }


async def logged(process, text: str) -> None:
    """Read the process's stderr until a line holds ``text``; keep draining it afterwards (a full pipe blocks)."""
    while True:
        line = await process.stderr.readline()
        assert line, f"the process ended before logging {text!r}"
        if text.encode() in line:
            break

    async def drain() -> None:
        while await process.stderr.readline():
            pass

    process.drainer = asyncio.get_running_loop().create_task(drain())


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            found += [child, *descendants(child)]
    return found


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


class TestAWorkerKilledMidRun:
    async def test_the_next_worker_completes_the_run_once_with_one_set_of_scores(
        self, evaluation_settings, evaluation, tiny_model
    ):
        await seed_dataset(evaluation, instruction_rows(EXAMPLES))
        await create_suite(evaluation, generation={"max_new_tokens": 24})
        await seed_base_model(evaluation, tiny_model)
        command = [str(Path(sys.executable).parent / "llmops-evaluation"), "worker", "--name", "doomed"]
        doomed = await asyncio.create_subprocess_exec(
            *command, env=worker_env(evaluation_settings), stderr=asyncio.subprocess.PIPE
        )
        try:
            await asyncio.wait_for(logged(doomed, "evaluation.worker.ready"), 120)
            run_id = await request_run(evaluation, base_model="tiny")
            await wait_for_run(
                evaluation, run_id, lambda run: run.status == "running" and run.examples_done >= 16, within=120
            )
            helpers = descendants(doomed.pid)  # its forkserver and the generation process
        finally:
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
        killed_at = await run_of(evaluation, run_id)
        assert killed_at.status == "running" and killed_at.examples_done < EXAMPLES, "the run ended before the kill"
        assert len(helpers) >= 2, helpers
        for _ in range(100):  # the generation process dies with its worker, not at the run's end
            if not alive(helpers):
                break
            await asyncio.sleep(0.1)
        assert not alive(helpers), "the generation process outlived its worker"

        survivor = EvaluationWorker(evaluation_settings, name="survivor")
        task = asyncio.create_task(survivor.run())
        try:
            done = await finished(evaluation, run_id, within=300)
        finally:
            survivor.stop()
            await asyncio.wait_for(task, 60)
        assert done.status == "completed", done.error
        assert done.worker == "survivor" and done.attempt == 2
        assert len(await examples_of(evaluation, run_id)) == EXAMPLES
        events = await outbox_events(evaluation, run_id)
        assert [e["data"]["attempt"] for e in events if e["type"] == "evaluation.run.started"] == [1, 2]
        completed = [e for e in events if e["type"] == "evaluation.run.completed"]
        assert len(completed) == 1 and completed[0]["data"]["examples"] == EXAMPLES
        assert completed[0]["data"]["artifact_sha256"] == done.artifact_sha256
