"""A run's inputs on the worker's disk: its dataset split as examples, and the model to generate with (the base
model, plus the model version's adapter or full weights), from the content-addressed cache when fetched before."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from llmops import artifacts
from llmops.prompts import PromptTemplate
from llmops.storage import ObjectStore
from llmops_evaluation.examples import Example, RowError, to_examples
from llmops_schemas.events import EvaluationRunRequested
from llmops_schemas.events.evaluation import Target
from llmops_schemas.splits import SplitConfig, split_lines


class InputError(RuntimeError):
    """A run's inputs cannot be had (the dataset or model is missing, no row is usable); the message says why."""


@dataclass(frozen=True)
class ModelFiles:
    """Where a local target's files are: the model to load, and a LoRA adapter to put on it (or None)."""

    model_dir: Path
    adapter_dir: Path | None = None


async def fetch_examples(
    store: ObjectStore, request: EvaluationRunRequested, work: Path
) -> tuple[list[Example], list[RowError]]:
    """The examples of the run's split and the rows that could not become one; InputError when none is usable."""
    dataset = request.dataset
    data_file = work / "dataset.jsonl"
    try:
        await store.download(dataset.sha256, data_file)
    except Exception as exc:
        raise InputError(f"dataset {dataset.name!r} v{dataset.version} cannot be downloaded: {exc}") from exc
    split = SplitConfig.of_version(dataset.splits)
    template = None if request.prompt is None else PromptTemplate.model_validate(request.prompt.template)

    def read() -> tuple[list[Example], list[RowError]]:
        with data_file.open("rb") as rows:
            made = to_examples(split_lines(rows, split, dataset.split), dataset.format, template)
        data_file.unlink()
        return made

    examples, errors = await asyncio.to_thread(read)
    if not examples:
        why = f": {errors[0].error}" if errors else ""
        raise InputError(f"the {dataset.split!r} split of {dataset.name!r} v{dataset.version} has no usable row{why}")
    return examples, errors


async def fetch_model(store: ObjectStore, target: Target, cache_dir: Path) -> ModelFiles:
    """The local target's files: its base model, and for a model version its adapter or full weights."""
    base = target.base_model
    if base is None:
        raise InputError(f"{target.label} names no base model")
    try:
        if base.source == "upload":
            if base.manifest_sha256 is None:
                raise InputError(f"base model {base.name!r} has no files")
            base_dir = await artifacts.fetch_directory(store, base.manifest_sha256, cache_dir / base.manifest_sha256)
        else:
            base_dir = await asyncio.to_thread(_from_hub, base.hub_id, base.revision, cache_dir / "hub")
        if target.kind != "model_version":
            return ModelFiles(base_dir)
        if target.manifest_sha256 is None:
            raise InputError(f"{target.label} has no artifact")
        own = await artifacts.fetch_directory(store, target.manifest_sha256, cache_dir / target.manifest_sha256)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"the files of {target.label} cannot be fetched: {exc}") from exc
    if target.artifact_kind == "full":
        return ModelFiles(own)
    return ModelFiles(base_dir, adapter_dir=own)


def _from_hub(hub_id: str | None, revision: str | None, cache: Path) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, revision=revision, cache_dir=cache))
    except Exception as exc:
        raise InputError(f"cannot resolve base model {hub_id!r} (revision {revision}) from the hub: {exc}") from exc
