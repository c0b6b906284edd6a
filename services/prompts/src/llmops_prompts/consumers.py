"""The prompts service's Kafka subscribers: none yet. The service only publishes (through its outbox); when it comes to
need others' facts, its consumers go here (built on :class:`llmops.bus.Consumer`, wired in ``app.py``), as in
audit's and training's ``consumers.py``."""

from __future__ import annotations

#: The topics the service subscribes to.
TOPICS: tuple[str, ...] = ()
