"""The Alembic env of an example service: what each service's migrations/env.py looks like."""

from llmops.bus import BUS_METADATA
from llmops.db import run_migrations

run_migrations([BUS_METADATA])
