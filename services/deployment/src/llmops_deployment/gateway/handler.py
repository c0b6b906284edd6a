"""One inference request, start to end: who calls, what it asks (a prompt by label rendered in), which route and
deployments, limits and the budget's reservation, the backend call with its fallbacks (and shadow copies off the
response path), usage, the answer, then settlement and the record (both off the response path)."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmops.auth import AuthError
from llmops_deployment.gateway.auth import Authenticator, Caller
from llmops_deployment.gateway.budgets import BudgetExceeded, Budgets, Reservation
from llmops_deployment.gateway.errors import GatewayError, UpstreamError
from llmops_deployment.gateway.limits import RateLimited, RateLimiter
from llmops_deployment.gateway.metrics import Metrics
from llmops_deployment.gateway.prompts import Prompts
from llmops_deployment.gateway.records import Records
from llmops_deployment.gateway.routing import Deployment, Router
from llmops_deployment.gateway.store import Store
from llmops_deployment.gateway.upstream import Upstream, backend_body, headers_of, url_of
from llmops_deployment.gateway.usage import Tokenizers, rough_count, usage_of
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas.envelope import new_event_id

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Shadow copies in flight at most: beyond it a copy is skipped (shadows must never slow the served traffic).
MAX_SHADOWS = 256
DONE = b"data: [DONE]\n\n"


#: The response header naming the deployment that answered (canaries and fallbacks are visible to the client).
DEPLOYMENT_HEADER = "x-llmops-deployment"


def _request_id(given: str | None) -> str:
    return given if given and _REQUEST_ID.match(given) else new_event_id()


def _input_text(api: str, body: dict) -> str:
    if api == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            return "\n".join(prompt)
        raise GatewayError(400, "prompt must be a string or a list of strings", param="prompt")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise GatewayError(400, "messages must be a non-empty list of messages", param="messages")
    texts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n".join(texts)


def _output(api: str, choice: dict, *, delta: bool) -> str | None:
    if api == "completions":
        return choice.get("text")
    return (choice.get("delta" if delta else "message") or {}).get("content")


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
        self._shadows = 0

    # --- edges ---------------------------------------------------------------------------------------------------

    async def _caller(self, request: Request) -> Caller:
        header = request.headers.get("x-llmops-project")
        try:
            return await self.auth.authenticate(request.headers.get("authorization"), header)
        except AuthError as error:
            self.on_denied(request, error, getattr(error, "subject", None), header)
            headers = {"www-authenticate": "Bearer"} if error.status == 401 else None
            raise GatewayError(error.status, error.detail, code=error.reason, headers=headers) from error

    async def models(self, request: Request) -> Response:
        request.state.request_id = rid = _request_id(request.headers.get("x-request-id"))
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
        request.state.request_id = rid = _request_id(request.headers.get("x-request-id"))
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
        try:
            return await self._complete(request, api, caller, record, started)
        except GatewayError as error:
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
        input_text = _input_text(api, body)
        record["input_text"] = input_text

        tokens_max = rough_count(input_text) + max_tokens
        route, found, candidates, reservation = await self._fast_admit(caller, record, model, tokens_max)
        if reservation is None:
            route = await self.router.route(caller.project, model)
            found, candidates = await self._targets(route, record, caller, model, tokens_max)
            reservation = await self._admit(caller, record, tokens_max, candidates[0])
        for shadow_id in route.shadows:
            if shadow_id in found and found[shadow_id].replicas:
                self._shadow(found[shadow_id], body, api, record)
        try:
            return await self._call(api, body, stream, candidates, record, reservation, caller, started)
        except BaseException:
            self._settle(reservation, caller, 0, 0.0)
            raise

    async def _targets(self, route, record: dict, caller: Caller, model: str, tokens: int):
        """The route's deployments (found) and those to try in order (candidates), or the request's 503/400."""
        plan = route.plan(record["user"] or caller.subject)
        found = await self.router.deployments([*plan, *route.shadows])
        candidates = [found[d] for d in plan if d in found and found[d].replicas]
        if not candidates:
            raise GatewayError(
                503, f"no deployment of {model!r} is ready", code="no_ready_deployment", type_="api_error"
            )
        context = candidates[0].context_length
        if context is not None and tokens > context:
            raise GatewayError(
                400,
                f"the prompt and max_tokens pass the model's context of {context} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return found, candidates

    async def _fast_admit(self, caller: Caller, record: dict, model: str, tokens: int):
        """With the route cached: the limits, then its version check and the budget's reservation concurrently (one
        round trip's wait instead of two). The reservation counts only when the version is still the cached one;
        otherwise it is released and the caller takes the ordinary path (``reservation`` None)."""
        cached = self.router.cached(caller.project, model)
        if cached is None:
            return None, None, None, None
        try:
            found, candidates = await self._targets(cached, record, caller, model, tokens)
        except GatewayError:
            return None, None, None, None  # the route may have changed: the ordinary path says
        counted_at = await self._limit(caller, tokens)
        reserve = self.budgets.reserve(
            project=caller.project,
            user=record["user"],
            key_id=caller.key_id,
            tokens=tokens,
            cost=self._cost(candidates[0], tokens, 0),
        )
        route, reserved = await asyncio.gather(
            self.router.route(caller.project, model), reserve, return_exceptions=True
        )
        # The same version (another request may have cached an equal copy meanwhile): the reservation stands.
        if not isinstance(route, BaseException) and route.version == cached.version and route.id == cached.id:
            if isinstance(reserved, BaseException):
                self._refused(caller, counted_at, tokens, reserved)
            return route, found, candidates, replace(reserved, counted_at=counted_at)
        if isinstance(reserved, Reservation):  # held for a route that changed or is gone: released before anything
            await self.budgets.settle(reserved, tokens=0, cost=0.0)  # else, never counted twice (a rare path)
        if isinstance(route, BaseException):
            self.limiter.record_tokens(
                project=caller.project, key_id=caller.key_id, at=counted_at, admitted=tokens, used=0
            )
            raise route
        try:
            found, candidates = await self._targets(route, record, caller, model, tokens)
        except GatewayError:
            self.limiter.record_tokens(
                project=caller.project, key_id=caller.key_id, at=counted_at, admitted=tokens, used=0
            )
            raise
        return route, found, candidates, await self._reserve(caller, record, tokens, candidates[0], counted_at)

    async def _admit(self, caller: Caller, record: dict, tokens: int, deployment: Deployment) -> Reservation:
        counted_at = await self._limit(caller, tokens)
        return await self._reserve(caller, record, tokens, deployment, counted_at)

    async def _limit(self, caller: Caller, tokens: int) -> int:
        project_rpm, project_tpm = await self.budgets.project_limits(caller.project)
        try:
            counted_at = self.limiter.admit(
                project=caller.project,
                key_id=caller.key_id,
                key_rpm=caller.key_rpm,
                key_tpm=caller.key_tpm,
                project_rpm=project_rpm,
                project_tpm=project_tpm,
                tokens=tokens,
            )
        except RateLimited as exc:
            raise GatewayError(
                429,
                f"rate limit of the {exc.scope} reached",
                code="rate_limit_exceeded",
                headers={"retry-after": str(max(1, math.ceil(exc.retry_after)))},
            ) from exc
        return counted_at

    async def _reserve(
        self, caller: Caller, record: dict, tokens: int, deployment: Deployment, counted_at: int
    ) -> Reservation:
        try:
            reservation = await self.budgets.reserve(
                project=caller.project,
                user=record["user"],
                key_id=caller.key_id,
                tokens=tokens,
                cost=self._cost(deployment, tokens, 0),
            )
        except BudgetExceeded as exc:
            self._refused(caller, counted_at, tokens, exc)
        return replace(reservation, counted_at=counted_at)

    def _refused(self, caller: Caller, counted_at: int, tokens: int, exc: BaseException):
        """A reservation refused (or failed): the limiter's tokens are given back, and the budget's 429 raised."""
        self.limiter.record_tokens(project=caller.project, key_id=caller.key_id, at=counted_at, admitted=tokens, used=0)
        if not isinstance(exc, BudgetExceeded):
            raise exc
        headers = {"retry-after": str(max(1, math.ceil(exc.retry_after)))} if exc.retry_after else None
        raise GatewayError(
            429,
            f"the {exc.scope} budget of {exc.subject} is spent",
            code="budget_exceeded",
            type_="insufficient_quota",
            headers=headers,
        ) from exc

    def _cost(self, deployment: Deployment, tokens_in: int, tokens_out: int) -> float:
        price = self.settings.prices.get(deployment.model_name or "", self.settings.default_price)
        return tokens_in / 1000 * price.input_per_1k + tokens_out / 1000 * price.output_per_1k

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
                self._settle(reservation, caller, 0, 0.0)
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
        output = _output(api, choice, delta=False) or ""
        usage, source = usage_of(data.get("usage")), "backend"
        if usage is None:
            count = await self.tokenizers.counter(deployment)
            usage, source = (count(record["input_text"]), count(output)), "tokenizer"
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
                    text = _output(api, choice, delta=True)
                    if text:
                        parts.append(text)
                        if first_token is None:
                            first_token = time.perf_counter()
                    finish = choice.get("finish_reason") or finish
                yield b"data: " + data + b"\n\n"
            output = "".join(parts)
            source = "backend"
            if usage is None:
                count = await self.tokenizers.counter(deployment)
                usage, source = (count(record["input_text"]), count(output)), "tokenizer"
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
            self._settle(reservation, caller, usage[0] if usage else 0, 0.0)
            self._failed(record, started, exc.status, exc.message)
            error = {"message": exc.message, "type": "api_error", "param": None, "code": "backend_failed"}
            yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        finally:
            if not finished:  # the client went away mid-stream
                self._settle(reservation, caller, 0, 0.0)
                self._failed(record, started, 499, "the client closed the stream")

    # --- off the response path -----------------------------------------------------------------------------------

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _settle(self, reservation: Reservation, caller: Caller, tokens: int, cost: float) -> None:
        self.limiter.record_tokens(
            project=caller.project,
            key_id=caller.key_id,
            at=reservation.counted_at,
            admitted=reservation.tokens,
            used=tokens,
        )
        self._spawn(self.budgets.settle(reservation, tokens=tokens, cost=cost))

    def _completed(
        self, record, started, deployment, reservation, caller, usage, source, output, finish, first_token
    ) -> None:
        tokens_in, tokens_out = usage
        cost = self._cost(deployment, tokens_in, tokens_out)
        self._settle(reservation, caller, tokens_in + tokens_out, cost)
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

    def _shadow(self, deployment: Deployment, body: dict, api: str, record: dict) -> None:
        if self._shadows >= MAX_SHADOWS:
            return
        self._shadows += 1
        self._spawn(self._shadow_call(deployment, {**body, "stream": False}, api, record))

    async def _shadow_call(self, deployment: Deployment, body: dict, api: str, record: dict) -> None:
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
            output = _output(api, choice, delta=False) or ""
            usage, source = usage_of(data.get("usage")), "backend"
            if usage is None:
                count = await self.tokenizers.counter(deployment)
                usage, source = (count(record.get("input_text") or ""), count(output)), "tokenizer"
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
                        "cost": self._cost(deployment, *usage),
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
