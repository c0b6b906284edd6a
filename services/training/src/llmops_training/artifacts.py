"""A finished training job's artifacts in the object store, as directory manifests (:mod:`llmops.artifacts`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from llmops.artifacts import Manifest, put_directory
from llmops.storage import ObjectStore


async def put_trained(store: ObjectStore, artifacts_dir: Path) -> tuple[Manifest, Manifest | None]:
    """Store a finished job's artifacts and, when the trainer merged the adapter, the merged model beside them (moved
    out of ``artifacts_dir`` first, so that the artifacts' manifest does not hold it); their manifests."""
    merged_dir, merged = artifacts_dir / "merged", None
    if merged_dir.is_dir():
        merged_target = artifacts_dir.parent / "merged"
        shutil.move(merged_dir, merged_target)
        merged = await put_directory(store, merged_target)
    return await put_directory(store, artifacts_dir), merged
