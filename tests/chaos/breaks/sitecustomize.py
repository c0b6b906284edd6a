"""Broken on purpose, for `make chaos --broken commit-first` only: loaded at interpreter start from the path the chaos
run gives its processes. With ``LLMOPS_CHAOS_BREAK=commit-first`` every platform consumer commits a batch's offsets
before its transaction (and dawdles half a second between), so a consumer killed in between has lost the batch: the
chaos run's invariants must catch it."""

import os

if os.environ.get("LLMOPS_CHAOS_BREAK") == "commit-first":
    import asyncio
    from typing import Any

    from faststream.kafka import KafkaMessage

    from llmops.bus import consumer

    def _committing_first(on_batch):
        # annotated as the original is: FastStream injects by these annotations
        async def handler(body: Any, message: KafkaMessage) -> None:
            await message.ack()  # the offsets first...
            await asyncio.sleep(0.5)
            await on_batch(message)  # ...then the transaction (its own ack is then a no-op)

        return handler

    consumer._raw_batch_handler = _committing_first
