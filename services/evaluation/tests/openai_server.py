"""A real HTTP server on a thread speaking OpenAI's ``/v1/chat/completions``: it answers from a mapping of the last
user message to a reply, and answers 500 to the messages it is told to fail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def openai_server(replies: dict[str, str], failing: set[str] = frozenset()) -> Iterator[tuple[str, list[dict]]]:
    """Serve on a free port; yields the base URL and the list of requests received (headers and bodies)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return None

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            received.append({"path": self.path, "authorization": self.headers.get("authorization"), "body": body})
            question = body["messages"][-1]["content"]
            if self.path != "/v1/chat/completions" or question in failing:
                self._send(500, {"error": "the model is down"})
                return
            answer = replies.get(question, "")
            self._send(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model") or "served",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": len(answer.split()), "total_tokens": 9},
                },
            )

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
