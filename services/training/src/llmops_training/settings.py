"""The training service's settings (prefix ``LLMOPS_TRAINING_``); the worker reads the same class."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from llmops.settings import ServiceSettings


class Pool(BaseModel):
    """A pool of training workers: what its machines have."""

    cuda: bool = False
    description: str = ""


class TrainingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_TRAINING_", env_nested_delimiter="__", extra="ignore")

    service: str = "training"
    http_host: str = "127.0.0.1"
    http_port: int = 8003
    #: The pools jobs may ask for; a `qlora` job needs a pool with CUDA.
    pools: dict[str, Pool] = Field(
        default_factory=lambda: {"cpu": Pool(cuda=False, description="CPU workers"), "gpu": Pool(cuda=True)}
    )
    #: Largest base model upload accepted (bytes).
    max_upload_bytes: int = Field(default=21 * 1024**3, ge=1)  # the unpacked cap and room for tar headers
    #: Largest sum of an uploaded base model's file sizes (bytes), checked from the tar's headers before unpacking.
    max_base_model_bytes: int = Field(default=20 * 1024**3, ge=1)
    #: How long the presigned URLs of a model version's files (``GET .../files``) stay valid, in seconds.
    download_url_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)  # S3 allows at most seven days
    #: Most files and directories in an uploaded base model's tar.
    max_base_model_files: int = Field(default=10_000, ge=1)
    #: Where uploads are spooled and workers keep their work and cache (None: the system temporary directory).
    work_dir: Path | None = None
    consumer_group: str = "training"
    #: Where a new projections consumer group starts: earliest (the whole history of datasets and prompts) or latest.
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"

    # --- worker ---
    #: The worker's pool (it takes jobs of this pool only; one consumer group per pool).
    pool: str = "cpu"
    #: The workers' consumer group (default ``training-worker-<pool>``); one per pool and deployment.
    worker_group: str | None = None
    #: Where a new worker group starts: earliest (no job ever missed) or latest (tests: past other runs' history).
    worker_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: A worker holds a job under a lease it renews; another worker takes the job over once the lease has expired.
    lease_seconds: float = Field(default=15.0, gt=1)
    #: Starts of a job (fresh or resumed) before it fails for good: a job that kills its worker each time (out of
    #: memory, a crash) must not block its partition forever. Hand-overs by a stopping worker do not count.
    max_attempts: int = Field(default=3, ge=1)
    #: Progress events at most this often (every step's metrics are still recorded).
    progress_interval_seconds: float = Field(default=2.0, ge=0)
    #: Checkpoint every this many optimizer steps unless a job says otherwise.
    checkpoint_every: int = Field(default=50, ge=1)
    #: Kafka session timeout of the worker's consumer: how soon a dead worker's jobs go to another one.
    session_timeout_ms: int = Field(default=10_000, ge=6_000)
    #: torch CPU threads of a training process (0: torch's default, one per core).
    train_threads: int = Field(default=0, ge=0)
    #: Cached base models (by manifest hash) kept on a worker's disk.
    cache_dir: Path | None = None
