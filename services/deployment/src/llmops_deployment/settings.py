"""The deployment service's settings (prefix ``LLMOPS_DEPLOYMENT_``); the serving worker and the gateway read the same
class."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from llmops.settings import ServiceSettings


class Pool(BaseModel):
    """A pool of serving workers: what its machines have and which backends they run."""

    cuda: bool = False
    backends: list[str] = Field(default_factory=lambda: ["transformers", "external"])
    description: str = ""


class Price(BaseModel):
    """What a model costs, per 1,000 tokens, in the platform's currency unit."""

    input_per_1k: float = Field(default=0.0, ge=0)
    output_per_1k: float = Field(default=0.0, ge=0)


class DeploymentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_DEPLOYMENT_", env_nested_delimiter="__", extra="ignore")

    service: str = "deployment"
    http_host: str = "127.0.0.1"
    http_port: int = 8005
    #: The pools deployments may ask for, and the backends each runs (GPU backends only on CUDA pools).
    pools: dict[str, Pool] = Field(
        default_factory=lambda: {
            "cpu": Pool(cuda=False, backends=["transformers", "external"], description="CPU serving workers"),
            "gpu": Pool(cuda=True, backends=["vllm", "tgi", "transformers", "external"], description="GPU workers"),
        }
    )
    consumer_group: str = "deployment"
    #: Where a new projections consumer group starts: earliest (the whole history) or latest.
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: Hosts an external backend may be at (host or host:port; empty: any). Requests name URLs; this list is what
    #: keeps them from making the gateway call anything else.
    allowed_external_hosts: list[str] = Field(default_factory=list)
    #: Most replicas one deployment may ask for.
    max_replicas: int = Field(default=8, ge=1, le=64)

    # --- serving worker ---
    #: The worker's pool (it takes deployments of this pool only; one consumer group per pool).
    pool: str = "cpu"
    #: The workers' consumer group (default ``deployment-worker-<pool>``).
    worker_group: str | None = None
    worker_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: Replicas one worker serves at most (its backends share the machine).
    worker_capacity: int = Field(default=4, ge=1, le=256)
    #: A worker holds a replica under a lease it renews; another worker of the pool takes it over once expired.
    lease_seconds: float = Field(default=15.0, gt=1)
    session_timeout_ms: int = Field(default=10_000, ge=6_000)
    #: The address backends listen on, and the one the gateway is told to reach them at.
    backend_host: str = "127.0.0.1"
    advertised_host: str | None = None
    #: How long a backend may take to answer its health check after start.
    backend_start_timeout_seconds: float = Field(default=180.0, gt=0)
    #: Crashes in a row before a replica fails for good; the wait between restarts doubles from ``restart_backoff``.
    max_restarts: int = Field(default=5, ge=0)
    restart_backoff_seconds: float = Field(default=1.0, ge=0)
    restart_backoff_max_seconds: float = Field(default=30.0, ge=0)
    #: How long a stop waits for in-flight requests before it stops the backend anyway.
    drain_timeout_seconds: float = Field(default=30.0, ge=0)
    #: Backend log lines kept per replica (for ``llmops deploy logs`` and a failure's event).
    log_lines: int = Field(default=200, ge=10, le=10_000)
    #: Extra arguments per backend command (e.g. {"vllm": ["--max-model-len", "4096"]}).
    backend_args: dict[str, list[str]] = Field(default_factory=dict)
    #: torch CPU threads of a transformers backend (0: torch's default).
    threads: int = Field(default=0, ge=0)
    #: Where workers keep their work and their content-addressed model cache (None: the system temporary directory).
    work_dir: Path | None = None
    cache_dir: Path | None = None

    # --- gateway ---
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    #: Price per 1,000 tokens by model name (the registered model's name, or an external deployment's model).
    prices: dict[str, Price] = Field(default_factory=dict)
    default_price: Price = Field(default_factory=Price)
    #: Limits per API key and per project when none is set on the key or the project (0: none).
    default_requests_per_minute: int = Field(default=0, ge=0)
    default_tokens_per_minute: int = Field(default=0, ge=0)
    #: max_tokens when a request sets none (it is also what the budget reserves for such a request).
    default_max_tokens: int = Field(default=256, ge=1)
    #: The largest max_tokens a request may ask for.
    max_tokens_limit: int = Field(default=4096, ge=1)
    #: Timeouts towards a backend: connect, first token (or whole answer when not streaming), and total.
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    first_token_timeout_seconds: float = Field(default=60.0, gt=0)
    total_timeout_seconds: float = Field(default=300.0, gt=0)
    #: Inference records: text redacted with the platform's PII rules, or only hashed.
    record_text: Literal["redacted", "hashed"] = "redacted"
    #: Records waiting for Kafka at most; what does not fit is dropped, counted and logged.
    record_buffer: int = Field(default=10_000, ge=1)
    #: A reservation its gateway never settled (a crashed replica) is released after this long.
    reservation_ttl_seconds: float = Field(default=600.0, gt=0)
    #: How long a gateway trusts its cached API keys, deployments and prompts before it looks again. Route changes
    #: are checked on every request (a rollback applies to the next request).
    gateway_cache_seconds: float = Field(default=5.0, ge=0)
    #: The prompts service the gateway renders prompts by label from (None: the client settings' URL), and the
    #: token it calls it with (a service token with read access to the projects' prompts).
    prompts_url: str | None = None
    prompts_token: SecretStr | None = None
