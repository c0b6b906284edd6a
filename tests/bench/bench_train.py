"""Benchmark: LoRA fine-tuning throughput (non-padding tokens trained per second, model loading and tokenization
excluded) of the training worker (a job requested through the training service's API, taken from Kafka by a
``TrainingWorker``, trained in its child process, checkpoints uploaded to the object store, progress recorded in
Postgres) beside a plain TRL + peft
script with the same tiny Llama, data and settings (checkpoints included), and the bare ``ml.train`` for reference;
alternating rounds, median, to damp noise on a shared machine. Needs the local infrastructure (make infra-up).
Target ratio worker/plain: at least 0.95.
Usage: python tests/bench/bench_train.py [--examples N] [--rounds R] [--epochs E] [--threads T] [--checkpoint-every S]
``--threads`` defaults to 1: with torch's default (one per core) a busy shared 2-core machine oversubscribes the
cores and OpenMP's spinning makes figures swing tenfold; 0 keeps torch's default.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llmops.tiny_model import build_tiny_model
from llmops_training.ml.trainer import Progress, TrainSpec, train

SUBJECTS = ["the invoice", "a refund", "the password", "my order", "the delivery", "an upgrade", "the meeting"]
VERBS = ["cancel", "change", "find", "explain", "confirm", "move", "check"]
WHEN = ["today", "tomorrow", "next week", "before Friday", "this morning"]


def instruction_examples(n: int, seed: int = 0) -> list[dict]:
    """``n`` synthetic prompt/completion support requests of varied length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        subject, verb, when = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(WHEN)
        details = " ".join(rng.choice(SUBJECTS + VERBS + WHEN) for _ in range(rng.randint(0, 12)))
        prompt = f"Instruction: please {verb} {subject} {when}. Context: ticket {i}. {details}\nResponse:"
        completion = f" Of course. I will {verb} {subject} {when} and confirm by email. Ticket {i} is updated."
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def plain_trl_tokens_per_second(model_dir: Path, examples: Sequence[dict], spec: TrainSpec) -> dict:
    """Train with TRL's SFTTrainer and peft directly, as a plain script would, and measure tokens/s."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as out:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
        args = SFTConfig(
            output_dir=out,
            num_train_epochs=spec.epochs,
            max_steps=spec.max_steps or -1,
            learning_rate=spec.learning_rate,
            per_device_train_batch_size=spec.batch_size,
            gradient_accumulation_steps=spec.gradient_accumulation,
            max_length=spec.max_seq_length,
            seed=spec.seed,
            bf16=spec.bf16,
            activation_checkpointing=spec.gradient_checkpointing,
            logging_steps=1,
            save_strategy="steps" if spec.checkpoint_every else "no",
            save_steps=max(spec.checkpoint_every, 1),
            include_num_input_tokens_seen="non_padding",
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
        )
        peft_config = LoraConfig(
            r=spec.lora_rank,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(list(examples)),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        tokens = trainer.state.num_input_tokens_seen
        trainer.save_model(out)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


class CountingHooks:
    """Hooks as a worker would pass them: remember progress, never stop."""

    def __init__(self) -> None:
        self.steps = 0
        self.last: Progress | None = None

    def on_progress(self, progress: Progress) -> None:
        self.steps += 1
        self.last = progress

    def should_stop(self) -> bool:
        return False

    def should_pause(self) -> bool:
        return False

    def on_checkpoint(self, step: int, directory: Path) -> None:
        pass


def ours_tokens_per_second(model_dir: Path, examples: Sequence[dict], spec: TrainSpec) -> dict:
    """Train through the training service's ``ml.train`` with hooks and report its tokens/s."""
    with tempfile.TemporaryDirectory() as out:
        result = train(model_dir, examples, spec, Path(out), hooks=CountingHooks())
    metrics = result.metrics
    return {
        "tokens": metrics["tokens_this_run"],
        "seconds": metrics["runtime_seconds"],
        "tokens_per_second": metrics["tokens_per_second"],
    }


class WorkerBench:
    """The training service and one worker in this process, on a fresh database, with the tiny model registered
    and the examples stored as a dataset version whose train split holds every row (in order)."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    async def __aenter__(self) -> WorkerBench:
        import contextlib

        from llmops.testing import service_database
        from llmops_training.app import TrainingService, migrate
        from llmops_training.settings import TrainingSettings
        from llmops_training.worker import TrainingWorker

        self._stack = contextlib.AsyncExitStack()
        self._tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        settings = await self._stack.enter_async_context(
            service_database(
                "training",
                TrainingSettings,
                outbox_poll_interval=0.05,
                work_dir=self._tmp / "work",
                cache_dir=self._tmp / "cache",
                consumer_offset_reset="latest",
                worker_offset_reset="latest",
                pool="bench",
                pools={"bench": {"cuda": False}},
                train_threads=self.threads,
            )
        )
        await asyncio.to_thread(migrate, settings)
        self.service = TrainingService(settings)
        await self.service.start()
        self.worker = TrainingWorker(settings, name="bench-worker")
        self._task = asyncio.create_task(self.worker.run())
        await asyncio.wait_for(self.worker.ready.wait(), 120)
        return self

    async def __aexit__(self, *exc) -> None:
        self.worker.stop()
        await asyncio.wait_for(self._task, 120)
        await self.service.stop()
        await self._stack.aclose()

    async def setup(self, model_dir: Path, examples: Sequence[dict]) -> None:
        import io
        import tarfile
        import uuid

        import httpx
        import orjson

        from llmops.auth import Role, issue_token
        from llmops_training import repository

        self.headers = {"authorization": f"Bearer {issue_token('bench', [Role.ML_ENGINEER], ['bench'])}"}
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.service.app), base_url="http://bench", timeout=600
        )
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(model_dir, arcname="tiny")
        response = await self.http.post(
            "/projects/bench/base-models/tiny/upload",
            content=archive.getvalue(),
            headers=self.headers | {"content-type": "application/x-tar"},
        )
        response.raise_for_status()
        body = b"".join(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n" for e in examples)
        stored = await self.service.runtime.store.put_bytes(body)
        async with self.service.runtime.db.transaction() as session:
            await repository.upsert_dataset_version(
                session,
                {
                    "version_id": str(uuid.uuid4()),
                    "dataset_id": str(uuid.uuid4()),
                    "project": "bench",
                    "name": "bench",
                    "version": 1,
                    "format": "instruction",
                    "uri": stored.uri,
                    "sha256": stored.sha256,
                    "row_count": len(examples),
                    "splits": {"train": 1.0, "validation": 0.0, "test": 0.0, "seed": 0},
                },
            )

    async def run_job(self, spec: TrainSpec) -> dict:
        hyperparameters = {
            "epochs": spec.epochs,
            "learning_rate": spec.learning_rate,
            "batch_size": spec.batch_size,
            "gradient_accumulation": spec.gradient_accumulation,
            "lora_rank": spec.lora_rank,
            "lora_alpha": spec.lora_alpha,
            "max_seq_length": spec.max_seq_length,
            "seed": spec.seed,
            "checkpoint_every": spec.checkpoint_every,
        }
        body = {"base_model": "tiny", "dataset": {"name": "bench", "version": 1}, "method": "lora", "pool": "bench"}
        response = await self.http.post(
            "/projects/bench/training/jobs", json=body | {"hyperparameters": hyperparameters}, headers=self.headers
        )
        response.raise_for_status()
        job_id = response.json()["id"]
        started = time.perf_counter()
        while True:
            job = (await self.http.get(f"/projects/bench/training/jobs/{job_id}", headers=self.headers)).json()
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.2)
        if job["status"] != "completed":
            raise RuntimeError(f"the bench job ended {job['status']}: {job['error']}")
        metrics = job["metrics"]
        return {
            "tokens": metrics["tokens_this_run"],
            "seconds": metrics["runtime_seconds"],
            "tokens_per_second": metrics["tokens_per_second"],
            "job_seconds": time.perf_counter() - started,
        }


def main(
    n_examples: int = 300, rounds: int = 6, epochs: float = 1.0, threads: int = 1, checkpoint_every: int = 20
) -> None:
    asyncio.run(run(n_examples, rounds, epochs, threads, checkpoint_every))


async def run(n_examples: int, rounds: int, epochs: float, threads: int, checkpoint_every: int = 20) -> None:
    """Build the tiny model, then alternate plain TRL, ``ml.train`` and the worker; print the medians."""
    import torch

    from llmops.logging import configure_logging

    configure_logging("WARNING")

    from llmops.ml_runtime import quiet_libraries

    if threads > 0:
        torch.set_num_threads(threads)
    quiet_libraries()
    examples = instruction_examples(n_examples)
    # Checkpoints at the same steps on both sides: the worker's include the upload to the object store.
    spec = TrainSpec(method="lora", epochs=epochs, batch_size=8, max_seq_length=128, checkpoint_every=checkpoint_every)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny", corpus=[e["prompt"] + e["completion"] for e in examples])
        plain_trl_tokens_per_second(model_dir, examples[:16], TrainSpec(max_steps=2))  # warm imports and caches
        plain, ours, worker = [], [], []
        async with WorkerBench(threads) as bench:
            await bench.setup(model_dir, examples)
            runs = [
                (plain, lambda: asyncio.to_thread(plain_trl_tokens_per_second, model_dir, examples, spec)),
                (ours, lambda: asyncio.to_thread(ours_tokens_per_second, model_dir, examples, spec)),
                (worker, lambda: bench.run_job(spec)),
            ]
            for round_ in range(rounds):
                # Each round starts with another side, so no side always runs first (or last) on a warm machine.
                for results, measure in runs[round_ % 3 :] + runs[: round_ % 3]:
                    results.append(await measure())
    assert plain[0]["tokens"] == ours[0]["tokens"] == worker[0]["tokens"], "all must train on the same tokens"
    rates = {
        "plain TRL SFTTrainer + peft:    ": [r["tokens_per_second"] for r in plain],
        "platform ml.train (with hooks): ": [r["tokens_per_second"] for r in ours],
        "training worker (job via Kafka):": [r["tokens_per_second"] for r in worker],
    }
    print(
        f"examples: {n_examples} prompt/completion pairs, LoRA r={spec.lora_rank} on a tiny Llama, "
        f"{plain[0]['tokens']} tokens per run, checkpoint every {spec.checkpoint_every} steps, "
        f"median of {rounds} rounds in rotating order, torch threads: {torch.get_num_threads()}"
    )
    for label, values in rates.items():
        print(f"{label}  {statistics.median(values):9.0f} tokens/s  (range {min(values):.0f}-{max(values):.0f})")
    job_seconds = statistics.median(r["job_seconds"] for r in worker)
    print(f"worker job end to end (request -> registered model version): median {job_seconds:.1f} s")
    medians = [statistics.median(values) for values in rates.values()]
    print(f"ratio ml.train/plain: {medians[1] / medians[0]:.2f}")
    print(f"ratio worker/plain: {medians[2] / medians[0]:.2f}  (target >= 0.95)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=20, help="steps between checkpoints (both sides)")
    parsed = parser.parse_args()
    main(parsed.examples, parsed.rounds, parsed.epochs, parsed.threads, parsed.checkpoint_every)
