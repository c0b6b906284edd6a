"""Models leave the platform as they came in: a version's files with presigned links (the route), written out by
`llmops models download` (adapter with its base, stored merge, merge made here), then loaded in a separate process
by plain transformers and peft and checked to generate what the original in-memory model did."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
import typer

from llmops import artifacts, testing
from llmops.auth import Role, issue_token
from llmops.testing import serve
from llmops_training import repository
from llmops_training.cli.download import download

from .conftest import ENGINEER, STEWARD, VIEWER, register_tiny

pytestmark = pytest.mark.integration

models = partial(testing.llmops, "models")
PROMPT = "What is the capital of France?"
#: Run with ``python -c`` in a process of its own: only torch, transformers and peft, as a user's code would.
LOADER = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

kind, directory, prompt = sys.argv[1:4]
if kind == "adapter":
    from peft import AutoPeftModelForCausalLM, PeftModel
    base = json.load(open(f"{directory}/adapter_config.json"))["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    models = [
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), directory),
        AutoPeftModelForCausalLM.from_pretrained(directory),  # the way the command's last line suggests
    ]
else:
    models = [AutoModelForCausalLM.from_pretrained(directory)]
    tokenizer = AutoTokenizer.from_pretrained(directory)
inputs = tokenizer(prompt, return_tensors="pt")
texts = []
for model in models:
    with torch.no_grad():
        out = model.eval().generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    texts.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]))
print(json.dumps(texts))
"""


def greedy(model, tokenizer) -> str:
    import torch

    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = model.eval().generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])


def loaded_elsewhere(kind: str, directory: Path) -> list[str]:
    """The greedy texts of the model in ``directory`` loaded by plain transformers/peft in a new process, offline
    (an adapter two ways: its base then ``PeftModel``, and ``AutoPeftModelForCausalLM``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LOADER, kind, str(directory), PROMPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=directory.parent,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def trained(tiny_model, tmp_path_factory) -> dict:
    """A LoRA adapter of the tiny model with non-zero weights (it changes what the model says), saved as the trainer
    saves one (adapter, tokenizer, a worker-local base path); the merged model; their greedy texts in memory."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("trained")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    base_text = greedy(base, tokenizer)
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    text = greedy(model, tokenizer)
    assert text != base_text  # the adapter matters, so loading without it would be caught
    model.save_pretrained(root / "adapter")
    tokenizer.save_pretrained(root / "adapter")
    config_path = root / "adapter" / "adapter_config.json"
    saved = json.loads(config_path.read_text()) | {"base_model_name_or_path": "/var/cache/llmops/worker/tiny"}
    config_path.write_text(json.dumps(saved))
    model.merge_and_unload().save_pretrained(root / "merged")
    tokenizer.save_pretrained(root / "merged")
    return {"adapter": root / "adapter", "merged": root / "merged", "text": text}


async def register_version(
    training, base: dict, manifest: str, merged: str | None, name: str = "tiny-lora", kind: str = "adapter"
) -> None:
    """Version 1 of ``name`` as a worker registers it after training on ``base`` (the worker is tested elsewhere)."""
    job_id = str(uuid.uuid4())
    lineage_base = {k: base[k] for k in ("name", "source", "manifest_sha256", "hub_id", "revision")}
    resolved = base["manifest_sha256"] or "0123abc"
    async with training.runtime.db.transaction() as session:
        job = {"id": job_id, "project": "p1", "model_name": name, "status": "completed", "pool": "cpu"}
        await repository.insert_job(
            session,
            job
            | {
                "method": "lora" if kind == "adapter" else "full",
                "hyperparameters": {},
                "base_model_id": base["id"],
                "dataset_version_id": "d",
            }
            | {"request": {}, "requested_by": "eve"},
        )
        await repository.insert_model_version(
            session,
            {
                "id": str(uuid.uuid4()),
                "project": "p1",
                "name": name,
                "version": 1,
                "job_id": job_id,
                "kind": kind,
                "base_model_id": base["id"],
                "manifest_sha256": manifest,
                "merged_manifest_sha256": merged,
                "lineage": {"base_model": lineage_base | {"resolved_revision": resolved}, "method": "lora"},
                "metrics": {},
            },
        )


@pytest.fixture
async def registered(training, client, tiny_model, trained) -> dict:
    """``tiny-lora`` v1 (adapter with a stored merge) and ``tiny-lora-unmerged`` v1 (without) on the uploaded tiny."""
    base = await register_tiny(client, tiny_model)
    adapter = await artifacts.put_directory(training.runtime.store, trained["adapter"])
    merged = await artifacts.put_directory(training.runtime.store, trained["merged"])
    await register_version(training, base, adapter.sha256, merged.sha256)
    await register_version(training, base, adapter.sha256, None, name="tiny-lora-unmerged")
    return {"base": base, "adapter": adapter, "merged": merged}


FILES = "/projects/p1/models/tiny-lora/versions/1/files"


class TestTheFilesRoute:
    async def test_a_version_lists_its_files_its_bases_and_its_merge_with_working_links(self, client, registered):
        response = await client.get(FILES, headers=VIEWER)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["version"], body["kind"]) == ("tiny-lora", 1, "adapter")
        assert body["manifest_sha256"] == registered["adapter"].sha256
        assert {f["path"]: (f["sha256"], f["size"]) for f in body["files"]} == {
            path: (entry["sha256"], entry["size"]) for path, entry in registered["adapter"].files.items()
        }
        base = body["base_model"]
        assert (base["name"], base["manifest_sha256"], base["hub_id"]) == (
            "tiny",
            registered["base"]["manifest_sha256"],
            None,
        )
        assert "config.json" in {f["path"] for f in base["files"]}
        assert body["merged"]["manifest_sha256"] == registered["merged"].sha256
        left = datetime.fromisoformat(body["expires_at"]) - datetime.now(
            datetime.fromisoformat(body["expires_at"]).tzinfo
        )
        assert timedelta(minutes=14) < left <= timedelta(minutes=15)
        config = next(f for f in body["files"] if f["path"] == "adapter_config.json")
        async with httpx.AsyncClient() as http:  # the link alone is enough: no token
            fetched = await http.get(config["url"])
        assert fetched.status_code == 200 and len(fetched.content) == config["size"]

    async def test_an_alias_names_the_version(self, client, registered):
        body = {"version": 1, "reason": "ship it"}
        assert (
            await client.put("/projects/p1/models/tiny-lora/aliases/production", json=body, headers=ENGINEER)
        ).is_success
        response = await client.get("/projects/p1/models/tiny-lora/versions/production/files", headers=VIEWER)
        assert response.status_code == 200 and response.json()["version"] == 1

    async def test_a_hub_base_is_named_with_its_resolved_revision_and_no_files(self, client, training, registered):
        hub = {"name": "smol", "hub_id": "HuggingFaceTB/SmolLM2-135M", "revision": "main"}
        base = (await client.post("/projects/p1/base-models", json=hub, headers=ENGINEER)).json()
        await register_version(training, base, registered["adapter"].sha256, None, name="smol-lora")
        body = (await client.get("/projects/p1/models/smol-lora/versions/1/files", headers=VIEWER)).json()
        assert body["base_model"] | {"files": None} == {
            "name": "smol",
            "manifest_sha256": None,
            "hub_id": "HuggingFaceTB/SmolLM2-135M",
            "revision": "0123abc",
            "files": None,
        }
        assert body["base_model"]["files"] == [] and body["merged"] is None

    @pytest.mark.parametrize(
        "path",
        [
            "/projects/p1/models/nope/versions/1/files",
            "/projects/p1/models/tiny-lora/versions/9/files",
            "/projects/p1/models/tiny-lora/versions/nope/files",
        ],
        ids=["model", "version", "alias"],
    )
    async def test_an_unknown_model_or_version_is_404(self, client, registered, path):
        response = await client.get(path, headers=VIEWER)
        assert response.status_code == 404 and response.headers["content-type"].startswith("application/problem+json")

    async def test_a_token_is_needed(self, client, registered):
        assert (await client.get(FILES)).status_code == 401

    async def test_a_role_without_training_read_is_refused(self, client, registered):
        assert (await client.get(FILES, headers=STEWARD)).status_code == 403

    async def test_a_bad_version_is_422(self, client):
        assert (await client.get("/projects/p1/models/tiny-lora/versions/0/files", headers=VIEWER)).status_code == 422


# -- the command --------------------------------------------------------------------------------------------------
@pytest.fixture
async def server(training):
    async with serve(training.app) as url:
        yield url


def env_for(server: str) -> dict[str, str]:
    return {"LLMOPS_CLIENT_TRAINING_URL": server, "LLMOPS_CLIENT_TOKEN": issue_token("cli", [Role.VIEWER], ["p1"])}


class TestDownloadingAndLoadingWithPlainLibraries:
    async def test_an_adapter_comes_with_its_base_and_loads_with_peft(self, server, registered, trained, tmp_path):
        code, stdout, stderr = await models(
            "download", "tiny-lora", "1", str(tmp_path / "dl"), "-p", "p1", env=env_for(server)
        )
        assert code == 0, stderr
        assert f"base in {tmp_path / 'dl' / 'base'}" in stdout and "AutoPeftModelForCausalLM" in stdout
        config = json.loads((tmp_path / "dl" / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tmp_path / "dl" / "base")
        assert await asyncio.to_thread(loaded_elsewhere, "adapter", tmp_path / "dl") == [trained["text"]] * 2

    async def test_the_stored_merge_loads_with_transformers(self, server, registered, trained, tmp_path):
        args = ("download", "tiny-lora", "1", str(tmp_path / "m"), "-p", "p1", "--merged")
        code, stdout, stderr = await models(*args, env=env_for(server))
        assert code == 0, stderr
        assert "(merged model)" in stdout
        stored = {p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()}
        assert stored == set(registered["merged"].files)
        assert await asyncio.to_thread(loaded_elsewhere, "full", tmp_path / "m") == [trained["text"]]

    async def test_without_a_stored_merge_the_adapter_is_merged_here(self, client, registered, trained, tmp_path):
        # The command's code after its GET, in this process (torch is imported already: the test stays fast).
        found = (await client.get("/projects/p1/models/tiny-lora-unmerged/versions/1/files", headers=VIEWER)).json()
        out = tmp_path / "out"
        said = await asyncio.to_thread(download, found, out / "m", merged=True)
        assert "merged here" in said and [p.name for p in out.iterdir()] == ["m"]  # the scratch download is gone
        assert await asyncio.to_thread(loaded_elsewhere, "full", out / "m") == [trained["text"]]

    @pytest.mark.parametrize("merged", [False, True], ids=["plain", "merged"])
    async def test_a_full_model_is_its_files_with_or_without_merged(
        self, client, training, registered, trained, tmp_path, merged
    ):
        await register_version(training, registered["base"], registered["merged"].sha256, None, "tiny-full", "full")
        found = (await client.get("/projects/p1/models/tiny-full/versions/1/files", headers=VIEWER)).json()
        said = await asyncio.to_thread(download, found, tmp_path / "out", merged=merged)
        assert "(full model)" in said
        written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
        assert written == set(registered["merged"].files)


class TestDownloadFailures:
    async def test_an_unknown_version_fails_clearly(self, server, registered, tmp_path):
        code, _, stderr = await models(
            "download", "tiny-lora", "7", str(tmp_path / "x"), "-p", "p1", env=env_for(server)
        )
        assert code == 1 and "404" in stderr and "no version 7" in stderr
        assert not (tmp_path / "x").exists()

    async def test_a_directory_that_is_not_empty_is_refused_before_asking(self, server, tmp_path):
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "mine").write_text("keep")
        code, _, stderr = await models(
            "download", "tiny-lora", "1", str(tmp_path / "x"), "-p", "p1", env=env_for(server)
        )
        assert code == 1 and "is not empty" in stderr
        assert [p.name for p in (tmp_path / "x").iterdir()] == ["mine"]

    async def test_expired_links_fail_clearly_and_leave_nothing(self, client, training, registered, tmp_path):
        training.settings.download_url_seconds = 1
        found = (await client.get(FILES, headers=VIEWER)).json()
        await asyncio.sleep(2.1)
        with pytest.raises(typer.Exit) as ended:
            await asyncio.to_thread(download, found, tmp_path / "out" / "x", merged=False)
        assert ended.value.exit_code == 1
        assert list((tmp_path / "out").iterdir()) == []
