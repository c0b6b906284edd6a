"""The prompts service's settings (prefix ``LLMOPS_PROMPTS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from llmops.auth import Role
from llmops.settings import ServiceSettings


class PromptsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_PROMPTS_", extra="ignore")

    service: str = "prompts"
    #: The role (besides admin) that may move or (un)protect protected labels; None: admin only.
    protected_label_role: Role | None = None
    #: How long one render may take (the renderer's budget), and one run of a prompt's tests in all.
    render_seconds: float = Field(default=1.0, gt=0, le=60)
    test_run_seconds: float = Field(default=10.0, gt=0, le=600)
    http_host: str = "127.0.0.1"
    http_port: int = 8002
