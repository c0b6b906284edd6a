"""A replica's files: a full model as it is, an adapter beside its base for backends that load LoRA themselves, or
merged into its base once per base and adapter (cached by both hashes, safe when merged twice at once); and a merged
adapter served by a worker, the second deployment of it reusing the merge."""

from __future__ import annotations

import pytest

from llmops.model_files import COMPLETE
from llmops_deployment import artifacts
from llmops_deployment.artifacts import ArtifactError, model_files

from .worker_support import (
    adapter_model,
    chat,
    full_model,
    make_adapter,
    request_deployment,
    serving,
    upload,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAST = {"gateway_cache_seconds": 0.3, "drain_timeout_seconds": 5.0, "backend_start_timeout_seconds": 120.0}


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("adapter") / "adapter")


class TestModelFiles:
    async def test_a_full_model_is_served_as_it_is(self, deployment, tiny_model, tmp_path):
        sha = await upload(deployment, tiny_model)
        files = await model_files(deployment.runtime.store, full_model(sha), tmp_path, merged=True)
        assert files.model_hash == sha and (files.model_dir / "config.json").is_file() and files.adapter_dir is None

    async def test_an_adapter_stays_beside_its_base_for_backends_that_load_it(
        self, deployment, tiny_model, adapter, tmp_path
    ):
        base_sha, adapter_sha = await upload(deployment, tiny_model), await upload(deployment, adapter)
        files = await model_files(
            deployment.runtime.store, adapter_model(adapter_sha, base_sha), tmp_path, merged=False
        )
        assert files.model_dir == tmp_path / base_sha and files.adapter_dir == tmp_path / adapter_sha
        assert files.adapter_name == "tiny-lora-v1" and files.lora_rank == 4 and files.model_hash == adapter_sha

    async def test_a_stored_merged_model_is_used_rather_than_merging(self, deployment, tiny_model, adapter, tmp_path):
        base_sha, adapter_sha = await upload(deployment, tiny_model), await upload(deployment, adapter)
        model = adapter_model(adapter_sha, base_sha).model_copy(update={"merged_manifest_sha256": base_sha})
        files = await model_files(deployment.runtime.store, model, tmp_path, merged=True)
        assert files.model_dir == tmp_path / base_sha and files.model_hash == base_sha
        assert not (tmp_path / "merged").exists()

    async def test_a_missing_artifact_is_an_artifact_error(self, deployment, tmp_path):
        with pytest.raises(ArtifactError, match="cannot be had"):
            await model_files(deployment.runtime.store, full_model("0" * 64), tmp_path, merged=True)


class TestAnAdapter:
    async def test_is_merged_into_its_base_once_and_served_by_two_deployments(
        self, deployment_settings, deployment, tiny_model, tmp_path, monkeypatch
    ):
        adapter = make_adapter(tiny_model, tmp_path / "adapter")
        base_sha, adapter_sha = await upload(deployment, tiny_model), await upload(deployment, adapter)
        merges = []
        merge = artifacts.merge_adapter

        def counted(base_dir, adapter_dir, out_dir, **options):
            merges.append(not (out_dir / COMPLETE).is_file())
            return merge(base_dir, adapter_dir, out_dir, **options)

        monkeypatch.setattr(artifacts, "merge_adapter", counted)
        model = adapter_model(adapter_sha, base_sha)
        async with serving(deployment_settings, **FAST):
            first = await request_deployment(deployment, model=model)
            replica = await wait_for(deployment, first, lambda r: r.status == "ready")
            second = await request_deployment(deployment, model=model)
            again = await wait_for(deployment, second, lambda r: r.status == "ready")
            answer = await chat(again.endpoint, again.served_model)
        assert answer.usage.total_tokens > 0
        assert merges == [True, False]  # the second deployment found the merge in the cache
        merged = artifacts.merged_cache_path(deployment_settings.cache_dir, base_sha, adapter_sha)
        assert replica.served_model == again.served_model == str(merged)
        assert replica.model_hash == merged.name
