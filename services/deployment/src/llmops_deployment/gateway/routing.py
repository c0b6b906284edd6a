"""Which deployment answers: the route (checked by version on every request, its body cached per version), a
weighted pick among its targets (random, or sticky per user: a hash of the user or key id), then its fallbacks in
order; shadows get copies. Deployments and their ready replicas are cached for ``gateway_cache_seconds``, and
dropped at once when a replica refuses connections."""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from dataclasses import dataclass, field
from itertools import count

from llmops_deployment.gateway.errors import GatewayError
from llmops_deployment.gateway.store import Store


@dataclass(frozen=True)
class Replica:
    endpoint: str
    served_model: str
    model_hash: str | None


@dataclass
class Deployment:
    """A deployment as the gateway calls it: its backend kind, ready replicas, and what records name."""

    id: str
    backend: str
    replicas: list[Replica]
    model_version_id: str | None
    model_name: str | None
    manifests: tuple[str, ...]  # where its tokenizer may be found, in order (merged, own, base model)
    secret_ref: str | None
    context_length: int | None
    _turn: count = field(default_factory=count)

    def replica(self) -> Replica | None:
        """The next ready replica (round robin), or None when none is ready."""
        if not self.replicas:
            return None
        return self.replicas[next(self._turn) % len(self.replicas)]


@dataclass(frozen=True)
class Route:
    id: str
    name: str
    version: int
    targets: tuple[tuple[str, float], ...]
    shadows: tuple[str, ...]
    fallbacks: tuple[str, ...]
    sticky: bool
    total_weight: float

    def pick(self, sticky_key: str | None) -> str | None:
        """A target by weight: random, or the same one for the same ``sticky_key`` when the route is sticky."""
        if self.total_weight <= 0:
            return None
        if self.sticky and sticky_key:
            digest = hashlib.blake2b(sticky_key.encode(), digest_size=8).digest()
            point = int.from_bytes(digest) / 2**64 * self.total_weight
        else:
            point = random.random() * self.total_weight
        for deployment_id, weight in self.targets:
            if point < weight:
                return deployment_id
            point -= weight
        return self.targets[-1][0]

    def plan(self, sticky_key: str | None) -> list[str]:
        """The deployments to try in order: the picked target, then the fallbacks."""
        first = self.pick(sticky_key)
        plan = [first] if first else []
        plan += [d for d in self.fallbacks if d not in plan]
        return plan


def _valid(deployment_id: str) -> bool:
    try:
        uuid.UUID(deployment_id)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _route(name: str, row) -> Route:
    targets = tuple(
        (t["deployment_id"], float(t.get("weight", 1))) for t in row["targets"] if _valid(t.get("deployment_id"))
    )
    return Route(
        id=row["id"],
        name=name,
        version=row["version"],
        targets=targets,
        shadows=tuple(d for d in row["shadows"] if _valid(d)),
        fallbacks=tuple(d for d in row["fallbacks"] if _valid(d)),
        sticky=row["sticky"],
        total_weight=sum(w for _, w in targets),
    )


def _deployment(rows) -> Deployment:
    first = rows[0]
    model, external = first["model"] or {}, first["external"] or {}
    generation = first["generation"] or {}
    manifests = tuple(
        m
        for m in (
            model.get("merged_manifest_sha256"),
            model.get("manifest_sha256"),
            (model.get("base_model") or {}).get("manifest_sha256"),
        )
        if m
    )
    context = generation.get("context_length") or generation.get("max_model_len")
    return Deployment(
        id=first["id"],
        backend=first["backend"],
        replicas=[
            Replica(r["endpoint"], r["served_model"] or external.get("model") or "", r["model_hash"])
            for r in rows
            if r["endpoint"]
        ],
        model_version_id=first["model_version_id"],
        model_name=model.get("name") or external.get("model"),
        manifests=manifests,
        secret_ref=external.get("secret_ref"),
        context_length=context if isinstance(context, int) else None,
    )


class Router:
    def __init__(self, store: Store, ttl: float) -> None:
        self.store, self.ttl = store, ttl
        self._routes: dict[tuple[str, str], Route] = {}
        self._deployments: dict[str, tuple[float, Deployment | None]] = {}

    def cached(self, project: str, name: str) -> Route | None:
        """The route as last seen (not checked: :meth:`route` says whether it is still current)."""
        return self._routes.get((project, name))

    async def route(self, project: str, name: str) -> Route:
        """The route as it is now (one query: its version, and its body only when that changed)."""
        key = (project, name)
        cached = self._routes.get(key)
        row = await self.store.route(project, name, cached.version if cached else -1)
        if row is None:
            self._routes.pop(key, None)
            raise GatewayError(
                404,
                f"the model {name!r} does not exist (no such route in this project)",
                param="model",
                code="model_not_found",
            )
        if cached is not None and row["targets"] is None:
            return cached
        route = self._routes[key] = _route(name, row)
        return route

    async def deployments(self, ids: list[str]) -> dict[str, Deployment]:
        """The deployments of ``ids`` that exist (cached), each with its ready replicas."""
        now = time.monotonic()
        found: dict[str, Deployment] = {}
        stale = []
        for deployment_id in ids:
            cached = self._deployments.get(deployment_id)
            if cached is not None and now - cached[0] < self.ttl:
                if cached[1] is not None:
                    found[deployment_id] = cached[1]
            else:
                stale.append(deployment_id)
        if stale:
            grouped: dict[str, list] = {}
            for row in await self.store.deployments(stale):
                grouped.setdefault(row["id"], []).append(row)
            for deployment_id in stale:
                rows = grouped.get(deployment_id)
                deployment = _deployment(rows) if rows else None
                self._deployments[deployment_id] = (now, deployment)
                if deployment is not None:
                    found[deployment_id] = deployment
        return found

    def forget(self, deployment_id: str) -> None:
        """Look the deployment's replicas up again on its next use (one refused a connection)."""
        self._deployments.pop(deployment_id, None)
