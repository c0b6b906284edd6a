"""A backend's child process: started in a process group of its own that dies with the worker, its output read line
by line, stopped with SIGTERM then SIGKILL, and watched for established connections while it drains."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable

import psutil

#: Each output line is cut to this length.
MAX_LINE = 2000


async def spawn(command: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start ``command`` with ``env`` over the worker's environment, its output (stdout and stderr) piped."""
    return await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole, not by the worker's terminal
        preexec_fn=_die_with_parent,
    )


async def pump_lines(process: asyncio.subprocess.Process, on_line: Callable[[str], None]) -> None:
    """Hand each non-empty output line of ``process`` to ``on_line`` until the output ends."""
    assert process.stdout is not None
    while line := await process.stdout.readline():
        text = line.decode("utf-8", "replace").rstrip()[:MAX_LINE]
        if text:
            on_line(text)


async def terminate(process: asyncio.subprocess.Process, *, kill: bool, grace: float) -> None:
    """SIGTERM to the process group (SIGKILL when ``kill``), SIGKILL after ``grace`` seconds, then to whatever the
    group left behind."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
    _signal_group(process.pid, signal.SIGKILL)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def has_connections(port: int) -> bool:
    """Whether any established TCP connection is on local ``port`` (a request in flight to the backend)."""
    return any(
        c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
        for c in psutil.net_connections(kind="tcp")
    )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _die_with_parent() -> None:
    """In the backend's child process: die with the worker (a SIGKILLed worker must not leave its backends behind)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
