"""``llmops chat ROUTE``: a conversation in the terminal through the inference gateway (``LLMOPS_CLIENT_GATEWAY_URL``),
its answers printed as they stream in.

Each line read is a user message; the conversation so far goes with it (the gateway keeps none). ``/exit`` or the end
of input ends the chat. A failed turn is printed on stderr and left out of the conversation; the command then exits
1 when the chat ends.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from llmops.cli_kit import key_values
from llmops.client import err, fail
from llmops.settings import ClientSettings

#: Connecting is quick; a model may think for a while before its first token.
TIMEOUT = httpx.Timeout(30.0, read=600.0)
EXIT = "/exit"

chat_app = typer.Typer(
    help="Chat with a route through the gateway: type a message per line; /exit or end of input quits.",
    invoke_without_command=True,
    no_args_is_help=True,
    subcommand_metavar="",
    # Options after the route (`llmops chat ROUTE --key K`), as in every other command.
    context_settings={"allow_interspersed_args": True},
)


class TurnFailed(Exception):
    """A turn of the conversation failed: the message says why."""


def error_text(response: httpx.Response) -> str:
    """The gateway's error (OpenAI's ``{"error": {...}}`` or a problem document) in one line, with the status."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.reason_phrase}: {response.text[:300]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{response.status_code} {error.get('message') or error.get('type') or 'error'}"
    if isinstance(body, dict) and ("detail" in body or "title" in body):
        return f"{response.status_code} {body.get('detail') or body.get('title')}"
    return f"{response.status_code} {response.reason_phrase}"


def stream_answer(client: httpx.Client, body: dict[str, Any]) -> str:
    """Send one turn and print the answer's tokens as they come; the whole answer. Raises TurnFailed."""
    parts: list[str] = []
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.is_error:
                response.read()
                raise TurnFailed(error_text(response))
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # SSE comments, event names, blank separators
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    raise TurnFailed(f"the gateway sent an event that is not JSON: {data[:200]}") from None
                if isinstance(chunk, dict) and chunk.get("error"):
                    error = chunk["error"]
                    message = error.get("message") if isinstance(error, dict) else str(error)
                    raise TurnFailed(f"the answer broke off: {message}")
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        parts.append(piece)
                        sys.stdout.write(piece)
                        sys.stdout.flush()
    except httpx.TimeoutException as exc:
        raise TurnFailed(f"the gateway did not answer in time ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise TurnFailed(f"cannot reach the gateway at {client.base_url}: {exc}") from None
    finally:
        if parts:
            sys.stdout.write("\n")
            sys.stdout.flush()
    return "".join(parts)


def prompt_reference(name: str | None, label: str | None, version: int | None, variables: list[str]) -> dict | None:
    """The ``prompt`` the gateway renders before the conversation, or None; usage errors end the command (2)."""
    if name is None:
        if label or version or variables:
            fail("--label, --version and --var go with --prompt", code=2)
        return None
    if label is not None and version is not None:
        fail("--label or --version, not both", code=2)
    try:
        values = key_values(variables)
    except ValueError as exc:
        fail(f"--var {exc}: expected key=value", code=2)
    reference: dict[str, Any] = {"name": name, "variables": values}
    if version is not None:
        reference["version"] = version
    else:
        reference["label"] = label or "production"
    return reference


@chat_app.callback()
def chat(
    route: Annotated[str, typer.Argument(help="the route (the model name) to chat with")],
    key: Annotated[str | None, typer.Option("--key", help="an API key (llmk_...) to call with")] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="a platform token (default: LLMOPS_CLIENT_TOKEN)")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="the project, when the token names several")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="a system message to start with")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="a prompt the gateway renders first")] = None,
    label: Annotated[str | None, typer.Option("--label", help="the prompt's label (default production)")] = None,
    version: Annotated[int | None, typer.Option("--version", min=1, help="the prompt's version")] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help="a prompt variable, key=value; repeat")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="most tokens per answer")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0, help="sampling temperature")] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="the gateway's base URL (default: LLMOPS_CLIENT_GATEWAY_URL)")
    ] = None,
) -> None:
    """Chat with ROUTE through the gateway: each line you type is a message; the answer streams back."""
    settings = ClientSettings()
    bearer = key or token or (settings.token.get_secret_value() if settings.token else None)
    if not bearer:
        fail("no credentials: pass --key (an API key), --token, or set LLMOPS_CLIENT_TOKEN", code=2)
    reference = prompt_reference(prompt, label, version, var or [])
    extras: dict[str, Any] = {"prompt": reference} if reference else {}
    extras |= {k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature)) if v is not None}
    headers = {"authorization": f"Bearer {bearer}"} | ({"x-llmops-project": project} if project else {})
    base_url = (url or settings.gateway_url).rstrip("/").removesuffix("/v1")
    conversation: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    interactive = sys.stdin.isatty()
    failed = False
    if interactive:
        err.print(f"chat with {escape(route)} at {escape(base_url)}; {EXIT} or Ctrl-D to quit")
    with httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT) as client:
        while True:
            if interactive:
                err.print("[bold]>[/bold] ", end="")
            line = sys.stdin.readline()
            if not line or line.strip() == EXIT:
                break
            if not line.strip():
                continue
            messages = [*conversation, {"role": "user", "content": line.rstrip("\n")}]
            try:
                answer = stream_answer(client, {"model": route, "messages": messages, "stream": True, **extras})
            except TurnFailed as exc:
                failed = True
                err.print(f"[red]error:[/red] {escape(str(exc))}")
                continue
            conversation = [*messages, {"role": "assistant", "content": answer}]
    if failed:
        raise typer.Exit(1)
