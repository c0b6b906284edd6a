"""Benchmark: dataset ingest through the datasets service beside a plain upload of the same file to the object store.

1. A 200 MB JSONL of chat rows (new rows each time) is generated before each of these, alternating, three times:
   plain:  ObjectStore.put_file (sha256 pass + multipart upload), the floor any ingest pays;
   ingest: the datasets service, running as its own process (default settings: two ingest workers), receives the
           file over HTTP (streamed) and validates, cleans (normalisation, empty rows, exact de-duplication, PII
           redaction of every kind in every supported locale: ``redact_pii=all``), hashes, splits and stores it as a
           version.
   Each round prints both in MB/s with their ratio; the median ratio is the result (target >= 0.5).
2. A 1 GB JSONL is uploaded the same way while the resident memory of the service and its ingest worker processes,
   together, is sampled from /proc; target: under 300 MB (the service process's own peak, VmHWM, is printed beside).
Usage: python tests/bench/bench_datasets.py [--mb 200] [--big-mb 1024] [--redact-pii all]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

from llmops.auth import Role, issue_token
from llmops.db import create_database, drop_database
from llmops.logging import configure_logging
from llmops.settings import PostgresSettings
from llmops.storage import ObjectStore
from llmops_datasets.app import migrate
from llmops_datasets.settings import DatasetsSettings

TURNS = [
    "Could you explain how gradient clipping keeps training of a transformer stable when the loss spikes?",
    "Gradient clipping rescales the gradient when its norm exceeds a threshold, so one bad batch cannot push the "
    "weights far; combined with a warm-up of the learning rate it keeps the early steps of training well behaved.",
    "And what threshold would you start with for a model of a few hundred million parameters trained in bf16?",
    "A global norm of 1.0 is the common starting point; watch the fraction of clipped steps and lower it if the "
    "loss still spikes, or raise it if nearly every step is clipped, since then clipping slows learning down.",
]


def write_chat_jsonl(path: Path, megabytes: int, run: str) -> int:
    """Distinct chat rows of about 1 KB until the file reaches ``megabytes``; returns its size."""
    target, size, i = megabytes * 1024 * 1024, 0, 0
    with path.open("wb") as out:
        while size < target:
            messages = [
                {"role": "user" if n % 2 == 0 else "assistant", "content": f"{t} ({run}-{i}-{n})"}
                for n, t in enumerate(TURNS)
            ]
            line = orjson.dumps({"messages": messages}) + b"\n"
            out.write(line)
            size += len(line)
            i += 1
    return size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the ingest workers, whichever thread started them), now."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        tasks = Path(f"/proc/{pid}/task").iterdir()
        children = {int(child) for task in tasks for child in (task / "children").read_text().split()}
    except OSError:  # it ended meanwhile
        return total
    return total + sum(rss_mb(child) for child in children)


async def peak_rss_with_workers(pid: int, done: asyncio.Event) -> float:
    peak = 0.0
    while not done.is_set():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.05)
    return peak


async def upload(url: str, token: str, name: str, path: Path, redact_pii: str) -> tuple[float, dict]:
    size = await asyncio.to_thread(lambda: path.stat().st_size)

    async def chunks():
        with path.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk

    async with httpx.AsyncClient(base_url=url, timeout=3600) as http:
        headers = {"authorization": f"Bearer {token}"}
        created = await http.post("/projects/bench/datasets", json={"name": name, "format": "chat"}, headers=headers)
        if created.is_error:
            raise RuntimeError(f"the dataset could not be created: {created.status_code} {created.text}")
        started = time.perf_counter()
        response = await http.post(
            f"/projects/bench/datasets/{name}/versions",
            params={"redact_pii": redact_pii},
            content=chunks(),
            headers=headers | {"content-type": "application/jsonl", "content-length": str(size)},
        )
        elapsed = time.perf_counter() - started
    if response.is_error:
        raise RuntimeError(f"the upload failed: {response.status_code} {response.text}")
    return elapsed, response.json()


async def main(mb: int, big_mb: int, rounds: int, redact_pii: str) -> None:
    configure_logging("WARNING")
    run = uuid.uuid4().hex[:6]
    pg, name = PostgresSettings(), f"llmops_datasets_bench_{run}"
    await create_database(name, owner="llmops_datasets", connect=("llmops_datasets_app",))
    settings = DatasetsSettings(
        database_url=pg.url(name, user="llmops_datasets_app"),
        migrations_database_url=pg.url(name, user="llmops_datasets"),
    )
    await asyncio.to_thread(migrate, settings)
    port = free_port()
    env = os.environ | {"LLMOPS_DATASETS_DATABASE_URL": settings.database_url, "LLMOPS_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is timed)
        [sys.executable, "-m", "llmops_datasets.app", "serve", "--no-migrations", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url, token = f"http://127.0.0.1:{port}", issue_token("bench", [Role.DATA_STEWARD], ["bench"])
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
        with tempfile.TemporaryDirectory(prefix="llmops-bench-") as tmp:
            source, store, ratios = Path(tmp) / "chat.jsonl", ObjectStore(), []
            for round_ in range(1, rounds + 1):  # alternating, each file new: the host's noise hits both alike
                size = await asyncio.to_thread(write_chat_jsonl, source, mb, f"{run}-plain-{round_}")
                started = time.perf_counter()
                await store.put_file(source)
                plain = time.perf_counter() - started
                size = await asyncio.to_thread(write_chat_jsonl, source, mb, f"{run}-ingest-{round_}")
                ingest, version = await upload(url, token, f"medium{round_}", source, redact_pii)
                ratios.append(plain / ingest)
                print(
                    f"round {round_}: {size / 2**20:.0f} MB of chat JSONL, {version['row_count']} rows; plain upload "
                    f"{size / 2**20 / plain:6.1f} MB/s, ingest (validate, clean, redact_pii={redact_pii or 'none'}, "
                    "hash, split, store) "
                    f"{size / 2**20 / ingest:6.1f} MB/s, ratio {plain / ingest:.2f}"
                )
            print(f"ratio ingest/plain: {statistics.median(ratios):.2f} (median of {rounds}; target >= 0.5)")
            source.unlink()
            if big_mb:
                big = await asyncio.to_thread(write_chat_jsonl, source, big_mb, run + "-big")
                done = asyncio.Event()
                sampler = asyncio.create_task(peak_rss_with_workers(server.pid, done))
                elapsed, version = await upload(url, token, "big", source, redact_pii)
                done.set()
                print(
                    f"{big / 2**20:.0f} MB upload: {version['row_count']} rows in {elapsed:.1f} s; the service with "
                    f"its ingest workers peaked at {await sampler:.0f} MB resident (target < 300 MB; sampled every "
                    f"50 ms), the service process alone at {peak_rss_mb(server.pid):.0f} MB"
                )
    finally:
        server.terminate()
        server.wait(30)
        await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the memory test upload; 0 skips it")
    parser.add_argument("--rounds", type=int, default=3, help="plain and ingest measured this many times, alternating")
    parser.add_argument("--redact-pii", default="all", help="PII kinds the ingest redacts ('' for none)")
    args = parser.parse_args()
    asyncio.run(main(args.mb, args.big_mb, args.rounds, args.redact_pii))
