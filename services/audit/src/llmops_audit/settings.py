"""The audit service's settings (prefix ``LLMOPS_AUDIT_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from llmops.settings import ServiceSettings, refuse_dev_secret
from llmops_schemas.topics import DEAD_LETTER, DOMAIN_TOPICS

DEV_SIGNING_KEY = "bGxtb3BzLWxvY2FsLWF1ZGl0LXNpZ25pbmcta2V5LTE="


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_AUDIT_", extra="ignore")

    service: str = "audit"
    #: Every topic whose events the log records (all domain topics, the security topic included).
    topics: list[str] = Field(default_factory=lambda: list(DOMAIN_TOPICS))
    consumer_group: str = "audit"
    #: The dead-letter topic its admin API lists and replays (the one every consumer of the platform writes to).
    dead_letter_topic: str = Field(default=DEAD_LETTER, min_length=1, max_length=249)
    #: Base64 of the 32-byte Ed25519 seed that signs checkpoints; keep the private key out of the database.
    signing_key: SecretStr = SecretStr(DEV_SIGNING_KEY)
    checkpoint_interval_seconds: float = Field(default=60.0, gt=0)
    consumer_max_records: int = Field(default=1000, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 8007

    @model_validator(mode="after")
    def _no_dev_key_in_production(self) -> AuditSettings:
        refuse_dev_secret("LLMOPS_AUDIT_SIGNING_KEY", self.signing_key)
        return self
