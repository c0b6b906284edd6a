"""The prompts client applications embed: fetch a prompt version by label once, render it locally, every request.

``await client.get("support-answer", label="production")`` asks the prompts service only when its cached copy is
older than the TTL (``LLMOPS_CLIENT_PROMPTS_CACHE_TTL_SECONDS``), and then with ``If-None-Match`` so an unchanged
prompt costs a 304 and no body. ``revalidate=True`` revalidates on every ``get`` (a label move is seen at once, at
the price of a round trip). ``render`` uses :mod:`llmops.prompts`, the renderer the platform's services use.
:class:`PromptClient` is for asyncio applications, :class:`SyncPromptClient` for the others. Both take a ``clock``
(seconds, default ``time.monotonic``) that the TTL is measured on, so a test can move time instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from llmops.prompts import PromptTemplate, render
from llmops.settings import ClientSettings


class PromptClientError(RuntimeError):
    """The prompts service refused or failed a request; ``status`` and ``detail`` come from its problem document."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class PromptVersion:
    """A prompt version as the client holds it."""

    name: str
    version: int
    template: PromptTemplate
    parameters: dict[str, Any]
    hash: str
    etag: str | None
    id: str | None = None  # the prompts service's version id (what inference records name)


@dataclass
class _Cached:
    value: PromptVersion
    fetched_at: float


class _Cache:
    """The cache both clients share: what is fresh, what to revalidate, and how to read the service's answer."""

    def __init__(self, project: str, ttl: float, revalidate: bool, clock: Callable[[], float]) -> None:
        self.project, self.ttl, self.revalidate, self.clock = project, ttl, revalidate, clock
        self.entries: dict[tuple[str, str | None, int | None], _Cached] = {}

    def fresh(self, key) -> PromptVersion | None:
        cached = self.entries.get(key)
        if cached is not None and not self.revalidate and self.clock() - cached.fetched_at < self.ttl:
            return cached.value
        return None

    def request(self, key) -> tuple[str, dict[str, Any], dict[str, str]]:
        name, label, version = key
        params = {k: v for k, v in (("label", label), ("version", version)) if v is not None}
        cached = self.entries.get(key)
        headers = {"if-none-match": cached.value.etag} if cached is not None and cached.value.etag else {}
        return f"/projects/{self.project}/prompts/{name}/resolve", params, headers

    def answer(self, key, response: httpx.Response) -> PromptVersion:
        cached = self.entries.get(key)
        if response.status_code == 304 and cached is not None:
            cached.fetched_at = self.clock()
            return cached.value
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise PromptClientError(response.status_code, detail)
        body = response.json()
        value = PromptVersion(
            name=key[0],
            version=body["version"],
            template=PromptTemplate.model_validate(body["template"]),
            parameters=body["parameters"],
            hash=body["hash"],
            etag=response.headers.get("etag"),
            id=body.get("id"),
        )
        self.entries[key] = _Cached(value, self.clock())
        return value


def _connection(base_url: str | None, token: str | None, ttl_seconds: float | None) -> tuple[str, dict, float]:
    settings = ClientSettings()
    token = token or (settings.token.get_secret_value() if settings.token else None)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    ttl = settings.prompts_cache_ttl_seconds if ttl_seconds is None else ttl_seconds
    return base_url or settings.prompts_url, headers, ttl


class PromptClient:
    """An async client of one project's prompts with a local cache and the shared renderer."""

    def __init__(
        self,
        project: str,
        *,
        base_url: str | None = None,
        token: str | None = None,
        ttl_seconds: float | None = None,
        revalidate: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        base_url, headers, ttl = _connection(base_url, token, ttl_seconds)
        self.project = project
        self.requests = 0  # requests made to the service (observability, and what the cache saves)
        self._cache = _Cache(project, ttl, revalidate, clock)
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, transport=transport, timeout=10)

    async def get(self, name: str, *, label: str | None = None, version: int | None = None) -> PromptVersion:
        """The version ``label`` points at (or ``version``, or the latest), from the cache when fresh."""
        key = (name, label, version)
        if (value := self._cache.fresh(key)) is not None:
            return value
        path, params, headers = self._cache.request(key)
        self.requests += 1
        return self._cache.answer(key, await self._http.get(path, params=params, headers=headers))

    async def render(
        self, name: str, variables: dict[str, Any], *, label: str | None = None, version: int | None = None
    ) -> str | list[dict[str, str]]:
        """Render locally with the platform's renderer (raises :class:`llmops.prompts.RenderError`)."""
        return render((await self.get(name, label=label, version=version)).template, variables)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> PromptClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncPromptClient:
    """The same client for synchronous applications (same cache rules, same renderer)."""

    def __init__(
        self,
        project: str,
        *,
        base_url: str | None = None,
        token: str | None = None,
        ttl_seconds: float | None = None,
        revalidate: bool = False,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        base_url, headers, ttl = _connection(base_url, token, ttl_seconds)
        self.project = project
        self.requests = 0
        self._cache = _Cache(project, ttl, revalidate, clock)
        self._http = httpx.Client(base_url=base_url, headers=headers, transport=transport, timeout=10)

    def get(self, name: str, *, label: str | None = None, version: int | None = None) -> PromptVersion:
        """The version ``label`` points at (or ``version``, or the latest), from the cache when fresh."""
        key = (name, label, version)
        if (value := self._cache.fresh(key)) is not None:
            return value
        path, params, headers = self._cache.request(key)
        self.requests += 1
        return self._cache.answer(key, self._http.get(path, params=params, headers=headers))

    def render(
        self, name: str, variables: dict[str, Any], *, label: str | None = None, version: int | None = None
    ) -> str | list[dict[str, str]]:
        """Render locally with the platform's renderer (raises :class:`llmops.prompts.RenderError`)."""
        return render(self.get(name, label=label, version=version).template, variables)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncPromptClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
