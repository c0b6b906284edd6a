"""Settings for every part of the platform, read from the environment with pydantic-settings.

Shared connection settings (Kafka, Postgres, object store, auth) have one prefix each (``LLMOPS_KAFKA_`` ...);
a service's own settings class subclasses :class:`ServiceSettings` with its own prefix (``LLMOPS_AUDIT_`` ...).
No other module reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["local", "test", "production"]

#: The services of the platform; each gets a database and a role of its own.
SERVICES: tuple[str, ...] = (
    "datasets",
    "prompts",
    "training",
    "evaluation",
    "deployment",
    "monitoring",
    "audit",
)

#: Secrets that ship in this repository for local development; accepted only with LLMOPS_ENV=local.
DEV_SECRETS: frozenset[str] = frozenset(
    {
        "llmops-local-jwt-secret-change-me",
        "llmops-local-s3-secret",
        "llmops-local-db-password",
        # the audit service's Ed25519 checkpoint-signing seed for local development (base64 of 32 bytes)
        "bGxtb3BzLWxvY2FsLWF1ZGl0LXNpZ25pbmcta2V5LTE=",
    }
)


class PlatformSettings(BaseSettings):
    """Where the platform runs: the environment name and the local cache (downloads, builds, data, logs).

    ``LLMOPS_ENV`` unset means production rules: development secrets and short secrets are refused. Local
    development says ``LLMOPS_ENV=local`` explicitly (the Makefile and the tests do)."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_", extra="ignore")

    env: Environment = "production"
    home: Path = Field(default_factory=lambda: Path.home() / ".cache" / "llmops")

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def is_local(self) -> bool:
        return self.env == "local"


#: The shortest secret accepted outside local development.
MIN_SECRET_BYTES = 32


def refuse_dev_secret(name: str, value: SecretStr) -> None:
    """Outside ``LLMOPS_ENV=local``, refuse a development default or a secret shorter than :data:`MIN_SECRET_BYTES`."""
    if PlatformSettings().is_local:
        return
    secret = value.get_secret_value()
    if secret in DEV_SECRETS:
        raise ValueError(f"{name} is the development default, accepted only with LLMOPS_ENV=local; set a real secret")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{name} is shorter than {MIN_SECRET_BYTES} bytes; set a longer secret")


class KafkaSettings(BaseSettings):
    """How to reach Kafka. SASL/TLS fields are passed through to aiokafka when set."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = 9093
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    heap: str = "512m"
    #: The largest event (its JSON bytes) the outbox takes: under the broker's default ``message.max.bytes``
    #: (1 MiB) with room for the record's key, headers and batch framing, so every stored event can be sent.
    max_event_bytes: int = Field(default=900_000, ge=1024)


class PostgresSettings(BaseSettings):
    """How to reach Postgres; each service has its own database ``llmops_<service>`` and role of the same name."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_POSTGRES_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 5433
    superuser: str = "postgres"
    superuser_password: SecretStr = SecretStr("llmops-local-db-password")
    service_password: SecretStr = SecretStr("llmops-local-db-password")

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> PostgresSettings:
        refuse_dev_secret("LLMOPS_POSTGRES_SERVICE_PASSWORD", self.service_password)
        refuse_dev_secret("LLMOPS_POSTGRES_SUPERUSER_PASSWORD", self.superuser_password)
        return self

    def url(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        user = user or database
        password = password if password is not None else self.service_password.get_secret_value()
        return f"postgresql+asyncpg://{user}:{password}@{self.host}:{self.port}/{database}"

    def service_url(self, service: str) -> str:
        """The URL a running service uses: role ``llmops_<service>_app``, with only the grants its migrations give."""
        return self.url(f"llmops_{service}", user=f"llmops_{service}_app")

    def owner_url(self, service: str) -> str:
        """The URL a service's migrations use: role ``llmops_<service>``, owner of the database."""
        return self.url(f"llmops_{service}")

    def superuser_url(self, database: str = "postgres") -> str:
        return self.url(database, user=self.superuser, password=self.superuser_password.get_secret_value())


class S3Settings(BaseSettings):
    """How to reach the S3-compatible object store (SeaweedFS locally; MinIO or AWS S3 by configuration)."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_S3_", extra="ignore")

    endpoint: str = "127.0.0.1:8333"
    access_key: str = "llmops"
    secret_key: SecretStr = SecretStr("llmops-local-s3-secret")
    secure: bool = False
    region: str = "us-east-1"
    bucket: str = "llmops-artifacts"

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> S3Settings:
        refuse_dev_secret("LLMOPS_S3_SECRET_KEY", self.secret_key)
        return self


class AuthSettings(BaseSettings):
    """Bearer-token verification: HS256 with a shared secret locally, RS256 through an OIDC provider's JWKS."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_AUTH_", extra="ignore")

    algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr = SecretStr("llmops-local-jwt-secret-change-me")
    jwks_url: str | None = None
    issuer: str = "llmops-local"
    audience: str = "llmops"
    token_ttl_seconds: int = 3600

    @model_validator(mode="after")
    def _check(self) -> AuthSettings:
        if self.algorithm == "HS256":
            refuse_dev_secret("LLMOPS_AUTH_JWT_SECRET", self.jwt_secret)
        elif not self.jwks_url:
            raise ValueError("LLMOPS_AUTH_JWKS_URL is required when LLMOPS_AUTH_ALGORITHM=RS256")
        return self


class ServiceSettings(BaseSettings):
    """Base of each service's settings; subclasses set ``env_prefix`` (``LLMOPS_<SERVICE>_``) and ``service``."""

    model_config = SettingsConfigDict(extra="ignore")

    service: str
    database_url: str | None = None
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval: float = Field(default=0.2, gt=0)
    #: Published outbox rows are deleted after this long (checked hourly by the service).
    outbox_retention_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    consumer_max_attempts: int = Field(default=3, ge=1)
    consumer_backoff_seconds: float = Field(default=0.2, ge=0)
    #: The largest request body a route takes (JSON and forms); uploads have limits of their own.
    http_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Anonymous refusals (401) are counted per source over this window and recorded as one event with the count.
    denial_window_seconds: int = Field(default=60, ge=1)
    #: How long a starting process waits for a dependency that is out of reach (the object store restarting) before it
    #: gives up and exits; each try is logged (``runtime.waiting_for``).
    startup_wait_seconds: float = Field(default=300, ge=0)

    migrations_database_url: str | None = None

    @property
    def db_url(self) -> str:
        return self.database_url or self.postgres.service_url(self.service)

    @property
    def migrations_db_url(self) -> str:
        return self.migrations_database_url or self.postgres.owner_url(self.service)


class ClientSettings(BaseSettings):
    """What the ``llmops`` command line uses to call the platform's services: a bearer token and their URLs."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_CLIENT_", extra="ignore")

    token: SecretStr | None = None
    audit_url: str = "http://127.0.0.1:8007"
    datasets_url: str = "http://127.0.0.1:8001"
    prompts_url: str = "http://127.0.0.1:8002"
    training_url: str = "http://127.0.0.1:8003"
    evaluation_url: str = "http://127.0.0.1:8004"
    deployment_url: str = "http://127.0.0.1:8005"
    monitoring_url: str = "http://127.0.0.1:8006"
    #: The inference gateway (OpenAI-compatible), for ``llmops chat``.
    gateway_url: str = "http://127.0.0.1:8080"
    #: How long the prompts client trusts a fetched prompt before revalidating it (ETag) with the service.
    prompts_cache_ttl_seconds: float = 30.0
