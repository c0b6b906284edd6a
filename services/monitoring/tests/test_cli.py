"""``llmops monitor ...`` against the real monitoring service over HTTP: metrics and anomalies as tables, a drift
report run, listed, shown and its HTML saved, rules and policies created and listed, alerts; the installed command
once, as users run it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import typer
from typer.testing import CliRunner

from llmops import testing
from llmops.auth import Role, issue_token
from llmops.testing import serve
from llmops_monitoring.cli import monitor_app
from llmops_monitoring.cli.common import moment

from . import events, traffic
from .conftest import publish
from .ingest_support import wait_rows
from .test_drift_service import deployed

COMMANDS = typer.Typer()
COMMANDS.add_typer(monitor_app, name="monitor")


async def monitor(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    invoke = partial(CliRunner().invoke, COMMANDS, ["monitor", *args], env={"COLUMNS": "250", **env})
    result = await asyncio.to_thread(invoke)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
async def server(monitoring):
    async with serve(monitoring.app) as url:
        yield url


def env_for(server: str, role: Role = Role.ML_ENGINEER) -> dict[str, str]:
    return {"LLMOPS_CLIENT_MONITORING_URL": server, "LLMOPS_CLIENT_TOKEN": issue_token("cli-user", [role], ["p1"])}


def test_relative_times():
    assert moment("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
    back = datetime.fromisoformat(moment("15m"))
    assert abs((datetime.now(UTC) - back) - timedelta(minutes=15)) < timedelta(seconds=5)


@pytest.mark.integration
async def test_metrics_anomalies_and_drift_from_the_command_line(monitoring, server, records_topic, tmp_path):
    await deployed(monitoring)
    now = datetime.now(UTC).replace(microsecond=0)
    stable = traffic.records(300, seed=3, start=now - timedelta(hours=2), minutes=59)
    shifted = traffic.records(300, seed=4, start=now - timedelta(hours=1), minutes=59, shift=traffic.ALL_SHIFTS)
    await publish(records_topic, [events.from_record(r, deployment_id="dep-1").to_bytes() for r in stable + shifted])
    await wait_rows(monitoring, 600)
    env, viewer = env_for(server), env_for(server, Role.VIEWER)

    code, stdout, stderr = await testing.llmops("monitor", "metrics", "-p", "p1", "--since", "3h", env=viewer)
    assert code == 0, stderr
    assert "inference metrics" in stdout and "600" in stdout
    code, stdout, _ = await monitor(
        "metrics", "-p", "p1", "--since", "3h", "--by", "deployment_id", "--json", env=viewer
    )
    [group] = [json.loads(line) for line in stdout.splitlines()]
    assert group["deployment_id"] == "dep-1" and group["requests"] == 600
    code, stdout, stderr = await monitor("anomalies", "-p", "p1", "--since", "3h", env=viewer)
    assert code == 0, stderr
    assert "dep-1" in stdout

    code, stdout, stderr = await monitor("drift", "run", "-p", "p1", "-d", "dep-1", "--since", "1h", "--json", env=env)
    assert code == 0, stderr
    report = json.loads(stdout.splitlines()[-1])  # the service, in this process, logs to the same stdout
    assert report["drifted"] and report["status"] == "done"
    code, stdout, _ = await monitor("drift", "list", "-p", "p1", env=viewer)
    assert report["id"] in stdout and "drifted" in stdout
    code, stdout, _ = await monitor("drift", "show", "-p", "p1", report["id"], env=viewer)
    assert "latency_ms" in stdout and "wasserstein" in stdout
    target = tmp_path / "report.html"
    code, _, stderr = await monitor(
        "drift", "open", "-p", "p1", report["id"], "--save", str(target), "--no-browser", env=viewer
    )
    assert code == 0, stderr
    assert target.read_bytes().lstrip().startswith(b"<!DOCTYPE html>") and b"latency_ms" in target.read_bytes()
    code, _, stderr = await monitor("drift", "run", "-p", "p1", "-d", "dep-1", env=viewer)
    assert code == 1 and "403" in stderr


@pytest.mark.integration
async def test_rules_policies_and_alerts_from_the_command_line(monitoring, server):
    await deployed(monitoring)
    env, viewer = env_for(server), env_for(server, Role.VIEWER)
    rule = ("rules", "create", "-p", "p1", "--name", "slow", "--metric", "latency_p95", "--when", ">")
    code, stdout, stderr = await monitor(*rule, "--threshold", "2000", "--where", "deployment_id=dep-1", env=env)
    assert code == 0, stderr
    assert "latency_p95 > 2000" in stdout and "deployment_id=dep-1" in stdout
    code, stdout, stderr = await monitor(*rule[:-4], "--metric", "colour", "--when", ">", "--threshold", "1", env=env)
    assert code == 1 and "metric" in stderr
    code, stdout, _ = await monitor("rules", "list", "-p", "p1", env=viewer)
    assert "slow" in stdout and "ok" in stdout
    policy = ("policies", "create", "-p", "p1", "--name", "watch", "--on", "drift", "--do", "notify", "-d", "dep-1")
    code, stdout, stderr = await monitor(*policy, env=env)
    assert code == 0, stderr
    code, stdout, _ = await monitor("policies", "list", "-p", "p1", "--json", env=viewer)
    assert json.loads(stdout.splitlines()[0])["deployment_id"] == "dep-1"
    code, _, stderr = await monitor("alerts", "-p", "p1", env=viewer)
    assert code == 0 and "nothing firing" in stderr
