"""Token counts: the backend's ``usage`` when it sends one (on whichever chunk carries it), else the model's own
tokenizer (``tokenizer.json`` of the deployment's model from the object store, via its manifest; cached per manifest).
A deployment without a stored tokenizer (an external endpoint) is counted at four characters a token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from llmops.artifacts import get_manifest
from llmops.logging import get_logger
from llmops.storage import ObjectStore
from llmops_deployment.gateway.routing import Deployment

log = get_logger(__name__)

Count = Callable[[str], int]


def rough_count(text: str) -> int:
    return (len(text) + 3) // 4


def usage_of(usage: object) -> tuple[int, int] | None:
    """(prompt tokens, completion tokens) of a backend's ``usage`` member, or None."""
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            return prompt, completion
    return None


async def counted(
    tokenizers: Tokenizers, deployment: Deployment, usage: tuple[int, int] | None, input_text: str, output: str
) -> tuple[tuple[int, int], str]:
    """The request's (tokens in, tokens out) and where they come from: the backend's usage, else the model's
    tokenizer, else an estimate."""
    if usage is not None:
        return usage, "backend"
    count = await tokenizers.counter(deployment)
    return (count(input_text), count(output)), "estimate" if count is rough_count else "tokenizer"


class Tokenizers:
    def __init__(self, store: ObjectStore | None) -> None:
        self.store = store
        self._counts: dict[str, Count] = {}
        self._loading: dict[str, asyncio.Task] = {}

    async def counter(self, deployment: Deployment) -> Count:
        """The deployment's token counter (its model's tokenizer, loaded once per manifest)."""
        for manifest in deployment.manifests:
            if manifest in self._counts:
                return self._counts[manifest]
        if self.store is None or not deployment.manifests:
            return rough_count
        key = deployment.manifests[0]
        task = self._loading.get(key) or self._loading.setdefault(key, asyncio.create_task(self._load(deployment)))
        count = await asyncio.shield(task)
        self._counts[key] = count
        return count

    async def _load(self, deployment: Deployment) -> Count:
        from tokenizers import Tokenizer

        for sha in deployment.manifests:
            try:
                manifest = await get_manifest(self.store, sha)
                entry = manifest.files.get("tokenizer.json")
                if entry is None:
                    continue
                tokenizer = Tokenizer.from_str((await self.store.get_bytes(entry["sha256"])).decode())
            except Exception:
                log.warning("gateway.tokenizer.unavailable", manifest=sha, exc_info=True)
                continue
            return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids) if text else 0
        return rough_count
