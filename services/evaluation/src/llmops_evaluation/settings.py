"""The evaluation service's settings (prefix ``LLMOPS_EVALUATION_``); the evaluation worker reads the same class."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from llmops.settings import ServiceSettings


class Pool(BaseModel):
    """A pool of evaluation workers: what its machines have."""

    cuda: bool = False
    description: str = ""


class EvaluationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_EVALUATION_", env_nested_delimiter="__", extra="ignore")

    service: str = "evaluation"
    http_host: str = "127.0.0.1"
    http_port: int = 8004
    #: The pools runs may ask for.
    pools: dict[str, Pool] = Field(
        default_factory=lambda: {"cpu": Pool(cuda=False, description="CPU workers"), "gpu": Pool(cuda=True)}
    )
    #: The pool of runs started by a trigger (e.g. ``model.version.registered``) rather than by a request.
    default_pool: str = "cpu"
    consumer_group: str = "evaluation"
    #: Where a new projections consumer group starts: earliest (the whole history) or latest.
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: Most examples a suite's split may hold (a run's work is bounded).
    max_examples: int = Field(default=50_000, ge=1)
    #: Most new tokens a suite may ask for per example.
    max_new_tokens_limit: int = Field(default=2048, ge=1)
    #: Hosts an endpoint target or a judge may be called at (host or host:port; empty: any). Requests name
    #: endpoints; this list is what keeps them from making the service call anything else.
    allowed_endpoint_hosts: list[str] = Field(default_factory=list)
    #: Bootstrap resamples for intervals and comparisons.
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100_000)

    # --- worker ---
    #: The worker's pool (it takes runs of this pool only; one consumer group per pool).
    pool: str = "cpu"
    #: The workers' consumer group (default ``evaluation-worker-<pool>``).
    worker_group: str | None = None
    worker_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: A worker holds a run under a lease it renews; another worker takes the run over once it has expired.
    lease_seconds: float = Field(default=15.0, gt=1)
    #: Starts of a run before it fails for good (a run that kills its worker each time must not block its partition).
    max_attempts: int = Field(default=3, ge=1)
    progress_interval_seconds: float = Field(default=2.0, ge=0)
    session_timeout_ms: int = Field(default=10_000, ge=6_000)
    #: Examples generated together (one padded batch) by the local model.
    generation_batch_size: int = Field(default=16, ge=1, le=1024)
    #: Requests in flight at once to an endpoint target.
    endpoint_concurrency: int = Field(default=8, ge=1, le=256)
    #: One request to an endpoint (seconds).
    endpoint_timeout_seconds: float = Field(default=60.0, gt=0)
    #: torch CPU threads of a generation process (0: torch's default).
    threads: int = Field(default=0, ge=0)
    #: Where workers keep their work and their content-addressed model cache (None: the system temporary directory).
    work_dir: Path | None = None
    cache_dir: Path | None = None
