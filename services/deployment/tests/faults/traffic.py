"""Gateway traffic for the serving fault tests: callers asking a route through the gateway in a loop while a fault is
injected, every outcome kept with its request id."""

from __future__ import annotations

import asyncio
import time
import uuid

import openai

CHAT = [{"role": "user", "content": "Hello there"}]
CLIENTS = 4


class Traffic:
    """``CLIENTS`` callers asking the route in a loop until stopped, each request with an id of its own; every
    outcome kept with its id and duration (a pause after an error, so an outage is not a busy loop)."""

    def __init__(self, client: openai.AsyncOpenAI, route: str) -> None:
        self.client, self.route = client, route
        self.outcomes: list[tuple[str, float, float, str]] = []  # (request id, started, seconds, "ok" | error kind)
        self.stopping = asyncio.Event()
        self.tasks = [asyncio.create_task(self._caller()) for _ in range(CLIENTS)]

    async def _caller(self) -> None:
        while not self.stopping.is_set():
            request_id, started = uuid.uuid4().hex, time.monotonic()
            try:
                await self.client.chat.completions.create(
                    model=self.route, messages=CHAT, max_tokens=4, extra_headers={"x-request-id": request_id}
                )
                outcome = "ok"
            except openai.APIStatusError as error:
                outcome = f"status {error.status_code}"
            except openai.APIError as error:  # a connection error or a timeout would be the gateway's failure
                outcome = type(error).__name__
            self.outcomes.append((request_id, started, time.monotonic() - started, outcome))
            if outcome != "ok":
                await asyncio.sleep(0.05)

    def since(self, moment: float) -> list[str]:
        return [outcome for _, started, _, outcome in self.outcomes if started >= moment]

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 60)
