"""`llmops.stack` without starting the platform: which parts `up` starts, when it refuses, how readiness is read."""

from __future__ import annotations

import socket
import sys

import pytest

from llmops.infra.base import InfraError
from llmops.settings import ClientSettings
from llmops.stack import PARTS, Part, Stack, _last_start, _logged_since


def test_naming_a_worker_starts_its_service_too_and_unknown_names_are_refused(tmp_path):
    stack = Stack(home=tmp_path)
    chosen = stack._with_dependencies(stack.select(["training-worker", "gateway"]))
    assert [part.name for part in chosen] == ["training", "deployment", "gateway", "training-worker"]
    with pytest.raises(ValueError, match=r"unknown part\(s\) trainer; choose from audit, "):
        stack.select(["trainer"])
    assert [part.name for part in stack.select(None)] == [part.name for part in PARTS]


def test_a_port_held_by_another_process_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        stack = Stack(home=tmp_path, client=ClientSettings(prompts_url=f"http://127.0.0.1:{port}"))
        with pytest.raises(InfraError, match=rf"prompts: 127.0.0.1:{port} is in use .* LLMOPS_CLIENT_PROMPTS_URL"):
            stack.up(["prompts"], log=lambda _: None, timeout=5)
    assert not (tmp_path / "stack" / "run" / "prompts.pid").exists()


def test_a_part_that_exits_during_start_up_fails_with_its_log(tmp_path):
    crashing = Part("crasher", "llmops_no_such_module", ("worker",), ready_event="crasher.ready")
    stack = Stack(home=tmp_path, parts=[crashing])
    with pytest.raises(InfraError, match=r"crasher exited during start-up; see .*crasher.log\n(.|\n)*No module named"):
        stack.up(log=lambda _: None, timeout=60)
    assert [row.state for row in stack.status()] == ["stopped"]


def test_a_worker_is_ready_once_it_logs_its_event_after_its_last_start(tmp_path):
    log = tmp_path / "w.log"
    log.write_bytes(b'\n=== 1 starting\n{"event": "x.worker.ready"}\n\n=== 2 starting\n{"event": "x.worker.started"}\n')
    since = _last_start(log)
    assert log.read_bytes()[since:].startswith(b"\n=== 2")
    assert not _logged_since(log, since, "x.worker.ready"), "a ready line of an earlier start does not count"
    with log.open("ab") as out:
        out.write(b'{"event": "x.worker.ready", "partitions": 3}\n')
    assert _logged_since(log, since, "x.worker.ready")


def test_commands_run_the_service_modules_with_this_interpreter_on_the_client_ports():
    client = ClientSettings(audit_url="http://127.0.0.1:18007")
    audit = next(part for part in PARTS if part.name == "audit")
    assert audit.command(client) == [
        sys.executable,
        "-m",
        "llmops_audit.app",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "18007",
    ]
    worker = next(part for part in PARTS if part.name == "evaluation-worker")
    assert worker.command(client) == [sys.executable, "-m", "llmops_evaluation.app", "worker", "--pool", "cpu"]
    assert worker.marker == "llmops_evaluation.app worker"
