"""Benchmark: the inference gateway's added latency and throughput, beside calling the same backend directly.

Three processes, so none shares an event loop (or a GIL) with another: a fast stub OpenAI-compatible backend
(``services/deployment/tests/gateway/stub_backend.py``, usage on its last chunk), the gateway (``build_gateway`` under
uvicorn, on a fresh database, with an API key, limits, budgets and records to Kafka on, ``record_text=redacted``), and
this process as the load generator: a minimal keep-alive HTTP/1.1 client on raw asyncio streams (one connection per
client), so the client's own cost stays small and is the same on both sides. For 1 and 32 concurrent clients,
non-streaming (whole answer) and streaming (time to first token, TTFT), it times N requests direct and N through the
gateway (alternating rounds, after a warm-up) and prints p50/p99 of each and the gateway's added p50/p99, plus
requests/s at 32 clients. Target: <= 2 ms added at p50 sequentially (LiteLLM ~4.3 ms, Portkey ~2.4 ms on one machine).
On a 2-core machine the three processes compete for the cores: at 32 clients the figures are a floor.
Usage: python tests/bench/bench_gateway.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "services" / "deployment" / "tests" / "gateway"
STUB = TESTS / "stub_backend.py"
BODY = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say hello to jane.doe@example.com"}],
    "max_tokens": 16,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the gateway process ---------------------------------------------------------------------------------------------
def serve_gateway(port: int) -> None:
    import uvicorn

    from llmops_deployment.gateway.app import build_gateway
    from llmops_deployment.settings import DeploymentSettings

    profile = os.environ.get("BENCH_GATEWAY_PROFILE")  # a path: cProfile the gateway process, stats written there
    profiler = None
    if profile:
        import cProfile
        import signal

        profiler = cProfile.Profile()

        def dump(*_: object) -> None:  # uvicorn re-raises SIGTERM after its shutdown: write the stats then
            profiler.disable()
            profiler.dump_stats(profile)
            os._exit(0)

        signal.signal(signal.SIGTERM, dump)
        profiler.enable()
    uvicorn.run(
        build_gateway(DeploymentSettings()),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        log_level="warning",
    )


# -- the load generator ----------------------------------------------------------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read the answer (Content-Length or chunked)."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.port, self.path, self.headers = port, path, headers

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, body: bytes) -> bytes:
        head = f"POST {self.path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body

    async def post(self, raw: bytes, *, stream: bool) -> tuple[float, float]:
        """(seconds to the first token or whole answer, seconds to the end)."""
        started = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError(f"status {status}: {head!r}")
        lower = head.lower()
        if b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            await self.reader.readexactly(length)
            done = time.perf_counter() - started
            return done, done
        first = None
        while True:  # chunked
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                break
            chunk = await self.reader.readexactly(size + 2)
            if (first is None and b'"content"' in chunk) or b'"text"' in chunk:
                first = first or time.perf_counter() - started
        return (first or time.perf_counter() - started), time.perf_counter() - started


async def run_load(port: int, path: str, headers: dict, clients: int, n: int, stream: bool) -> tuple[list, float]:
    body = json.dumps({**BODY, "stream": stream, **({"model": "served"} if "authorization" not in headers else {})})
    connections = [Connection(port, path, headers) for _ in range(clients)]
    for c in connections:
        await c.open()
    raw = connections[0].request(body.encode())
    for c in connections:  # warm-up
        await c.post(raw, stream=stream)
    times: list[float] = []
    remaining = n

    async def worker(c: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            times.append((await c.post(raw, stream=stream))[0])

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    for c in connections:
        c.writer.close()
    return times, n / elapsed


async def upstream_probe(port: int, n: int = 300) -> dict[str, float]:
    """p50 ms of one chat call to the stub: the pooled httpx client (the gateway's data path) vs AsyncInferenceClient
    (which refuses calls under HF_HUB_OFFLINE=1, so the probe clears it for itself)."""
    import httpx
    import orjson

    os.environ.pop("HF_HUB_OFFLINE", None)
    from huggingface_hub import AsyncInferenceClient

    base, messages = f"http://127.0.0.1:{port}/v1", BODY["messages"]
    hub, http = AsyncInferenceClient(base_url=base), httpx.AsyncClient()
    body = orjson.dumps({**BODY, "model": "served"})

    async def pooled() -> None:
        response = await http.post(
            f"{base}/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        orjson.loads(response.content)

    async def inference_client() -> None:
        await hub.chat_completion(messages, model="served", max_tokens=16)

    result = {}
    for name, call in (("httpx.AsyncClient", pooled), ("AsyncInferenceClient", inference_client)):
        for _ in range(20):
            await call()
        times = []
        for _ in range(n):
            started = time.perf_counter()
            await call()
            times.append(time.perf_counter() - started)
        result[name] = pct(times, 0.5)
    await http.aclose()
    return result


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


# -- setup -----------------------------------------------------------------------------------------------------------
async def prepare(stub_port: int) -> tuple[object, str, object]:
    import asyncpg

    from llmops.db import asyncpg_dsn
    from llmops.testing import service_database
    from llmops_deployment.access import hash_api_key, new_api_key
    from llmops_deployment.app import migrate
    from llmops_deployment.settings import DeploymentSettings

    database = service_database("deployment", DeploymentSettings)
    settings = await database.__aenter__()
    await asyncio.to_thread(migrate, settings)
    db = await asyncpg.connect(asyncpg_dsn(settings.db_url))
    deployment = str(uuid.uuid4())
    await db.execute(
        "INSERT INTO deployments (id, project, name, backend, pool, replicas, status, requested_by)"
        " VALUES ($1, 'bench', 'd', 'vllm', 'cpu', 1, 'ready', 'bench')",
        deployment,
    )
    await db.execute(
        "INSERT INTO deployment_replicas (deployment_id, replica, status, endpoint, served_model)"
        " VALUES ($1, 0, 'ready', $2, 'served')",
        deployment,
        f"http://127.0.0.1:{stub_port}/v1",
    )
    await db.execute(
        "INSERT INTO routes (id, project, name, version, targets, updated_by) VALUES"
        " ($1, 'bench', 'bench', 1, $2::jsonb, 'bench')",
        str(uuid.uuid4()),
        json.dumps([{"deployment_id": deployment, "weight": 1}]),
    )
    key = new_api_key()
    key_id = str(uuid.uuid4())
    await db.execute(
        "INSERT INTO api_keys (id, project, name, prefix, key_hash, requests_per_minute,"
        " tokens_per_minute, created_by) VALUES ($1, 'bench', 'bench', $2, $3, 10000000, 1000000000,"
        " 'bench')",
        key_id,
        key[:12],
        hash_api_key(key),
    )
    # Budgets that never run out, of the project and of the key: each request reserves on both and settles both.
    for scope, subject in (("project", "bench"), ("key", key_id)):
        await db.execute(
            "INSERT INTO budgets (id, project, scope, subject, period, max_tokens, max_cost, updated_by)"
            " VALUES ($1, 'bench', $2, $3, 'day', 1000000000000, 1000000000, 'bench')",
            str(uuid.uuid4()),
            scope,
            subject,
        )
    await db.close()
    return database, key, settings


def wait_port(port: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def main(n: int) -> None:
    stub_port, gateway_port = free_port(), free_port()
    database, key, settings = await prepare(stub_port)
    env = {**os.environ, "LLMOPS_DEPLOYMENT_DATABASE_URL": settings.db_url, "LLMOPS_DEPLOYMENT_RECORD_TEXT": "redacted"}
    stub = await asyncio.create_subprocess_exec(sys.executable, str(STUB), "--port", str(stub_port), "--name", "bench")
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-gateway", str(gateway_port), env=env
    )
    try:
        await asyncio.to_thread(wait_port, stub_port)
        await asyncio.to_thread(wait_port, gateway_port)
        direct = (stub_port, "/v1/chat/completions", {})
        through = (gateway_port, "/v1/chat/completions", {"authorization": f"Bearer {key}"})
        rows = []
        for stream in (False, True):
            for clients in (1, 32):
                d_times, g_times, d_rps, g_rps = [], [], [], []
                for _ in range(2):  # alternating rounds
                    t, r = await run_load(*direct, clients, n // 2, stream)
                    d_times += t
                    d_rps.append(r)
                    t, r = await run_load(*through, clients, n // 2, stream)
                    g_times += t
                    g_rps.append(r)
                rows.append((stream, clients, d_times, g_times, max(d_rps), max(g_rps)))
        print(
            f"\ngateway benchmark: {n} requests per case, {os.cpu_count()} CPU cores shared by the stub, the gateway"
            " and this load generator (separate processes); API key, limits, budgets, records on"
        )
        print(
            f"{'mode':<10}{'clients':>8}{'direct p50':>12}{'gw p50':>10}{'added p50':>11}{'direct p99':>12}"
            f"{'gw p99':>10}{'added p99':>11}{'direct rps':>12}{'gw rps':>10}"
        )
        for stream, clients, d, g, drps, grps in rows:
            mode = "ttft" if stream else "whole"
            print(
                f"{mode:<10}{clients:>8}{pct(d, 0.5):>10.2f}ms{pct(g, 0.5):>8.2f}ms{pct(g, 0.5) - pct(d, 0.5):>9.2f}ms"
                f"{pct(d, 0.99):>10.2f}ms{pct(g, 0.99):>8.2f}ms{pct(g, 0.99) - pct(d, 0.99):>9.2f}ms"
                f"{drps:>12.0f}{grps:>10.0f}"
            )
        probe = await upstream_probe(stub_port)
        print(
            "\nupstream probe, one chat call to the stub, p50: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in probe.items())
        )
        added = pct(rows[0][3], 0.5) - pct(rows[0][2], 0.5)
        print(
            f"\nadded latency at p50, sequential, non-streaming: {added:.2f} ms (target <= 2 ms):"
            f" {'met' if added <= 2 else 'NOT met'}"
        )
    finally:
        gateway.terminate()
        stub.terminate()
        await asyncio.wait_for(gateway.wait(), 30)
        await asyncio.wait_for(stub.wait(), 10)
        await database.__aexit__(None, None, None)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-gateway":
        serve_gateway(int(sys.argv[2]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--requests", type=int, default=2000)
        asyncio.run(main(parser.parse_args().requests))
