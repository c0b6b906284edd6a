"""The prompts service's settings (prefix ``LLMOPS_PROMPTS_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from llmops.auth import Role
from llmops.settings import ServiceSettings


class PromptsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_PROMPTS_", extra="ignore")

    service: str = "prompts"
    #: The role (besides admin) that may move or (un)protect protected labels; None: admin only.
    protected_label_role: Role | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8002
