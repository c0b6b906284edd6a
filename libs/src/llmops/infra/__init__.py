"""Local infrastructure of the platform without Docker: Kafka (KRaft), PostgreSQL and SeaweedFS (S3).

``up()`` installs what is missing into ``PlatformSettings().home`` (default ``~/.cache/llmops``), starts
each part detached and waits until it is healthy; ``down()`` stops them; ``status()`` reports health
without starting anything. Used by ``llmops infra up|down|status`` and ``make infra-up|down|status``.
"""

from llmops.infra.base import ComponentStatus, InfraError, Paths
from llmops.infra.kafka import delete_topics, ensure_topics
from llmops.infra.manager import COMPONENTS, default_topics, down, status, up

__all__ = [
    "COMPONENTS",
    "ComponentStatus",
    "InfraError",
    "Paths",
    "default_topics",
    "delete_topics",
    "down",
    "ensure_topics",
    "status",
    "up",
]
