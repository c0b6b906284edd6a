"""Generation by an OpenAI-compatible endpoint (a run's ``endpoint`` target), through huggingface_hub's
``AsyncInferenceClient``: every input sent as a chat (a text as one user message), at most ``concurrency`` requests
in flight, each bounded by ``timeout_seconds``. A request that fails is that example's error (no output), not
the run's.

Latency is each request's own wall time. No credential is sent: without an explicit key huggingface_hub would send
the machine's Hugging Face token to whatever endpoint the run names, so a placeholder key goes instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from llmops_evaluation.examples import Input
from llmops_evaluation.ml.generate import Generated, GenerationSpec, cut_at_stop

NO_KEY = "no-key"
MAX_ERROR_CHARS = 500


async def generate_by_endpoint(
    url: str,
    model: str | None,
    inputs: Sequence[tuple[int, Input]],
    spec: GenerationSpec,
    *,
    concurrency: int,
    timeout_seconds: float,
    on_done: Callable[[Generated], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Ask the endpoint for every input's output, calling ``on_done`` with each as it comes; False when
    ``should_stop`` stopped it before the end."""
    from huggingface_hub import AsyncInferenceClient

    semaphore = asyncio.Semaphore(concurrency)
    sampled = spec.temperature > 0
    async with AsyncInferenceClient(base_url=url, api_key=NO_KEY, timeout=timeout_seconds) as client:

        async def one(index: int, value: Input) -> None:
            async with semaphore:
                if should_stop():
                    return
                messages = [{"role": "user", "content": value}] if isinstance(value, str) else value
                started = time.perf_counter()
                try:
                    reply = await client.chat_completion(
                        messages,
                        model=model,
                        max_tokens=spec.max_new_tokens,
                        temperature=spec.temperature if sampled else 0.0,
                        top_p=spec.top_p if sampled else None,
                        seed=spec.seed if sampled else None,
                        stop=list(spec.stop) or None,
                    )
                    text = reply.choices[0].message.content or ""
                    usage = getattr(reply, "usage", None)
                    tokens = int(getattr(usage, "completion_tokens", 0) or 0)
                except Exception as exc:  # HTTP error, timeout, a reply without choices: this example's error
                    on_done(Generated(index, None, error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]))
                    return
                latency_ms = (time.perf_counter() - started) * 1000
                on_done(Generated(index, cut_at_stop(text, spec.stop), tokens, latency_ms))

        await asyncio.gather(*(one(index, value) for index, value in inputs))
    return not should_stop()
