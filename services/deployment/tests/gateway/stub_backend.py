"""A stub OpenAI-compatible backend, run as its own process (``python stub_backend.py --port P --name N --mode M``):
``/v1/chat/completions`` and ``/v1/completions``, streaming and not, answering ``hello from <name>``.

Modes (comma-separated): ``usage-final`` (usage on the last chunk that still has choices; the default),
``usage-chunk`` (a usage-only chunk when asked with stream_options), ``no-usage``, ``fail`` (500 to everything),
``die`` (the process exits in the middle of a stream), ``strict`` (422 to what ``transformers serve`` refuses:
stream_options, user, response_format, n), ``delay=<seconds>`` before answering. ``GET /stats`` counts requests and
shows the last body. Raw ASGI with orjson: the benchmark's direct baseline must be cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import orjson

WORDS = ["hello", " from", " {name}"]
STRICT = ("stream_options", "user", "response_format", "n")


class Stub:
    def __init__(self, name: str, modes: set[str], delay: float) -> None:
        self.name, self.modes, self.delay = name, modes, delay
        self.requests = 0
        self.last: dict | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if scope["method"] == "GET":
            return await _json(send, 200, {"requests": self.requests, "last": self.last, "name": self.name})
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = orjson.loads(raw)
        self.requests += 1
        self.last = body
        if self.delay:
            await asyncio.sleep(self.delay)
        if "fail" in self.modes:
            return await _json(send, 500, {"error": {"message": "the model is down"}})
        if "strict" in self.modes and any(k in body for k in STRICT):
            return await _json(send, 422, {"detail": f"unsupported: {[k for k in STRICT if k in body]}"})
        chat = path.endswith("/chat/completions")
        words = [w.format(name=self.name) for w in WORDS]
        usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
        if not body.get("stream"):
            choice = {"index": 0, "finish_reason": "stop"}
            if chat:
                choice["message"] = {"role": "assistant", "content": "".join(words)}
            else:
                choice["text"] = "".join(words)
            answer = {
                "id": "cmpl-stub",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [choice],
            }
            if "no-usage" not in self.modes:
                answer["usage"] = usage
            return await _json(send, 200, answer)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        for i, word in enumerate(words):
            last = i == len(words) - 1
            choice = {"index": 0, "finish_reason": "stop" if last else None}
            if chat:
                choice["delta"] = {"content": word}
            else:
                choice["text"] = word
            chunk = {
                "id": "cmpl-stub",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [choice],
            }
            if last and "usage-final" in self.modes:
                chunk["usage"] = usage
            await send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n", "more_body": True}
            )
            if i == 0 and "die" in self.modes:
                await asyncio.sleep(0.05)
                os._exit(1)
        if include and "usage-chunk" in self.modes:
            chunk = {
                "id": "cmpl-stub",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body.get("model"),
                "choices": [],
                "usage": usage,
            }
            await send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n", "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _json(send, status: int, body: dict) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


def stub(name: str, mode: str) -> Stub:
    modes = set(mode.split(","))
    delay = next((float(m.split("=", 1)[1]) for m in modes if m.startswith("delay=")), 0.0)
    return Stub(name, modes, delay)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="stub")
    parser.add_argument("--mode", default="usage-final")
    args = parser.parse_args()
    uvicorn.run(stub(args.name, args.mode), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
