"""One inference request, start to end: who calls, what it asks (a prompt by label rendered in), which route and
deployments, limits and the budget's reservation, the backend call with its fallbacks (and shadow copies off the
response path), usage, the answer, then settlement and the record (both off the response path)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmops import tracing
from llmops.auth import AuthError
from llmops.bus.faults import is_transient
from llmops_deployment.gateway.admission import Admission
from llmops_deployment.gateway.auth import Authenticator, Caller
from llmops_deployment.gateway.budgets import Budgets
from llmops_deployment.gateway.errors import GatewayError, UpstreamError
from llmops_deployment.gateway.limits import RateLimiter
from llmops_deployment.gateway.metrics import Metrics
from llmops_deployment.gateway.openapi import check_request
from llmops_deployment.gateway.prompts import Prompts
from llmops_deployment.gateway.records import Records
from llmops_deployment.gateway.routing import Router
from llmops_deployment.gateway.shadows import Shadows
from llmops_deployment.gateway.shapes import input_text_of, output_of, request_id_of
from llmops_deployment.gateway.store import Store
from llmops_deployment.gateway.upstream import Upstream, backend_body, headers_of, url_of
from llmops_deployment.gateway.usage import Tokenizers, counted, rough_count, usage_of
from llmops_deployment.settings import DeploymentSettings

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Shadow copies in flight at most: beyond it a copy is skipped (shadows must never slow the served traffic).
DONE = b"data: [DONE]\n\n"


#: The response header naming the deployment that answered (canaries and fallbacks are visible to the client).
DEPLOYMENT_HEADER = "x-llmops-deployment"


class Handler:
    def __init__(
        self,
        settings: DeploymentSettings,
        *,
        auth: Authenticator,
        router: Router,
        upstream: Upstream,
        limiter: RateLimiter,
        budgets: Budgets,
        prompts: Prompts,
        tokenizers: Tokenizers,
        records: Records,
        metrics: Metrics,
        on_denied,
        store: Store,
    ) -> None:
        self.settings, self.auth, self.router, self.upstream = settings, auth, router, upstream
        self.limiter, self.budgets, self.prompts, self.tokenizers = limiter, budgets, prompts, tokenizers
        self.records, self.metrics, self.on_denied, self.store = records, metrics, on_denied, store
        self._background: set[asyncio.Task] = set()
        self.admission = Admission(settings, router, limiter, budgets, self._spawn)
        self.shadows = Shadows(upstream, tokenizers, records, self.admission.cost, self._spawn)

    # --- edges ---------------------------------------------------------------------------------------------------

    async def _caller(self, request: Request) -> Caller:
        header = request.headers.get("x-llmops-project")
        try:
            return await self.auth.authenticate(request.headers.get("authorization"), header)
        except AuthError as error:
            self.on_denied(request, error, getattr(error, "subject", None), header)
            headers = {"www-authenticate": "Bearer"} if error.status == 401 else None
            raise GatewayError(error.status, error.detail, code=error.reason, headers=headers) from error
        except Exception as exc:
            if is_transient(exc):  # the keys' database away: refused before the caller is known (nothing to record)
                raise unavailable(exc) from exc
            raise

    async def models(self, request: Request) -> Response:
        request.state.request_id = rid = request_id_of(request.headers.get("x-request-id"))
        try:
            caller = await self._caller(request)
        except GatewayError as error:
            return error.response(rid)
        data = [
            {
                "id": r["name"],
                "object": "model",
                "created": int(r["updated_at"].timestamp()),
                "owned_by": caller.project,
            }
            for r in await self.store.route_names(caller.project)
        ]
        return Response(
            orjson.dumps({"object": "list", "data": data}), headers={"x-request-id": rid}, media_type="application/json"
        )

    async def complete(self, request: Request, api: str) -> Response:
        started = time.perf_counter()
        request.state.request_id = rid = request_id_of(request.headers.get("x-request-id"))
        try:
            caller = await self._caller(request)
        except GatewayError as error:
            self.metrics.observe(time.perf_counter() - started, error=True)
            return error.response(rid)
        record: dict[str, Any] = {
            "request_id": rid,
            "project": caller.project,
            "route": "",
            "api": api,
            "key_id": caller.key_id,
            "user": None if caller.key_id else caller.subject,
        }
        if tracing.enabled():  # the request's record continues its trace (to monitoring and beyond)
            record["traceparent"] = tracing.current_traceparent()
        try:
            return await self._complete(request, api, caller, record, started)
        except GatewayError as error:
            self._failed(record, started, error.status, error.message)
            return error.response(rid)
        except Exception as exc:
            if not is_transient(exc):
                raise
            error = unavailable(exc)  # routes, budgets or prompts out of reach: a clean 503, recorded
            self._failed(record, started, error.status, error.message)
            return error.response(rid)

    # --- the request ---------------------------------------------------------------------------------------------

    async def _complete(self, request: Request, api: str, caller: Caller, record: dict, started: float) -> Response:
        settings = self.settings
        raw = await request.body()
        if len(raw) > settings.http_max_body_bytes:
            raise GatewayError(413, "the request body is too large")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(400, f"the body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise GatewayError(400, "the body must be a JSON object")
        check_request(api, body, settings.max_tokens_limit)
        model = body.get("model")
        if not isinstance(model, str) or not model or len(model) > 256:
            raise GatewayError(400, "model must name a route of the project", param="model")
        record["route"] = model
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise GatewayError(400, "stream must be a boolean", param="stream")
        record["stream"] = stream
        user = body.get("user")
        if user is not None:
            if not isinstance(user, str) or len(user) > 256:
                raise GatewayError(400, "user must be a string", param="user")
            record["user"] = user
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is None:
            max_tokens = body["max_tokens"] = settings.default_max_tokens
        elif not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise GatewayError(400, "max_tokens must be a positive integer", param="max_tokens")
        if max_tokens > settings.max_tokens_limit:
            raise GatewayError(
                400,
                f"max_tokens is at most {settings.max_tokens_limit}",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        prompt_ref = (
            body.pop("prompt", None)
            if api == "chat.completions"
            else (body.pop("prompt") if isinstance(body.get("prompt"), dict) else None)
        )
        if prompt_ref is not None:
            rendered, record["prompt_version_id"] = await self.prompts.render(caller.project, prompt_ref)
            if api == "completions":
                body["prompt"] = rendered if isinstance(rendered, str) else "\n".join(m["content"] for m in rendered)
            else:
                given = body.get("messages") or []
                prefix = [{"role": "user", "content": rendered}] if isinstance(rendered, str) else rendered
                body["messages"] = [*prefix, *given] if isinstance(given, list) else prefix
        input_text = input_text_of(api, body)
        record["input_text"] = input_text

        tokens_max = rough_count(input_text) + max_tokens
        route, found, candidates, reservation = await self.admission.fast(caller, record, model, tokens_max)
        if reservation is None:
            route = await self.router.route(caller.project, model)
            found, candidates = await self.admission.targets(route, record, caller, model, tokens_max)
            reservation = await self.admission.admit(caller, record, tokens_max, candidates[0])
        for shadow_id in route.shadows:
            if shadow_id in found and found[shadow_id].replicas:
                self.shadows.send(found[shadow_id], body, api, record)
        try:
            return await self._call(api, body, stream, candidates, record, reservation, caller, started)
        except BaseException:
            self.admission.settle(reservation, caller, 0, 0.0)
            raise

    async def _call(self, api, body, stream, candidates, record, reservation, caller, started) -> Response:
        rid = record["request_id"]
        last: UpstreamError | None = None
        for attempt, deployment in enumerate(candidates, 1):
            replica = deployment.replica()
            record.update(
                attempts=attempt,
                deployment_id=deployment.id,
                model_version_id=deployment.model_version_id,
                model_hash=replica.model_hash if replica.model_hash and _SHA256.match(replica.model_hash) else None,
            )
            url, headers = url_of(replica, api), headers_of(deployment, rid)
            payload = backend_body(body, deployment, replica, stream=stream)
            try:
                if stream:
                    opened = await self.upstream.open_stream(url, payload, headers)
                    if opened.error is None:
                        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                        events = self._relay(api, opened, deployment, record, reservation, caller, started, wants_usage)
                        return StreamingResponse(
                            events,
                            media_type="text/event-stream",
                            headers={
                                "x-request-id": rid,
                                DEPLOYMENT_HEADER: deployment.id,
                                "cache-control": "no-cache",
                            },
                        )
                    answer = opened.error
                else:
                    answer = await self.upstream.complete(url, payload, headers)
            except UpstreamError as exc:
                last = exc
                if exc.connection:
                    self.router.forget(deployment.id)
                continue
            if answer.status >= 400:  # the backend refused the request itself: its answer, as it gave it
                self.admission.settle(reservation, caller, 0, 0.0)
                self._failed(record, started, answer.status, answer.body[:2000].decode(errors="replace"))
                served = {"x-request-id": rid, DEPLOYMENT_HEADER: deployment.id}
                return Response(answer.body, answer.status, served, media_type="application/json")
            return await self._whole(api, answer.body, deployment, record, reservation, caller, started)
        raise GatewayError(last.status, last.message, code="backend_unavailable", type_="api_error")

    async def _whole(self, api, raw, deployment, record, reservation, caller, started) -> Response:
        try:
            data = orjson.loads(raw)
            choice = (data.get("choices") or [{}])[0]
        except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError) as exc:
            raise GatewayError(502, "the backend's answer is not an OpenAI answer", type_="api_error") from exc
        output = output_of(api, choice, delta=False) or ""
        given = usage_of(data.get("usage"))
        usage, source = await counted(self.tokenizers, deployment, given, record["input_text"], output)
        if given is None:
            data["usage"] = {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": usage[0] + usage[1],
            }
            raw = orjson.dumps(data)
        self._completed(
            record, started, deployment, reservation, caller, usage, source, output, choice.get("finish_reason"), None
        )
        served = {"x-request-id": record["request_id"], DEPLOYMENT_HEADER: deployment.id}
        return Response(raw, 200, served, media_type="application/json")

    async def _relay(self, api, opened, deployment, record, reservation, caller, started, wants_usage):
        usage, parts, finish, first_token, forwarded_usage = None, [], None, None, False
        finished = False
        try:
            async for event in opened.events():
                start = event.find(b"data:")
                if start < 0:
                    continue
                data = event[start + 5 :].strip()
                if data == b"[DONE]":
                    continue
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(chunk.get("error"), dict):
                    raise UpstreamError(502, str(chunk["error"].get("message", "backend error")), retryable=False)
                chunk_usage = usage_of(chunk.get("usage"))
                choices = chunk.get("choices") or []
                if chunk_usage is not None:
                    usage = chunk_usage
                    if not choices and not wants_usage:
                        continue  # a usage chunk the gateway asked for, not the client
                    forwarded_usage = True
                if choices:
                    choice = choices[0]
                    text = output_of(api, choice, delta=True)
                    if text:
                        parts.append(text)
                        if first_token is None:
                            first_token = time.perf_counter()
                    finish = choice.get("finish_reason") or finish
                yield b"data: " + data + b"\n\n"
            output = "".join(parts)
            usage, source = await counted(self.tokenizers, deployment, usage, record["input_text"], output)
            if wants_usage and not forwarded_usage:
                yield (
                    b"data: "
                    + orjson.dumps(
                        {
                            "id": f"chatcmpl-{record['request_id']}",
                            "object": "chat.completion.chunk" if api == "chat.completions" else "text_completion",
                            "created": int(time.time()),
                            "model": record["route"],
                            "choices": [],
                            "usage": {
                                "prompt_tokens": usage[0],
                                "completion_tokens": usage[1],
                                "total_tokens": usage[0] + usage[1],
                            },
                        }
                    )
                    + b"\n\n"
                )
            yield DONE
            finished = True
            self._completed(
                record, started, deployment, reservation, caller, usage, source, output, finish, first_token
            )
        except UpstreamError as exc:
            finished = True
            self.admission.settle(reservation, caller, usage[0] if usage else 0, 0.0)
            self._failed(record, started, exc.status, exc.message)
            error = {"message": exc.message, "type": "api_error", "param": None, "code": "backend_failed"}
            yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        finally:
            if not finished:  # the client went away mid-stream
                self.admission.settle(reservation, caller, 0, 0.0)
                self._failed(record, started, 499, "the client closed the stream")

    # --- off the response path -----------------------------------------------------------------------------------

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _completed(
        self, record, started, deployment, reservation, caller, usage, source, output, finish, first_token
    ) -> None:
        tokens_in, tokens_out = usage
        cost = self.admission.cost(deployment, tokens_in, tokens_out)
        self.admission.settle(reservation, caller, tokens_in + tokens_out, cost)
        now = time.perf_counter()
        self.metrics.observe(now - started, error=False)
        self.records.submit(
            (
                "completed",
                {
                    **record,
                    "latency_ms": (now - started) * 1000,
                    "tokens_in": tokens_in,
                    "tokens_out": tokens_out,
                    "usage_source": source,
                    "cost": cost,
                    "finish_reason": finish,
                    "output_text": output,
                    "time_to_first_token_ms": (first_token - started) * 1000 if first_token else None,
                },
            )
        )

    def _failed(self, record: dict, started: float, status: int, error: str) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.observe(elapsed, error=True)
        if not record.get("route"):
            record = {**record, "route": "-"}
        self.records.submit(
            ("failed", {**record, "latency_ms": elapsed * 1000, "status": status, "error": error[:2000] or "error"})
        )


def unavailable(exc: Exception) -> GatewayError:
    """What an infrastructure outage (the gateway's database restarting, say) answers: 503, try again shortly."""
    return GatewayError(
        503,
        f"the gateway cannot reach what it needs to serve this request ({type(exc).__name__}); try again shortly",
        code="gateway_unavailable",
        headers={"retry-after": "1"},
    )
