"""A job's inputs on the worker's disk: its dataset split as a JSONL file of training examples, and its base model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llmops import artifacts
from llmops.prompts import PromptTemplate
from llmops.storage import ObjectStore
from llmops_schemas.events import TrainingJobRequested
from llmops_schemas.splits import SplitConfig, split_lines
from llmops_training.examples import write_examples


async def fetch_inputs(
    store: ObjectStore, request: TrainingJobRequested, work: Path, cache_dir: Path
) -> tuple[Path, Path, int, dict[str, Any]]:
    """Download the dataset split and the base model; returns the model directory, the examples' JSONL file (for
    the training process to read), how many examples, and the base model's lineage. The worker streams the
    version to disk and its split's examples to that file a row at a time: it never holds the split."""
    dataset = request.dataset
    data_file = work / "dataset.jsonl"
    await store.download(dataset.sha256, data_file)
    split = SplitConfig.of_version(dataset.splits)
    template = None if request.prompt is None else PromptTemplate.model_validate(request.prompt.template)
    examples_file = work / "examples.jsonl"

    def write() -> int:
        with data_file.open("rb") as rows, examples_file.open("wb") as out:
            count = write_examples(split_lines(rows, split, dataset.split), dataset.format, template, out)
        data_file.unlink()
        return count

    count = await asyncio.to_thread(write)
    base = request.base_model
    if base.source == "upload":
        assert base.manifest_sha256 is not None
        model_dir = await artifacts.fetch_directory(store, base.manifest_sha256, cache_dir / base.manifest_sha256)
        revision = base.manifest_sha256
    else:
        model_dir, revision = await asyncio.to_thread(_from_hub, base.hub_id, base.revision, cache_dir / "hub")
    lineage = {**base.model_dump(mode="json"), "resolved_revision": revision}
    return model_dir, examples_file, count, lineage


def _from_hub(hub_id: str | None, revision: str | None, cache: Path) -> tuple[Path, str]:
    """Resolve a hub model into the worker's cache; the commit it resolved to is its revision in the lineage."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(hub_id, revision=revision, cache_dir=cache))
    except Exception as exc:
        raise RuntimeError(f"cannot resolve base model {hub_id!r} (revision {revision}) from the hub: {exc}") from exc
    return path, path.name
