"""Calls to the backends' OpenAI-compatible routes over one pooled HTTP client: ``httpcore``'s connection pool, the
transport under ``httpx``, used directly (it saves httpx's request and response models: p50 of one call to the stub
1.0-1.4 ms against 1.4-2.0 ms through ``httpx.AsyncClient``, same probe).

Why not ``huggingface_hub.AsyncInferenceClient`` (what the issue named), measured against the same stub backend
(``make bench-gateway`` prints the probe; 300 sequential chat calls, median of three rounds, 2 cores, loaded):
- it refuses every call while ``HF_HUB_OFFLINE=1`` is set (``OfflineModeIsEnabled``, even to a local URL), and the
  platform's ML processes set it;
- it has no ``/v1/completions`` call (its ``text_generation`` speaks TGI's own route);
- it costs more per call: p50 1.57-1.91 ms against 1.23-1.34 ms for httpx's pooled POST + orjson parse
  (+0.3 to +0.6 ms, a quarter of the 2 ms budget; httpcore's pool alone is cheaper still), since it builds
  typed dataclasses from every answer and chunk that the gateway would turn back into JSON.
So the data path uses the pooled client: it passes the backend's bytes through and reads only ``usage``, text and
``finish_reason`` from them.

Timeouts: connect (``connect_timeout_seconds``), first token or whole answer when not streaming, also the longest
silence between chunks (``first_token_timeout_seconds``), and total (``total_timeout_seconds``). A backend that
dies mid-stream ends the client's stream with an error event; nothing waits forever.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpcore
import orjson

from llmops import tracing
from llmops_deployment.gateway.errors import UpstreamError
from llmops_deployment.gateway.routing import Deployment, Replica
from llmops_deployment.settings import DeploymentSettings

#: What a backend kind answers 422 to (``transformers serve``); the gateway keeps ``user`` for its own use.
UNSUPPORTED: dict[str, frozenset[str]] = {
    "transformers": frozenset({"stream_options", "user", "response_format", "n"}),
}
#: Backends that take ``stream_options: {include_usage: true}``.
STREAM_USAGE = frozenset({"vllm", "tgi", "external"})
#: Fields the gateway reads itself and never forwards.
GATEWAY_FIELDS = frozenset({"prompt_ref"})

PATHS = {"chat.completions": "/chat/completions", "completions": "/completions"}


def backend_body(body: dict, deployment: Deployment, replica: Replica, *, stream: bool) -> bytes:
    """The request as this backend takes it: its model name, without what it refuses, asking for usage in streams."""
    unsupported = UNSUPPORTED.get(deployment.backend, frozenset())
    out = {k: v for k, v in body.items() if k not in unsupported and k not in GATEWAY_FIELDS}
    out["model"] = replica.served_model
    if stream and deployment.backend in STREAM_USAGE:
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(out)


def url_of(replica: Replica, api: str) -> str:
    base = replica.endpoint.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + PATHS[api]


def headers_of(deployment: Deployment, request_id: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "x-request-id": request_id}
    if tracing.enabled():  # the backend (vLLM, TGI and transformers serve can trace) continues the request's trace
        tracing.inject(headers)
    if deployment.secret_ref:
        # An external endpoint's key, from the gateway's environment (the key never travels in events or rows).
        secret = os.environ.get(deployment.secret_ref)
        if secret:
            headers["authorization"] = f"Bearer {secret}"
    return headers


@dataclass
class Answer:
    status: int
    body: bytes


_ERRORS = (httpcore.NetworkError, httpcore.ProtocolError)


class Upstream:
    def __init__(self, settings: DeploymentSettings) -> None:
        self.settings = settings
        # Few idle connections kept: the pool looks at each of them on every request (with a syscall), so hundreds
        # left over from a burst made every later request slower (a profile of the benchmark found it).
        self.pool = httpcore.AsyncConnectionPool(max_connections=512, max_keepalive_connections=32, keepalive_expiry=30)
        self.timeouts = {
            "connect": settings.connect_timeout_seconds,
            "read": settings.first_token_timeout_seconds,
            "write": settings.connect_timeout_seconds,
            "pool": settings.connect_timeout_seconds,
        }

    async def aclose(self) -> None:
        await self.pool.aclose()

    def _request(self, url: str, payload: bytes, headers: dict[str, str]) -> httpcore.Request:
        # httpcore sends what it is given: the host and length headers httpx would add are the caller's.
        fields = [(b"host", url.split("/", 3)[2].encode()), (b"content-length", str(len(payload)).encode())]
        fields += [(k.encode(), v.encode()) for k, v in headers.items()]
        return httpcore.Request("POST", url, headers=fields, content=payload, extensions={"timeout": self.timeouts})

    async def complete(self, url: str, payload: bytes, headers: dict[str, str]) -> Answer:
        """A whole answer; :class:`UpstreamError` (retryable) on timeout, connection error or 5xx."""
        try:
            async with asyncio.timeout(self.settings.total_timeout_seconds):
                response = await self.pool.handle_async_request(self._request(url, payload, headers))
                try:
                    body = await response.aread()
                finally:
                    await response.aclose()
        except (TimeoutError, httpcore.TimeoutException) as exc:
            raise UpstreamError(504, f"the backend timed out ({type(exc).__name__})", retryable=True) from exc
        except httpcore.ConnectError as exc:
            raise UpstreamError(
                502, f"the backend refused the connection: {exc}", retryable=True, connection=True
            ) from exc
        except _ERRORS as exc:
            raise UpstreamError(502, f"the backend failed: {type(exc).__name__}", retryable=True) from exc
        if response.status >= 500:
            raise UpstreamError(502, f"the backend answered {response.status}", retryable=True)
        return Answer(response.status, body)

    async def open_stream(self, url: str, payload: bytes, headers: dict[str, str]) -> Stream:
        """A stream whose first bytes have arrived (so a failure so far may still fall back); or an error answer."""
        response = None
        try:
            async with asyncio.timeout(
                self.settings.first_token_timeout_seconds + self.settings.connect_timeout_seconds
            ):
                response = await self.pool.handle_async_request(self._request(url, payload, headers))
                if response.status >= 400:
                    body = await response.aread()
                    await response.aclose()
                    if response.status >= 500:
                        raise UpstreamError(502, f"the backend answered {response.status}", retryable=True)
                    return Stream(None, None, b"", Answer(response.status, body), 0)
                chunks = response.aiter_stream()
                first = await anext(chunks)
        except UpstreamError:
            raise
        except (TimeoutError, httpcore.TimeoutException) as exc:
            await _close(response)
            raise UpstreamError(504, f"the backend timed out ({type(exc).__name__})", retryable=True) from exc
        except httpcore.ConnectError as exc:
            raise UpstreamError(
                502, f"the backend refused the connection: {exc}", retryable=True, connection=True
            ) from exc
        except (*_ERRORS, StopAsyncIteration) as exc:
            await _close(response)
            raise UpstreamError(502, f"the backend failed: {type(exc).__name__}", retryable=True) from exc
        deadline = time.monotonic() + self.settings.total_timeout_seconds
        return Stream(response, chunks, first, None, deadline)


async def _close(response: httpcore.Response | None) -> None:
    if response is not None:
        await response.aclose()


@dataclass
class Stream:
    response: httpcore.Response | None
    chunks: AsyncIterator[bytes] | None
    first: bytes
    error: Answer | None  # a 4xx the backend answered instead of a stream
    deadline: float

    async def events(self) -> AsyncIterator[bytes]:
        """The stream's SSE events (each without its blank line); :class:`UpstreamError` when the backend dies, stalls
        or passes the total timeout."""
        buffer = b""
        try:
            data = self.first
            while True:
                buffer += data.replace(b"\r\n", b"\n") if b"\r" in data else data
                while (cut := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[:cut], buffer[cut + 2 :]
                    if event:
                        yield event
                if time.monotonic() > self.deadline:
                    raise UpstreamError(504, "the backend passed the total timeout", retryable=False)
                try:
                    data = await anext(self.chunks)
                except StopAsyncIteration:
                    break
            if buffer.strip():
                yield buffer.strip()
        except httpcore.TimeoutException as exc:
            raise UpstreamError(504, "the backend stopped sending (timeout)", retryable=False) from exc
        except _ERRORS as exc:
            raise UpstreamError(502, f"the backend failed mid-stream: {type(exc).__name__}", retryable=False) from exc
        finally:
            await _close(self.response)
