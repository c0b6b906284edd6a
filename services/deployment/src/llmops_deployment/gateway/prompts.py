"""Prompts by label: a request's ``prompt: {name, label|version, variables}`` rendered with the shared renderer through
the prompts client's cache (one client per project), into the request's messages (or completion prompt)."""

from __future__ import annotations

import asyncio
from typing import Any

from llmops.prompt_client import PromptClient, PromptClientError
from llmops.prompts import RenderError, render
from llmops.settings import ClientSettings
from llmops_deployment.gateway.errors import GatewayError
from llmops_deployment.settings import DeploymentSettings


class Prompts:
    def __init__(self, settings: DeploymentSettings) -> None:
        self.url = settings.prompts_url or ClientSettings().prompts_url
        self.token = settings.prompts_token.get_secret_value() if settings.prompts_token else None
        self.ttl = settings.gateway_cache_seconds
        self._clients: dict[str, PromptClient] = {}

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))

    async def render(self, project: str, ref: Any) -> tuple[str | list[dict[str, str]], str | None]:
        """The rendered prompt and its version id; 4xx :class:`GatewayError` for what cannot be rendered."""
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            raise GatewayError(400, "prompt must be {name, label or version, variables}", param="prompt")
        label, version, variables = ref.get("label"), ref.get("version"), ref.get("variables") or {}
        if (label is not None and not isinstance(label, str)) or (version is not None and not isinstance(version, int)):
            raise GatewayError(400, "prompt.label must be a string and prompt.version an integer", param="prompt")
        if not isinstance(variables, dict):
            raise GatewayError(400, "prompt.variables must be an object", param="prompt.variables")
        client = self._clients.get(project)
        if client is None:
            client = self._clients[project] = PromptClient(
                project, base_url=self.url, token=self.token, ttl_seconds=self.ttl
            )
        try:
            found = await client.get(ref["name"], label=label, version=version)
        except PromptClientError as exc:
            status = 404 if exc.status == 404 else 400 if exc.status < 500 else 502
            raise GatewayError(status, f"prompt {ref['name']!r}: {exc.detail}", param="prompt") from exc
        try:
            rendered = await asyncio.to_thread(render, found.template, variables)
        except RenderError as exc:
            raise GatewayError(400, f"prompt {ref['name']!r}: {exc}", param="prompt.variables") from exc
        return rendered, found.id
