"""Models leave the platform as they are served: an adapter version deployed on the CPU pool (merged into its base
by the serving worker) answers a prompt greedily with the same text as the same version downloaded the way
``llmops models download`` writes it (the adapter beside its base; and merged), loaded by plain transformers and
peft in a process of their own, with no platform code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.artifacts import get_manifest
from llmops.model_files import merge_adapter, model_files, point_adapter_at, store_fetch, write_hf_directory

from .worker_support import adapter_model, make_adapter, request_deployment, serving, upload, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROMPT = "What is the capital of France?"
#: Run with ``python -c`` in a process of its own: only torch, transformers and peft, as a user's code would.
LOADER = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

kind, directory, prompt = sys.argv[1:4]
if kind == "adapter":
    from peft import PeftModel
    base = json.load(open(f"{directory}/adapter_config.json"))["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), directory)
else:
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
inputs = tokenizer.apply_chat_template(
    [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
)
with torch.no_grad():
    out = model.eval().generate(**inputs, max_new_tokens=8, do_sample=False)
print(json.dumps(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)))
"""


def loaded_elsewhere(kind: str, directory: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LOADER, kind, str(directory), PROMPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=directory.parent,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


async def downloaded(store, sha256: str, dest: Path) -> Path:
    manifest = await get_manifest(store, sha256)
    entries = [{"path": path, **entry} for path, entry in manifest.files.items()]
    await write_hf_directory(model_files(entries), dest, store_fetch(store))
    return dest


async def test_an_adapter_version_answers_as_its_downloads_do(deployment_settings, deployment, tiny_model, tmp_path):
    from huggingface_hub import AsyncInferenceClient

    adapter = make_adapter(tiny_model, tmp_path / "trained-adapter")
    base_sha, adapter_sha = await upload(deployment, tiny_model), await upload(deployment, adapter)
    async with serving(deployment_settings, backend_start_timeout_seconds=150.0):
        deployment_id = await request_deployment(deployment, model=adapter_model(adapter_sha, base_sha))
        replica = await wait_for(deployment, deployment_id, lambda r: r.status == "ready", within=200)
        client = AsyncInferenceClient(base_url=replica.endpoint, timeout=60)
        try:
            answer = await client.chat_completion(
                messages=[{"role": "user", "content": PROMPT}], model=replica.served_model, max_tokens=8, temperature=0
            )
        finally:
            await client.close()
    served = answer.choices[0].message.content

    # What `llmops models download NAME VERSION DIR` writes: the adapter pointed at its base beside it ...
    store = deployment.runtime.store
    target = tmp_path / "download"
    base_dir = await downloaded(store, base_sha, target / "base")
    adapter_dir = await downloaded(store, adapter_sha, target / "adapter")
    point_adapter_at(adapter_dir, base_dir)
    # ... and with --merged, the adapter merged into its base.
    merged_dir = merge_adapter(base_dir, adapter_dir, tmp_path / "merged")

    assert served  # the tiny model says something for eight tokens
    assert loaded_elsewhere("adapter", adapter_dir) == served
    assert loaded_elsewhere("merged", merged_dir) == served
