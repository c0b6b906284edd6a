"""A model version's files for download: its own, its base model's and its stored merge's, each with a presigned
URL, so that the bytes go from the object store to the client without passing through the service."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from llmops import artifacts
from llmops.runtime import Runtime
from llmops_schemas.envelope import utcnow
from llmops_training import repository, service


async def model_version_files(
    session: AsyncSession, runtime: Runtime, *, project: str, name: str, version: int | str, expires: timedelta
) -> dict[str, Any]:
    """What downloading a model version takes: its files, its base model's (when uploaded) and its stored merged
    model's (when training merged), each with a presigned URL valid for ``expires``."""
    row = await service.get_model_version(session, project, name, version)
    base = await repository.get_base_model(session, row.base_model_id)
    trained_on = (row.lineage or {}).get("base_model") or {}
    expires_at = utcnow() + expires

    async def presigned(manifest_sha256: str) -> list[dict[str, Any]]:
        assert runtime.store is not None
        files = (await artifacts.get_manifest(runtime.store, manifest_sha256)).files
        urls = await asyncio.gather(
            *(runtime.store.presigned_url(f["sha256"], expires=expires) for f in files.values())
        )
        return [{"path": path, **entry, "url": url} for (path, entry), url in zip(files.items(), urls, strict=True)]

    merged = row.merged_manifest_sha256
    return {
        "model": row.name,
        "version": row.version,
        "kind": row.kind,
        "manifest_sha256": row.manifest_sha256,
        "expires_at": expires_at,
        "files": await presigned(row.manifest_sha256),
        "base_model": {
            "name": base.name,
            "manifest_sha256": base.manifest_sha256,
            "hub_id": base.hub_id,
            # the commit the worker resolved a hub model to, when known: the weights the adapter was trained on
            "revision": (trained_on.get("resolved_revision") or base.revision) if base.hub_id else None,
            "files": await presigned(base.manifest_sha256) if base.manifest_sha256 else [],
        },
        "merged": None if merged is None else {"manifest_sha256": merged, "files": await presigned(merged)},
    }
