"""Shared machinery of the local infrastructure: errors, status, paths, detached processes, health waits."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from llmops.settings import PlatformSettings

T = TypeVar("T")

#: Progress callback: receives one human-readable line per step.
Log = Callable[[str], None]

#: Seconds ``up`` waits for a part to become healthy once its process is started.
DEFAULT_TIMEOUT = 90.0
#: A log file bigger than this is moved to ``<name>.log.1`` when its process is started again.
LOG_ROTATE_BYTES = 50 * 1024 * 1024


class InfraError(RuntimeError):
    """A part of the local infrastructure could not be installed, started or reached."""


@dataclass(frozen=True)
class ComponentStatus:
    """What ``status`` reports for one part: ``detail`` holds its address, pid and log file."""

    name: str
    healthy: bool
    detail: str


def default_log(message: str) -> None:
    print(f"[infra] {message}", flush=True)


def quiet_log(message: str) -> None:
    """A ``log`` callback that drops every message."""


@dataclass(frozen=True)
class Paths:
    """Where everything lives under the platform's cache directory (``PlatformSettings().home``)."""

    home: Path

    @classmethod
    def from_settings(cls, platform: PlatformSettings | None = None) -> Paths:
        return cls((platform or PlatformSettings()).home.expanduser().resolve())

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def build(self) -> Path:
        return self.home / "build"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"


def repo_infra_dir() -> Path:
    """The repository's ``infra/`` folder (Maven and Go files); the package is installed editable from it."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "infra"
        if (candidate / "kafka" / "pom.xml").is_file():
            return candidate
    raise InfraError(f"cannot find the repository's infra/ folder above {here}; run from a checkout")


def sha256_of(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def write_if_changed(path: Path, text: str, mode: int | None = None) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; returns whether it wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    tmp.replace(path)
    return True


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"host:port"`` (first of a comma-separated list, optional scheme) to ``(host, port)``."""
    first = address.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    first = first.rstrip("/")
    if first.startswith("["):  # [::1]:9092
        host, _, rest = first[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = first.rpartition(":")
    if not sep:
        return first, default_port
    return host, int(port)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_sync(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro_factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="llmops-infra-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise ``up``/``down`` of several processes on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop root to ``user`` (its primary group, no supplementary groups)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def run_logged(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_file: Path,
    what: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    capture: bool = False,
    timeout: float | None = None,
) -> str:
    """Run a one-off step (download, build, format), appending its output to ``log_file``.

    Returns stdout when ``capture`` is true; raises :class:`InfraError` naming the step and log on failure.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        out.write(f"\n=== {datetime.now(UTC).isoformat()} {what}: {' '.join(map(str, cmd))}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(
                [str(c) for c in cmd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else out,
                stderr=out,
                env=env,
                cwd=cwd,
                timeout=timeout,
                **_as_user(user),
                check=False,
            )
        except FileNotFoundError as exc:
            raise InfraError(f"{what} failed: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise InfraError(f"{what} timed out after {timeout:.0f}s; see {log_file}") from exc
        stdout = proc.stdout.decode(errors="replace") if capture and proc.stdout else ""
        if capture:
            out.write(stdout.encode())
    if proc.returncode != 0:
        raise InfraError(f"{what} failed (exit {proc.returncode}); see {log_file}\n{tail(log_file)}".rstrip())
    return stdout


def apt_install(package: str, log: Log, log_file: Path) -> None:
    """Install a Debian package; only used when a binary we need is missing (root and apt-get required)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise InfraError(f"{package} is not installed; install it (apt-get install -y {package}) and retry")
    log(f"installing {package} with apt-get (one time)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_logged(["apt-get", "update"], log_file=log_file, what="apt-get update", env=env)
    run_logged(
        ["apt-get", "install", "-y", "--no-install-recommends", package],
        log_file=log_file,
        what=f"apt-get install {package}",
        env=env,
    )


# ------------------------------------------------------------------------------------------------------------
# Detached processes with pid files


def _reap(pid: int) -> None:
    # A process we started ourselves stays a zombie until we wait for it; reap it so it counts as gone.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class ManagedProcess:
    """A server started detached, tracked by ``home/run/<name>.pid``, logging to ``home/logs/<name>.log``.

    ``marker`` is a string the process's command line must contain, so a recycled pid is not taken for ours.
    """

    name: str
    paths: Paths
    marker: str
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 30.0

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file(self.name)

    @property
    def log_file(self) -> Path:
        return self.paths.log_file(self.name)

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid):
            cmdline = _cmdline(pid)
            # Right after exec the kernel briefly shows an empty command line; trust the pid file then.
            if not cmdline or self.marker in cmdline:
                return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self.paths.run.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists() and self.log_file.stat().st_size > LOG_ROTATE_BYTES:
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        with self.log_file.open("ab") as out:
            out.write(f"\n=== {datetime.now(UTC).isoformat()} starting: {' '.join(map(str, cmd))}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                **_as_user(user),
                close_fds=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 2
        while not _cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # exec still setting up the new command line
        return proc.pid

    def stop(self, log: Log) -> bool:
        """Stop gracefully (``stop_signal``, wait, then SIGKILL its process group); False if not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        log(f"stopping {self.name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            log(f"{self.name} did not stop within {self.stop_timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def wait_healthy(
    name: str,
    check: Callable[[], tuple[bool, str]],
    *,
    process: ManagedProcess,
    timeout: float,
    interval: float = 0.5,
) -> str:
    """Poll ``check`` until it passes; fail early if the process dies. Returns the check's detail."""
    deadline = time.monotonic() + timeout
    detail = "not checked"
    while True:
        ok, detail = check()
        if ok:
            return detail
        if process.pid() is None:
            raise InfraError(
                f"{name} exited during start-up ({detail}); see {process.log_file}\n{tail(process.log_file)}".rstrip()
            )
        if time.monotonic() >= deadline:
            raise InfraError(
                f"{name} not healthy after {timeout:.0f}s ({detail}); see {process.log_file}\n"
                f"{tail(process.log_file)}".rstrip()
            )
        time.sleep(interval)


class Component:
    """One part of the local infrastructure. Subclasses fill in install/prepare/launch/check/provision."""

    name: str = ""

    def __init__(self, paths: Paths, log: Log) -> None:
        self.paths = paths
        self.log = log

    @property
    def process(self) -> ManagedProcess:
        raise NotImplementedError

    @property
    def address(self) -> str:
        raise NotImplementedError

    def ports(self) -> list[tuple[str, int]]:
        """Every (host, port) the part listens on; ``up`` refuses to start when another process holds one."""
        raise NotImplementedError

    def install(self) -> None:
        """Download/build/install what is missing; a no-op when the cache is complete."""

    def prepare(self) -> None:
        """Write configuration and initialise data (idempotent); runs before each start."""

    def launch(self) -> None:
        raise NotImplementedError

    def check(self) -> tuple[bool, str]:
        """Health check: (healthy, detail). Must not start anything."""
        raise NotImplementedError

    def provision(self) -> None:
        """Create what the platform needs inside the running part (topics, buckets, roles); idempotent."""
