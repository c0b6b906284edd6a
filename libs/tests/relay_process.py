"""An outbox relay in its own process, for the crash tests: `python relay_process.py DB_URL BATCH PAUSE`.

PAUSE seconds pass between Kafka acknowledging a batch and the batch being marked sent: the window in which a
SIGKILL leaves events published but unmarked, so the next relay publishes them again.
"""

import asyncio
import sys

from llmops.bus import OutboxRelay, make_producer
from llmops.db import Database
from llmops.logging import configure_logging


class PausingRelay(OutboxRelay):
    pause = 0.0

    async def _mark_sent(self, session, ids):
        print(f"published {len(ids)}", flush=True)
        await asyncio.sleep(self.pause)
        await super()._mark_sent(session, ids)


async def main(url: str, batch: int, pause: float) -> None:
    configure_logging("WARNING")  # stdout carries only the protocol lines
    producer = make_producer(client_id="test-relay")
    await producer.start()
    relay = PausingRelay(Database(url), producer, batch_size=batch, poll_interval=0.05)
    relay.pause = pause
    await relay.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
