"""Broken on purpose, for `make chaos --broken commit-first` only: loaded at interpreter start from the path the chaos
run gives its processes. With ``LLMOPS_CHAOS_BREAK=commit-first`` every platform consumer commits a batch's offsets
before its transaction (and dawdles half a second between), so a consumer killed in between has lost the batch: the
chaos run's invariants must catch it.

While a batch is in that window the process shows it with a file named by its pid under
``$LLMOPS_HOME/chaos-windows``: the chaos run waits for it before its SIGKILL, so the kill lands in the window."""

import os

if os.environ.get("LLMOPS_CHAOS_BREAK") == "commit-first":
    import asyncio
    from pathlib import Path
    from typing import Any

    from faststream.kafka import KafkaMessage

    from llmops.bus import consumer

    _window = Path(os.environ["LLMOPS_HOME"]) / "chaos-windows" / str(os.getpid())
    _open = 0  # batches in the window now (a process may run several consumers)

    def _committing_first(on_batch):
        # annotated as the original is: FastStream injects by these annotations
        async def handler(body: Any, message: KafkaMessage) -> None:
            global _open
            await message.ack()  # the offsets first...
            _open += 1
            _window.parent.mkdir(parents=True, exist_ok=True)
            _window.touch()
            try:
                await asyncio.sleep(0.5)
                await on_batch(message)  # ...then the transaction (its own ack is then a no-op)
            finally:
                _open -= 1
                if not _open:
                    _window.unlink(missing_ok=True)

        return handler

    consumer._raw_batch_handler = _committing_first
