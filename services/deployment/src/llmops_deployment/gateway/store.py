"""The gateway's few queries, on asyncpg directly (no ORM on the hot path): API keys by hash, a route checked by
version, the ready replicas of deployments, the route names of a project."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from llmops.db import asyncpg_dsn


async def _init(connection: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await connection.set_type_codec(name, encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset on release: asyncpg still rolls back an open transaction first, and the gateway's queries
    leave no other session state (no SET, LISTEN, cursors or advisory locks). The default reset query cost one more
    round trip on every query (``RESET ALL; CLOSE ALL; ...`` when each query's connection went back)."""


async def create_pool(url: str, *, max_size: int = 10) -> asyncpg.Pool:
    """The gateway's connections. Its only writes are budget reservations and settlements, committed without waiting
    for the WAL flush (``synchronous_commit=off``): the locks that keep budgets exact across replicas are the same,
    and a crash of Postgres itself loses at most its last fraction of a second of usage counts, never consistency."""
    return await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=1,
        max_size=max_size,
        init=_init,
        reset=_keep_session,
        server_settings={"synchronous_commit": "off"},
    )


_KEY = """
SELECT id::text, project, requests_per_minute, tokens_per_minute
FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL
"""

# One round trip per request: the version always, the body only when it differs from the cached one.
_ROUTE = """
SELECT id::text, version,
       CASE WHEN version = $3 THEN NULL ELSE targets END AS targets,
       CASE WHEN version = $3 THEN NULL ELSE shadows END AS shadows,
       CASE WHEN version = $3 THEN NULL ELSE fallbacks END AS fallbacks,
       sticky
FROM routes WHERE project = $1 AND name = $2
"""

_DEPLOYMENTS = """
SELECT d.id::text AS id, d.project, d.backend, d.model_version_id, d.model, d.external, d.generation, d.status,
       r.replica, r.endpoint, r.served_model, r.model_hash
FROM deployments d
LEFT JOIN deployment_replicas r ON r.deployment_id = d.id AND r.status = 'ready' AND r.endpoint IS NOT NULL
WHERE d.id = ANY($1::uuid[])
ORDER BY d.id, r.replica
"""

_ROUTE_NAMES = "SELECT name, updated_at FROM routes WHERE project = $1 ORDER BY name"


class Store:
    """The gateway's queries on one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def api_key(self, key_hash: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(_KEY, key_hash)

    async def route(self, project: str, name: str, known_version: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(_ROUTE, project, name, known_version)

    async def deployments(self, ids: list[str]) -> list[asyncpg.Record]:
        return await self.pool.fetch(_DEPLOYMENTS, ids)

    async def route_names(self, project: str) -> list[dict[str, Any]]:
        return [dict(row) for row in await self.pool.fetch(_ROUTE_NAMES, project)]
