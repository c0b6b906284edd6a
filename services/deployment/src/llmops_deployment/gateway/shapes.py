"""The OpenAI request and answer shapes the gateway reads: the request id it keeps, the text a request sends, the
text an answer (or a stream chunk) carries."""

from __future__ import annotations

import re

from llmops_deployment.gateway.errors import GatewayError
from llmops_schemas.envelope import new_event_id

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def request_id_of(given: str | None) -> str:
    return given if given and _REQUEST_ID.match(given) else new_event_id()


def input_text_of(api: str, body: dict) -> str:
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


def output_of(api: str, choice: dict, *, delta: bool) -> str | None:
    if api == "completions":
        return choice.get("text")
    return (choice.get("delta" if delta else "message") or {}).get("content")
