"""Alembic env of the monitoring service: its tables plus the shared outbox and inbox."""

from llmops.bus import BUS_METADATA
from llmops.db import run_migrations
from llmops_monitoring.models import METADATA

run_migrations([METADATA, BUS_METADATA])
