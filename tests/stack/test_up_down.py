"""`llmops up | ps | down` as a user runs them: eleven processes (seven services, the gateway, three workers) started
from the real command, each ready (a service's /readyz, a worker holding its partitions); a SIGKILLed part shows as
stopped and the next `up` starts it alone; `down` stops every part gracefully.

The platform runs here on databases, consumer groups and an audit topic of this test alone (new groups start at the
topics' ends), so it neither reads nor changes what the other tests and the demo left on the shared infrastructure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from contextlib import closing

import httpx
import pytest

from llmops import infra
from llmops.db import create_database, drop_database
from llmops.infra.base import pid_alive
from llmops.settings import ClientSettings, KafkaSettings, PostgresSettings
from llmops.stack import PARTS, Stack
from llmops.testing import LLMOPS

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


@pytest.fixture
async def platform_env(infra_up, tmp_path):
    """The environment of a platform of this test's own; the databases and the audit topic are removed after."""
    run = uuid.uuid4().hex[:10]
    pg = PostgresSettings()
    env = {"LLMOPS_HOME": str(tmp_path), "LLMOPS_MONITORING_RECORDS_WORKERS": "1"}
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
    try:
        yield env
    finally:
        Stack(home=tmp_path, client=client_of(env)).down(log=lambda _: None)
        for database in databases:
            await drop_database(database, pg)
        await infra.delete_topics(bootstrap, [audit_topic])


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


async def test_up_ps_down_runs_every_part_in_a_process_of_its_own(platform_env, tmp_path):
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


PART_INDEX = {part.name: i for i, part in enumerate(PARTS)}


def _wait_for(condition, within: float = 30) -> bool:
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
