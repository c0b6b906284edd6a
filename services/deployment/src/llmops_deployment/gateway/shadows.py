"""Shadow deployments: each gets a copy of a request (never streamed), off the response path; its answer is recorded
(``shadow=true``, request id ``<id>.shadow-<deployment>``) and never returned. At most ``MAX_SHADOWS`` copies are in
flight: beyond that, copies are skipped rather than queued."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from llmops_deployment.gateway.errors import UpstreamError
from llmops_deployment.gateway.records import Records
from llmops_deployment.gateway.routing import Deployment
from llmops_deployment.gateway.shapes import output_of
from llmops_deployment.gateway.upstream import Upstream, backend_body, headers_of, url_of
from llmops_deployment.gateway.usage import Tokenizers, counted, usage_of

MAX_SHADOWS = 256


class Shadows:
    def __init__(
        self,
        upstream: Upstream,
        tokenizers: Tokenizers,
        records: Records,
        cost: Callable[[Deployment, int, int], float],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.upstream, self.tokenizers, self.records, self.cost, self._spawn = (
            upstream,
            tokenizers,
            records,
            cost,
            spawn,
        )
        self._shadows = 0

    def send(self, deployment: Deployment, body: dict, api: str, record: dict) -> None:
        if self._shadows >= MAX_SHADOWS:
            return
        self._shadows += 1
        self._spawn(self._call(deployment, {**body, "stream": False}, api, record))

    async def _call(self, deployment: Deployment, body: dict, api: str, record: dict) -> None:
        started = time.perf_counter()
        replica = deployment.replica()
        body.pop("stream_options", None)
        shadow = {
            **record,
            "request_id": f"{record['request_id']}.shadow-{deployment.id[:8]}",
            "shadow": True,
            "stream": False,
            "deployment_id": deployment.id,
            "model_version_id": deployment.model_version_id,
            "attempts": 1,
        }
        try:
            answer = await self.upstream.complete(
                url_of(replica, api),
                backend_body(body, deployment, replica, stream=False),
                headers_of(deployment, shadow["request_id"]),
            )
            if answer.status >= 400:
                raise UpstreamError(answer.status, answer.body[:2000].decode(errors="replace"), retryable=False)
            data = orjson.loads(answer.body)
            choice = (data.get("choices") or [{}])[0]
            output = output_of(api, choice, delta=False) or ""
            usage, source = await counted(
                self.tokenizers, deployment, usage_of(data.get("usage")), record.get("input_text") or "", output
            )
            elapsed = time.perf_counter() - started
            self.records.submit(
                (
                    "completed",
                    {
                        **shadow,
                        "latency_ms": elapsed * 1000,
                        "tokens_in": usage[0],
                        "tokens_out": usage[1],
                        "usage_source": source,
                        "cost": self.cost(deployment, *usage),
                        "output_text": output,
                        "finish_reason": choice.get("finish_reason"),
                    },
                )
            )
        except Exception as exc:  # a shadow's failure is recorded, never the client's
            status = exc.status if isinstance(exc, UpstreamError) and exc.status >= 400 else 502
            self.records.submit(
                (
                    "failed",
                    {
                        **shadow,
                        "latency_ms": (time.perf_counter() - started) * 1000,
                        "status": status,
                        "error": str(exc)[:2000] or "error",
                    },
                )
            )
        finally:
            self._shadows -= 1
