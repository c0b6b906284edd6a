"""Rows the other parts of the service write, inserted directly for the gateway's tests: deployments with ready
replicas (the serving worker's part), routes and their changes (the routes API's), API keys (the keys API's)."""

from __future__ import annotations

import json
import secrets
import uuid

import asyncpg

from llmops.db import asyncpg_dsn
from llmops_deployment.access import hash_api_key


class Rows:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.db = connection

    @classmethod
    async def open(cls, db_url: str) -> Rows:
        return cls(await asyncpg.connect(asyncpg_dsn(db_url)))

    async def close(self) -> None:
        await self.db.close()

    async def deployment(
        self,
        endpoint: str | None,
        *,
        project: str = "p1",
        backend: str = "transformers",
        served_model: str = "served",
        status: str = "ready",
        model: dict | None = None,
        model_hash: str | None = None,
    ) -> str:
        deployment_id = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO deployments (id, project, name, backend, pool, replicas, model_version_id, model, status,"
            " requested_by) VALUES ($1, $2, $3, $4, 'cpu', 1, $5, $6::jsonb, 'ready', 'eve')",
            deployment_id,
            project,
            f"d-{deployment_id[:8]}",
            backend,
            f"mv-{deployment_id[:8]}",
            json.dumps(model) if model else None,
        )
        await self.db.execute(
            "INSERT INTO deployment_replicas (deployment_id, replica, status, endpoint, served_model, model_hash)"
            " VALUES ($1, 0, $2, $3, $4, $5)",
            deployment_id,
            status,
            endpoint,
            served_model,
            model_hash,
        )
        return deployment_id

    async def route(
        self,
        name: str,
        targets: list[tuple[str, float]],
        *,
        project: str = "p1",
        shadows: list[str] = (),
        fallbacks: list[str] = (),
        sticky: bool = False,
    ) -> str:
        route_id = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO routes (id, project, name, version, targets, shadows, fallbacks, sticky, updated_by)"
            " VALUES ($1, $2, $3, 1, $4::jsonb, $5::jsonb, $6::jsonb, $7, 'eve')",
            route_id,
            project,
            name,
            _targets(targets),
            json.dumps(list(shadows)),
            json.dumps(list(fallbacks)),
            sticky,
        )
        return route_id

    async def change_route(
        self,
        name: str,
        targets: list[tuple[str, float]],
        *,
        project: str = "p1",
        shadows: list[str] = (),
        fallbacks: list[str] = (),
    ) -> None:
        """What the routes API does on a change (a rollback too): the row's new body under the next version."""
        await self.db.execute(
            "UPDATE routes SET version = version + 1, targets = $3::jsonb, shadows = $4::jsonb,"
            " fallbacks = $5::jsonb, updated_at = now() WHERE project = $1 AND name = $2",
            project,
            name,
            _targets(targets),
            json.dumps(list(shadows)),
            json.dumps(list(fallbacks)),
        )

    async def api_key(self, *, project: str = "p1", rpm: int | None = None) -> tuple[str, str]:
        """A new key: (its id, the secret the application sends)."""
        key_id, secret = str(uuid.uuid4()), "llmk_" + secrets.token_urlsafe(24)
        await self.db.execute(
            "INSERT INTO api_keys (id, project, name, prefix, key_hash, requests_per_minute, created_by)"
            " VALUES ($1, $2, 'app', $3, $4, $5, 'eve')",
            key_id,
            project,
            secret[:9],
            hash_api_key(secret),
            rpm,
        )
        return key_id, secret

    async def revoke(self, key_id: str) -> None:
        await self.db.execute("UPDATE api_keys SET revoked_at = now(), revoked_by = 'eve' WHERE id = $1", key_id)


def _targets(targets) -> str:
    return json.dumps([{"deployment_id": d, "weight": w} for d, w in targets])
