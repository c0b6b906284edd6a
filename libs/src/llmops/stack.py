"""``llmops up | down | ps``: the whole platform on one machine, every part in a process of its own, as deployed.

Seven services (each applies its migrations, then serves its API), the inference gateway, and one worker of the
``cpu`` pool for training, evaluation and serving. Each runs detached (its own session, so it outlives the command
that started it), tracked by a pid file under ``<LLMOPS_HOME>/stack/run`` and logging to
``<LLMOPS_HOME>/stack/logs/<name>.log``.

Ready means: a service's or the gateway's ``/readyz`` answers 200 (Postgres, Kafka and the object store answer); a
worker has logged ``<service>.worker.ready`` (it holds its partitions, so a job requested now is taken). Workers and
the gateway start once their service is ready, because the service applies the migrations their queries need.

Ports are the URLs of :class:`~llmops.settings.ClientSettings` (``LLMOPS_CLIENT_<NAME>_URL``): the command line
then reaches exactly what ``up`` started. Every other setting reaches the processes through the environment.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from llmops.infra.base import InfraError, ManagedProcess, Paths, port_open, tail
from llmops.settings import ClientSettings, PlatformSettings

#: How long ``up`` waits for one part to be ready (a first start imports torch and applies migrations).
READY_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Part:
    """One process of the platform: ``module`` is run as ``python -m module *args``."""

    name: str
    module: str
    args: tuple[str, ...]
    #: The :class:`ClientSettings` field holding its URL (HTTP parts), else None.
    url_field: str | None = None
    #: The log event that says a worker is ready (workers), else None.
    ready_event: str | None = None
    #: Parts that must be ready first (the service whose migrations a worker's queries need).
    after: tuple[str, ...] = ()
    #: Grace for a stop (a training worker checkpoints its running job and hands it over).
    stop_timeout: float = 30.0

    @property
    def marker(self) -> str:
        """What its command line contains, so that a recycled pid is not taken for it."""
        return " ".join((self.module, *self.args[:1]))

    def url(self, client: ClientSettings) -> str | None:
        return getattr(client, self.url_field).rstrip("/") if self.url_field else None

    def command(self, client: ClientSettings) -> list[str]:
        argv = [sys.executable, "-m", self.module, *self.args]
        url = self.url(client)
        if url is not None:
            parts = urlsplit(url)
            argv += ["--host", parts.hostname or "127.0.0.1", "--port", str(parts.port or 80)]
        return argv


def _service(name: str) -> Part:
    return Part(name, f"llmops_{name}.app", ("serve",), url_field=f"{name}_url")


def _worker(service: str, stop_timeout: float) -> Part:
    return Part(
        f"{service}-worker",
        f"llmops_{service}.app",
        ("worker", "--pool", "cpu"),
        ready_event=f"{service}.worker.ready",
        after=(service,),
        stop_timeout=stop_timeout,
    )


#: Every process ``up`` starts, in the order it starts them.
PARTS: tuple[Part, ...] = (
    *(_service(name) for name in ("audit", "datasets", "prompts", "training", "evaluation", "deployment")),
    _service("monitoring"),
    Part("gateway", "llmops_deployment.app", ("gateway",), url_field="gateway_url", after=("deployment",)),
    _worker("training", stop_timeout=120.0),
    _worker("evaluation", stop_timeout=60.0),
    _worker("deployment", stop_timeout=60.0),
)
PART_NAMES = tuple(part.name for part in PARTS)


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int | None
    ready: bool
    where: str
    log_file: Path

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "ready" if self.ready else "starting"


Log = Callable[[str], None]


class Stack:
    """The platform's processes on this machine."""

    def __init__(
        self,
        *,
        home: Path | None = None,
        client: ClientSettings | None = None,
        parts: Sequence[Part] = PARTS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.paths = Paths((home or PlatformSettings().home).expanduser().resolve() / "stack")
        self.client = client or ClientSettings()
        self.parts = tuple(parts)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

    def select(self, names: Iterable[str] | None) -> list[Part]:
        """The parts named (all when None), in start order; an unknown name is a ValueError naming the choices."""
        if not names:
            return list(self.parts)
        wanted = set(names)
        unknown = wanted - {part.name for part in self.parts}
        if unknown:
            raise ValueError(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PART_NAMES)}")
        return [part for part in self.parts if part.name in wanted]

    def process(self, part: Part) -> ManagedProcess:
        return ManagedProcess(part.name, self.paths, part.marker, stop_timeout=part.stop_timeout)

    # -- up ------------------------------------------------------------------------------------------------------

    def up(self, names: Iterable[str] | None = None, *, log: Log = print, timeout: float = READY_TIMEOUT_SECONDS):
        """Start what is not running (what runs is left alone) and wait until each is ready, in dependency order:
        the parts with nothing to wait for start together, then those whose dependencies are ready. Raises
        :class:`InfraError` naming the part and its log's last lines when one exits or is not ready in time."""
        todo = self._with_dependencies(self.select(names))
        ready: set[str] = {part.name for part in self.parts if part not in todo and self._ready(part)}
        while todo:
            wave = [part for part in todo if all(dep in ready for dep in part.after)]
            if not wave:
                missing = sorted({dep for part in todo for dep in part.after} - ready)
                raise InfraError(f"{', '.join(p.name for p in todo)} wait for {', '.join(missing)}, which is not up")
            offsets = {}
            for part in wave:
                process = self.process(part)
                if process.pid() is None:
                    self._port_free(part)
                    pid = process.start(part.command(self.client), env=self.env)
                    log(f"started {part.name} (pid {pid}), log {process.log_file}")
                offsets[part.name] = _last_start(process.log_file)
            with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                waits = [pool.submit(self._wait_ready, part, offsets[part.name], timeout) for part in wave]
                for part, wait in zip(wave, waits, strict=True):
                    log(f"{part.name} ready: {wait.result()}")
                    ready.add(part.name)
            todo = [part for part in todo if part not in wave]
        return self.status()

    def _port_free(self, part: Part) -> None:
        """Refuse to start an HTTP part whose port another process holds: its ``/readyz`` would pass for ours."""
        url = part.url(self.client)
        if url is None:
            return
        address = urlsplit(url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        if port_open(host, port):
            raise InfraError(
                f"{part.name}: {host}:{port} is in use by a process `llmops up` did not start; stop it, or give "
                f"{part.name} another port with LLMOPS_CLIENT_{(part.url_field or '').upper()}"
            )

    def _with_dependencies(self, chosen: list[Part]) -> list[Part]:
        """``chosen`` and, transitively, the parts they wait for (``up training-worker`` starts training too)."""
        names = {part.name for part in chosen}
        while True:
            more = {dep for part in self.parts if part.name in names for dep in part.after} - names
            if not more:
                return [part for part in self.parts if part.name in names]
            names |= more

    def _wait_ready(self, part: Part, offset: int, timeout: float) -> str:
        process = self.process(part)
        deadline = time.monotonic() + timeout
        while True:
            if self._ready(part, offset):
                return part.url(self.client) or f"logged {part.ready_event}"
            if process.pid() is None:
                raise InfraError(
                    f"{part.name} exited during start-up; see {process.log_file}\n{tail(process.log_file, 25)}"
                )
            if time.monotonic() >= deadline:
                raise InfraError(
                    f"{part.name} not ready after {timeout:.0f}s; see {process.log_file}\n{tail(process.log_file, 25)}"
                )
            time.sleep(0.5)

    def _ready(self, part: Part, log_offset: int = 0) -> bool:
        url = part.url(self.client)
        if url is not None:
            try:
                return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False
        if self.process(part).pid() is None:
            return False
        return _logged_since(self.process(part).log_file, log_offset, part.ready_event or "")

    # -- down ----------------------------------------------------------------------------------------------------

    def down(self, names: Iterable[str] | None = None, *, log: Log = print) -> list[str]:
        """Stop gracefully (SIGTERM, then SIGKILL after the part's grace) in reverse dependency order: the gateway
        and workers first, together, then the services, together. Returns the names of the parts that ran."""
        chosen = self.select(names)
        stopped: list[str] = []
        for tier in ([part for part in chosen if part.after], [part for part in chosen if not part.after]):
            if not tier:
                continue
            with ThreadPoolExecutor(max_workers=len(tier)) as pool:
                ran = list(pool.map(lambda p: self.process(p).stop(log), tier))
            stopped += [part.name for part, was in zip(tier, ran, strict=True) if was]
        return stopped

    # -- ps ------------------------------------------------------------------------------------------------------

    def status(self) -> list[PartStatus]:
        """Each part: its pid (None when not running), whether it is ready, its URL (or pool) and its log file."""
        rows = []
        for part in self.parts:
            process = self.process(part)
            pid = process.pid()
            ready = pid is not None and self._ready(part, _last_start(process.log_file))
            where = part.url(self.client) or f"pool {part.args[-1]}"
            rows.append(PartStatus(part.name, pid, ready, where, process.log_file))
        return rows


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


#: What :class:`ManagedProcess` writes to the log before each start.
_START_LINE = b"\n=== "


def _last_start(path: Path) -> int:
    """The offset of the last start's header in a log (0 when none): a worker's readiness counts from there."""
    size = _size(path)
    if not size:
        return 0
    with path.open("rb") as handle:
        handle.seek(max(0, size - 4 * 1024 * 1024))
        base = handle.tell()
        found = handle.read().rfind(_START_LINE)
    return base + found if found >= 0 else 0


def _logged_since(path: Path, offset: int, event: str) -> bool:
    """Whether ``event`` was logged (structlog's JSON ``"event": "..."`` or its console form) after ``offset``."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read()
    except OSError:
        return False
    return f'"{event}"'.encode() in text or f" {event} ".encode() in text


__all__ = ["PARTS", "PART_NAMES", "Part", "PartStatus", "Stack"]
