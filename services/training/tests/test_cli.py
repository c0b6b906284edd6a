"""`llmops models ...` and `llmops train ...`: the pure helpers, then the installed command against the real training
service over HTTP (and, for the whole flow, a real training worker)."""

from __future__ import annotations

import asyncio
import json
import tarfile
import uuid
from functools import partial

import pytest
import typer

from llmops import testing
from llmops.auth import Role, issue_token
from llmops.testing import serve
from llmops_training.cli import common, tables
from llmops_training.cli import registry as models_cli
from llmops_training.cli import train as train_cli
from llmops_training.settings import Pool
from llmops_training.worker import TrainingWorker

from .conftest import instruction_rows, seed_dataset

models = partial(testing.llmops, "models")
train = partial(testing.llmops, "train")


# -- pure helpers ------------------------------------------------------------------------------------------------
class TestReferences:
    def test_name_and_version(self):
        assert train_cli.parse_ref("support-chats:3", "--dataset") == {"name": "support-chats", "version": 3}

    @pytest.mark.parametrize("value", ["qa", "qa:", ":1", "qa:v1", "qa:0", "qa:-1"])
    def test_anything_else_is_a_usage_error(self, value):
        with pytest.raises(typer.BadParameter, match="NAME:VERSION"):
            train_cli.parse_ref(value, "--dataset")


class TestHyperparameters:
    def test_values_are_json_when_they_parse_and_text_otherwise(self):
        pairs = ["max_steps=30", "learning_rate=5e-3", "bf16=true", 'target_modules=["q_proj"]', "note=a=b"]
        assert train_cli.parse_settings(pairs) == {
            "max_steps": 30,
            "learning_rate": 0.005,
            "bf16": True,
            "target_modules": ["q_proj"],
            "note": "a=b",
        }

    def test_a_pair_without_equals_is_a_usage_error(self):
        with pytest.raises(typer.BadParameter, match="key=value"):
            train_cli.parse_settings(["max_steps"])

    def test_the_job_body_sends_only_what_was_chosen(self):
        body = train_cli.job_body(
            base_model="tiny",
            dataset="qa:2",
            split=common.Split.VALIDATION,
            prompt=None,
            method=common.Method.LORA,
            pool="cpu",
            model_name=None,
            hyperparameters={"max_steps": 5},
        )
        assert body == {
            "base_model": "tiny",
            "dataset": {"name": "qa", "version": 2, "split": "validation"},
            "method": "lora",
            "pool": "cpu",
            "hyperparameters": {"max_steps": 5},
        }
        with_prompt = train_cli.job_body(**{**_args(), "prompt": "answer:1", "model_name": "m"})
        assert with_prompt["prompt"] == {"name": "answer", "version": 1} and with_prompt["model_name"] == "m"


def _args() -> dict:
    return {
        "base_model": "tiny",
        "dataset": "qa:1",
        "split": common.Split.TRAIN,
        "prompt": None,
        "method": common.Method.FULL,
        "pool": "cpu",
        "model_name": None,
        "hyperparameters": {},
    }


class TestPacking:
    def test_a_model_directory_is_packed_under_its_name_with_links_followed_and_git_left_out(self, tmp_path):
        model = tmp_path / "model"
        (model / ".git").mkdir(parents=True)
        (model / ".git" / "HEAD").write_text("ref")
        (model / "config.json").write_text("{}")
        blob = tmp_path / "blob"
        blob.write_bytes(b"weights")
        (model / "model.safetensors").symlink_to(blob)  # as in huggingface_hub's cache
        models_cli.pack(model, tmp_path / "model.tar")
        with tarfile.open(tmp_path / "model.tar") as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert set(members) == {"model", "model/config.json", "model/model.safetensors"}
            assert members["model/model.safetensors"].isfile()
            assert tar.extractfile("model/model.safetensors").read() == b"weights"

    def test_a_directory_without_config_is_refused_before_anything_is_sent(self, tmp_path):
        with pytest.raises(typer.Exit) as exit_info:
            models_cli.pack(tmp_path, tmp_path.parent / "x.tar")
        assert exit_info.value.exit_code == 2

    def test_numbers_for_people(self):
        shown = [tables.number(v) for v in (None, 0.123456, 1234567, True, "x")]
        assert shown == ["", "0.1235", "1,234,567", "true", "x"]


# -- the command against the service -------------------------------------------------------------------------------
@pytest.fixture
def training_settings(training_settings):
    """The conftest's settings with a pool of this test's own: its worker's consumer group takes no other test's
    jobs (a worker skips jobs that are not in its database, and commits them)."""
    pool = f"cli-{uuid.uuid4().hex[:8]}"
    return training_settings.model_copy(update={"pools": {**training_settings.pools, pool: Pool()}, "pool": pool})


@pytest.fixture
async def server(training):
    async with serve(training.app) as url:
        yield url


def env_for(server: str, role: Role = Role.ML_ENGINEER) -> dict[str, str]:
    return {"LLMOPS_CLIENT_TRAINING_URL": server, "LLMOPS_CLIENT_TOKEN": issue_token("cli-user", [role], ["p1"])}


async def register_dir(server: str, tiny_model, name: str = "tiny") -> tuple[int, str, str]:
    return await models("base", "register", str(tiny_model), "--name", name, "-p", "p1", env=env_for(server))


@pytest.mark.integration
class TestBaseModels:
    async def test_a_directory_is_registered_and_listed(self, server, tiny_model):
        code, stdout, stderr = await register_dir(server, tiny_model)
        assert code == 0, stderr
        assert "registered base model tiny" in stdout and "LlamaForCausalLM" in stdout
        code, stdout, _ = await models("base", "list", "-p", "p1", "--json", env=env_for(server, Role.VIEWER))
        listed = [json.loads(line) for line in stdout.splitlines()]
        assert code == 0 and [(m["name"], m["source"]) for m in listed] == [("tiny", "upload")]
        assert len(listed[0]["manifest_sha256"]) == 64

    async def test_the_same_name_twice_is_a_conflict(self, server, tiny_model):
        assert (await register_dir(server, tiny_model))[0] == 0
        code, _, stderr = await register_dir(server, tiny_model)
        assert code == 1 and "409" in stderr and "already exists" in stderr

    async def test_a_hub_model_is_registered_by_id(self, server):
        args = ["base", "register", "--hub-id", "org/model", "--revision", "v1", "--name", "hub", "-p", "p1"]
        code, stdout, stderr = await models(*args, "--json", env=env_for(server))
        assert code == 0, stderr
        assert json.loads(stdout).items() >= {"source": "hub", "hub_id": "org/model", "revision": "v1"}.items()

    async def test_a_directory_and_a_hub_id_together_are_a_usage_error(self, server, tiny_model):
        args = ["base", "register", str(tiny_model), "--hub-id", "org/model", "--name", "x", "-p", "p1"]
        assert (await models(*args, env=env_for(server)))[0] == 2

    async def test_a_viewer_cannot_register(self, server, tiny_model):
        code, _, stderr = await models(
            "base", "register", str(tiny_model), "--name", "tiny", "-p", "p1", env=env_for(server, Role.VIEWER)
        )
        assert code == 1 and "403" in stderr


@pytest.mark.integration
class TestAnEmptyProject:
    async def test_lists_no_models_and_no_jobs(self, server):
        env = env_for(server, Role.VIEWER)
        code, stdout, stderr = await models("list", "-p", "p1", env=env)
        assert code == 0 and stdout == "" and "no models yet" in stderr
        code, _, stderr = await train("list", "-p", "p1", env=env)
        assert code == 0 and "no training jobs" in stderr

    async def test_showing_a_model_that_does_not_exist_fails_clearly(self, server):
        code, _, stderr = await models("show", "nope", "-p", "p1", env=env_for(server, Role.VIEWER))
        assert code == 1 and "404" in stderr and "no model named 'nope'" in stderr

    async def test_starting_a_job_on_an_unknown_dataset_fails_clearly(self, server, tiny_model):
        assert (await register_dir(server, tiny_model))[0] == 0
        code, stdout, stderr = await train(
            "start", "--base-model", "tiny", "--dataset", "missing:1", "-p", "p1", env=env_for(server)
        )
        assert code == 1 and stdout == ""
        assert "422" in stderr and "no dataset version 'missing' v1 in project 'p1'" in stderr

    async def test_a_malformed_dataset_reference_is_a_usage_error(self, server):
        args = ["start", "--base-model", "tiny", "--dataset", "qa", "-p", "p1"]
        code, _, stderr = await train(*args, env=env_for(server))
        assert code == 2 and "NAME:VERSION" in stderr


@pytest.mark.integration
class TestAQueuedJob:
    async def test_status_logs_list_and_cancel(self, server, training, tiny_model):
        assert (await register_dir(server, tiny_model))[0] == 0
        await seed_dataset(training)
        env = env_for(server)
        code, stdout, stderr = await train(
            "start", "--base-model", "tiny", "--dataset", "qa:1", "--set", "max_steps=3", "-p", "p1", env=env
        )
        assert code == 0, stderr
        job_id = stdout.strip()
        assert len(job_id) == 36

        code, stdout, _ = await train("status", job_id, "-p", "p1", env=env)
        assert code == 0 and "queued" in stdout and "tiny-lora" in stdout
        code, stdout, _ = await train("status", job_id, "-p", "p1", "--json", env=env)
        assert json.loads(stdout)["hyperparameters"]["max_steps"] == 3
        code, stdout, _ = await train("logs", job_id, "-p", "p1", env=env)
        assert code == 0 and "queued for pool 'cpu' by cli-user" in stdout
        code, stdout, _ = await train("list", "-p", "p1", env=env)
        assert code == 0 and job_id in stdout

        code, stdout, _ = await train("cancel", job_id, "-p", "p1", env=env)
        assert code == 0 and f"cancelled job {job_id}" in stdout
        code, _, stderr = await train("status", job_id, "-p", "p1", "--follow", env=env)
        assert code == 1 and "was cancelled by cli-user" in stderr
        code, stdout, _ = await train("logs", job_id, "-p", "p1", "--follow", env=env)
        assert code == 0 and "cancellation requested by cli-user" in stdout

    async def test_the_status_of_an_unknown_job_fails_clearly(self, server):
        code, _, stderr = await train("status", str(uuid.uuid4()), "-p", "p1", env=env_for(server))
        assert code == 1 and "404" in stderr and "no training job" in stderr


@pytest.fixture
async def worker(training_settings, training):
    running = TrainingWorker(training_settings, name="cli-test-worker")
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.ready.wait(), 60)
    yield running
    running.stop()
    await asyncio.wait_for(task, 60)


@pytest.mark.integration
class TestTrainingThroughTheCommandLine:
    async def test_tiny_base_model_lora_job_followed_registered_aliased_with_lineage(
        self, server, training, training_settings, worker, tmp_path
    ):
        env = env_for(server)
        code, stdout, stderr = await models("base", "tiny", "-p", "p1", "--out", str(tmp_path / "tiny"), env=env)
        assert code == 0, stderr
        assert "registered base model tiny" in stdout and (tmp_path / "tiny" / "config.json").is_file()
        dataset = await seed_dataset(training)
        hyperparameters = tmp_path / "hp.json"
        hyperparameters.write_text(json.dumps({"max_steps": 50, "batch_size": 8, "max_seq_length": 64}))
        code, stdout, stderr = await train(
            "start",
            "--base-model",
            "tiny",
            "--dataset",
            "qa:1",
            "--pool",
            training_settings.pool,
            "--hyperparameters",
            str(hyperparameters),
            "--set",
            "max_steps=12",
            "--set",
            "learning_rate=5e-3",
            "--follow",
            "--interval",
            "0.2",
            "-p",
            "p1",
            env=env,
        )
        assert code == 0, stderr
        assert "model tiny-lora v1 registered" in stderr and "completed" in stdout

        code, stdout, _ = await models("list", "-p", "p1", env=env)
        assert code == 0 and "tiny-lora" in stdout and "adapter" in stdout
        args = ["alias", "tiny-lora", "candidate", "1", "--reason", "first cut", "-p", "p1"]
        code, stdout, _ = await models(*args, env=env)
        assert code == 0 and "candidate → v1" in stdout
        code, stdout, _ = await models("show", "tiny-lora", "-p", "p1", env=env)
        assert code == 0 and "candidate" in stdout

        code, stdout, _ = await models("lineage", "tiny-lora", "candidate", "-p", "p1", env=env)
        assert code == 0, stdout
        assert dataset["sha256"] in stdout and "qa v1 (train split)" in stdout
        assert "max_steps=12" in stdout and "learning_rate=0.005" in stdout and "platform version" in stdout
        code, stdout, _ = await models("lineage", "tiny-lora", "1", "-p", "p1", "--json", env=env)
        lineage = json.loads(stdout)
        assert lineage["version"] == 1 and lineage["lineage"]["method"] == "lora"
        assert lineage["metrics"]["steps"] == 12

        job_id = lineage["lineage"]["job_id"]
        code, stdout, _ = await train("logs", job_id, "-p", "p1", env=env)
        assert "12 steps planned" in stdout and "completed: model 'tiny-lora' v1 registered" in stdout

    async def test_a_failed_job_exits_non_zero_with_its_error(
        self, server, training, training_settings, worker, tiny_model
    ):
        env = env_for(server)
        await seed_dataset(training, name="broken", rows=[{"prompt": row["prompt"]} for row in instruction_rows(4)])
        assert (await register_dir(server, tiny_model))[0] == 0
        code, stdout, stderr = await train(
            "start", "--base-model", "tiny", "--dataset", "broken:1", "--pool", training_settings.pool, "--follow",
            "-p", "p1", env=env,
        )  # fmt: skip
        assert code == 1 and "failed" in stdout
        assert "failed:" in stderr and "completion" in stderr
