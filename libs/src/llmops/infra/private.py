"""Private copies of Postgres, Kafka and SeaweedFS for fault tests: each with its own data directory and ports under
a folder of the test's, so a test can stop, kill and start them without touching the shared local infrastructure (or
the other tests that use it). They reuse what the shared install already holds (Postgres binaries, Kafka's jars, the
``weed`` binary).
"""

from __future__ import annotations

import random
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from llmops.infra.base import Component, Paths, quiet_log, wait_healthy
from llmops.infra.kafka import Kafka
from llmops.infra.postgres import Postgres
from llmops.infra.seaweedfs import GRPC_OFFSET, SeaweedFS
from llmops.settings import KafkaSettings, PostgresSettings, S3Settings

#: The lowest port a private part takes: above the well-known and the platform's own (Kafka 9092, SeaweedFS 8333...).
_LOWEST = 20000


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (what it gives connections as their local port)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port nothing listens on now, below the ephemeral range: the kernel never gives it to a connection as
    its local port, so a part stopped and started again (what fault tests do, beside other tests' traffic) finds its
    port still free."""
    return free_port_pair(0)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_pair(offset: int) -> int:
    """A port ``p`` such that nothing listens on ``p`` or on ``p + offset`` (SeaweedFS's gRPC ports), both below the
    ephemeral range where it leaves room for them (above it otherwise: ``p + offset`` must be a valid port)."""
    top = _ephemeral_start() - offset
    low, high = (_LOWEST, top) if top - _LOWEST >= 1000 else (_LOWEST, 65536 - offset)
    for _ in range(1000):
        port = random.randrange(low, high)
        if _bindable(port) and (offset == 0 or _bindable(port + offset)):
            return port
    raise RuntimeError(f"no free pair of ports {offset} apart")


class PrivatePart:
    """One private part: ``start()`` (prepare once, launch, wait until healthy, provision), ``stop()``, ``kill()``."""

    def __init__(self, component: Component) -> None:
        self.component = component

    def start(self, *, timeout: float = 90) -> None:
        part = self.component
        part.prepare()
        part.launch()
        wait_healthy(part.name, part.check, process=part.process, timeout=timeout)
        part.provision()

    def stop(self) -> None:
        """A clean stop (the part's own shutdown signal, SIGKILL after its grace period)."""
        self.component.process.stop(quiet_log)

    def close(self) -> None:
        """Stop, and remove a Postgres cluster that lives outside the private folder."""
        self.stop()
        if isinstance(self.component, Postgres):
            shutil.rmtree(self.component.cluster_dir, ignore_errors=True)


def private_postgres(home: Path, services: Sequence[str]) -> tuple[PrivatePart, PostgresSettings]:
    """A Postgres of its own under ``home`` (roles and databases of ``services`` provisioned), not started yet."""
    settings = PostgresSettings(port=free_port())
    return PrivatePart(Postgres(Paths(home), quiet_log, settings, services)), settings


def private_kafka(home: Path, topics: Sequence[str]) -> tuple[PrivatePart, KafkaSettings]:
    """A one-node Kafka of its own under ``home`` (``topics`` created on start), not started yet; its jars are the
    shared install's (``llmops infra up`` must have run)."""
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", controller_port=free_port(), heap="256m")
    kafka = Kafka(Paths(home), quiet_log, settings, topics)
    shared = Kafka(Paths.from_settings(), quiet_log).lib
    if not any(shared.glob("*.jar")):
        raise FileNotFoundError(f"no Kafka jars in {shared}: run `llmops infra up` first")
    kafka.lib.parent.mkdir(parents=True, exist_ok=True)
    if not kafka.lib.exists():
        kafka.lib.symlink_to(shared, target_is_directory=True)
    return PrivatePart(kafka), settings


def private_seaweedfs(home: Path) -> tuple[PrivatePart, S3Settings]:
    """A SeaweedFS of its own under ``home`` (S3 with the platform's bucket; master, volume and filer on ports of its
    own), not started yet; its ``weed`` is the shared install's (``llmops infra up`` must have run)."""
    ports = [free_port_pair(GRPC_OFFSET) for _ in range(4)]
    while len(set(ports) | {p + GRPC_OFFSET for p in ports}) < 8:  # the four pairs overlapping: pick again
        ports = [free_port_pair(GRPC_OFFSET) for _ in range(4)]
    settings = S3Settings(endpoint=f"127.0.0.1:{ports[0]}")
    paths = Paths(home)
    store = SeaweedFS(paths, quiet_log, settings, inner_ports=(ports[1], ports[2], ports[3]))
    shared = SeaweedFS(Paths.from_settings(), quiet_log).binary
    if not shared.is_file():
        raise FileNotFoundError(f"no weed binary at {shared}: run `llmops infra up` first")
    store.binary.parent.mkdir(parents=True, exist_ok=True)
    if not store.binary.exists():
        store.binary.symlink_to(shared)
    return PrivatePart(store), settings
