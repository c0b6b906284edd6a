"""``up``/``down``/``status`` over the three parts: PostgreSQL, SeaweedFS (S3) and Kafka."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from llmops.infra.base import (
    DEFAULT_TIMEOUT,
    Component,
    ComponentStatus,
    InfraError,
    Log,
    Paths,
    default_log,
    file_lock,
    port_open,
    quiet_log,
    wait_healthy,
)
from llmops.infra.kafka import Kafka
from llmops.infra.postgres import Postgres
from llmops.infra.seaweedfs import SeaweedFS
from llmops.settings import SERVICES, KafkaSettings, PlatformSettings, PostgresSettings, S3Settings

#: The parts, in start order (``down`` stops them in reverse).
COMPONENTS: tuple[str, ...] = ("postgres", "seaweedfs", "kafka")


def default_topics() -> list[str]:
    """The platform's topic registry (``llmops_schemas.topics.ALL_TOPICS``), or nothing if it is not there."""
    try:
        from llmops_schemas.topics import ALL_TOPICS
    except ImportError:
        return []
    if isinstance(ALL_TOPICS, Mapping):
        return [str(name) for name in ALL_TOPICS]
    return [t if isinstance(t, str) else str(getattr(t, "name", t)) for t in ALL_TOPICS]


def _select(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(COMPONENTS)
    wanted = set(names)
    unknown = wanted - set(COMPONENTS)
    if unknown:
        raise InfraError(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(COMPONENTS)}")
    return [name for name in COMPONENTS if name in wanted]


def _build(
    names: Iterable[str] | None,
    log: Log,
    *,
    services: Sequence[str] = SERVICES,
    topics: Sequence[str] = (),
    platform: PlatformSettings | None = None,
) -> tuple[Paths, list[Component]]:
    paths = Paths.from_settings(platform)
    factories = {
        "postgres": lambda: Postgres(paths, log, PostgresSettings(), services),
        "seaweedfs": lambda: SeaweedFS(paths, log, S3Settings()),
        "kafka": lambda: Kafka(paths, log, KafkaSettings(), topics),
    }
    return paths, [factories[name]() for name in _select(names)]


def up(
    services: Sequence[str] = SERVICES,
    topics: Sequence[str] | None = None,
    *,
    components: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    log: Log = default_log,
    platform: PlatformSettings | None = None,
) -> None:
    """Install (once), start and provision the local infrastructure; waits until every part is healthy.

    Idempotent: parts already running are only health-checked (and their topics, bucket, roles ensured).
    ``topics`` defaults to ``llmops_schemas.topics.ALL_TOPICS``. Raises :class:`InfraError` naming the part
    and its log file when something fails.
    """
    if topics is None:
        topics = default_topics()
    paths, parts = _build(components, log, services=services, topics=topics, platform=platform)
    with file_lock(paths.run / "infra.lock"):
        started: list[Component] = []
        for part in parts:
            pid = part.process.pid()
            if pid is not None:
                log(f"{part.name}: already running (pid {pid})")
                continue
            busy = [f"{host}:{port}" for host, port in part.ports() if port_open(host, port)]
            if busy:
                raise InfraError(
                    f"{part.name}: cannot start, {', '.join(busy)} already in use by a process llmops did "
                    f"not start (no live pid file {part.process.pid_file}); stop it or change its port"
                )
            part.install()
            part.prepare()
            part.launch()
            started.append(part)
        for part in parts:
            try:
                detail = wait_healthy(part.name, part.check, process=part.process, timeout=timeout)
            except InfraError:
                if part in started:
                    part.process.stop(log)
                raise
            log(f"{part.name}: healthy at {part.address} ({detail})")
        for part in parts:
            try:
                part.provision()
            except InfraError:
                raise
            except Exception as exc:
                raise InfraError(
                    f"{part.name}: provisioning failed: {type(exc).__name__}: {exc}; see {part.process.log_file}"
                ) from exc


def down(
    *,
    components: Iterable[str] | None = None,
    log: Log = default_log,
    platform: PlatformSettings | None = None,
) -> None:
    """Stop the parts llmops started (SIGTERM/SIGINT, wait, SIGKILL fallback); idempotent."""
    paths, parts = _build(components, log, platform=platform)
    with file_lock(paths.run / "infra.lock"):
        for part in reversed(parts):
            if not part.process.stop(log):
                log(f"{part.name}: not running")
            else:
                log(f"{part.name}: stopped")


def status(
    *,
    components: Iterable[str] | None = None,
    platform: PlatformSettings | None = None,
) -> list[ComponentStatus]:
    """Health of each part; never starts anything."""
    _, parts = _build(components, quiet_log, platform=platform)
    result = []
    for part in parts:
        pid = part.process.pid()
        healthy, detail = part.check()
        owner = f"pid {pid}" if pid is not None else "not started by llmops" if healthy else "not running"
        result.append(
            ComponentStatus(
                name=part.name,
                healthy=healthy,
                detail=f"{part.address}, {owner}, log {part.process.log_file}: {detail}",
            )
        )
    return result
