"""The training service's machine-learning core on a tiny Llama on CPU: tiny model, LoRA and full jobs, reproducibility,
resuming from checkpoints, cancellation and refused jobs. No infrastructure needed."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from llmops.tiny_model import build_tiny_model
from llmops_training.ml.generate import generate
from llmops_training.ml.process import TrainingProcessError, train_in_process
from llmops_training.ml.trainer import Progress, TrainingError, TrainSpec, find_target_modules, train


@pytest.fixture(autouse=True)
def no_model_hub(monkeypatch):
    """Nothing here may reach a model hub: the hub client's offline switch, for these tests only (set process-wide,
    as an environment variable read at import, it would also stop other tests' calls to local OpenAI-style servers)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


PAIRS = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Germany?", "Berlin"),
    ("How many legs does a spider have?", "eight"),
    ("What colour is the sky?", "blue"),
    ("How many days has a week?", "seven"),
    ("What is two plus two?", "four"),
    ("Say hello.", "Hello!"),
    ("What boils at one hundred degrees?", "water"),
]
PROMPT_COMPLETION = [{"prompt": f"Question: {q}\nAnswer:", "completion": f" {a}"} for q, a in PAIRS]
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
FAST = {"batch_size": 8, "learning_rate": 1e-2, "max_seq_length": 64, "checkpoint_every": 0}


@dataclass
class RecordingHooks:
    stop_after: int | None = None
    pause_after: int | None = None
    progress: list[Progress] = field(default_factory=list)
    checkpoints: list[tuple[int, Path, list[str]]] = field(default_factory=list)

    def on_progress(self, progress: Progress) -> None:
        self.progress.append(progress)

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.progress) >= self.stop_after

    def should_pause(self) -> bool:
        return self.pause_after is not None and len(self.progress) >= self.pause_after

    def on_checkpoint(self, step: int, directory: Path) -> None:
        self.checkpoints.append((step, directory, sorted(os.listdir(directory))))


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP's spinning costs a lot."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ml")


@pytest.fixture(scope="module")
def tiny(workdir) -> Path:
    return build_tiny_model(workdir / "tiny")


@pytest.fixture(scope="module")
def lora_job(tiny, workdir):
    hooks = RecordingHooks()
    spec = TrainSpec(method="lora", max_steps=40, lora_rank=8, merge=True, modules_to_save=("lm_head",), **FAST)
    return train(tiny, PROMPT_COMPLETION, spec, workdir / "lora", hooks=hooks), hooks


@pytest.fixture(scope="module")
def reference_runs(tiny, workdir):
    """Two uninterrupted runs with the same spec, checkpointing every 3 of 6 steps."""
    spec = TrainSpec(**{**FAST, "checkpoint_every": 3, "batch_size": 2}, max_steps=6, seed=7)
    first = train(tiny, PROMPT_COMPLETION, spec, workdir / "ref-1", hooks=RecordingHooks())
    second = train(tiny, PROMPT_COMPLETION, spec, workdir / "ref-2")
    return spec, first, second


class TestBuildingATinyModel:
    def test_the_same_arguments_give_byte_identical_files(self, tiny, workdir):
        again = build_tiny_model(workdir / "tiny-again")
        assert digests(again) == digests(tiny)
        assert "model.safetensors" in digests(tiny)

    def test_its_tokenizer_renders_chat_messages(self, tiny):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tiny)
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
        )
        assert text == "<|user|>\nHi</s>\n<|assistant|>\n"
        assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")


class TestALoraJob:
    def test_completes_with_a_falling_loss(self, lora_job):
        result, _ = lora_job
        history = result.metrics["loss_history"]
        assert result.status == "completed"
        assert [step for step, _ in history] == list(range(1, 41))
        assert history[-1][1] < history[0][1] / 2

    def test_reports_progress_on_every_step(self, lora_job):
        result, hooks = lora_job
        assert [p.step for p in hooks.progress] == list(range(1, 41))
        assert hooks.progress[-1].tokens == result.metrics["tokens"] > 0
        assert result.metrics["tokens_per_second"] > 0

    def test_adapts_every_linear_layer_but_the_output_head(self, lora_job, tiny):
        from transformers import AutoModelForCausalLM

        expected = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
        assert find_target_modules(AutoModelForCausalLM.from_pretrained(tiny)) == expected
        assert lora_job[0].metrics["target_modules"] == expected

    def test_saves_an_adapter_that_peft_loads_and_that_generates_the_learned_answer(self, lora_job, tiny):
        artifacts = lora_job[0].artifacts_dir
        assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "metrics.json"} <= set(
            os.listdir(artifacts)
        )
        answer = generate(tiny, PROMPT_COMPLETION[0]["prompt"], adapter_dir=artifacts, max_new_tokens=4)
        assert answer.strip().startswith("Paris")

    def test_saves_a_merged_model_that_generates_like_base_plus_adapter(self, lora_job, tiny):
        artifacts = lora_job[0].artifacts_dir
        prompt = PROMPT_COMPLETION[2]["prompt"]
        merged = generate(artifacts / "merged", prompt, max_new_tokens=4)
        assert merged == generate(tiny, prompt, adapter_dir=artifacts, max_new_tokens=4)

    def test_writes_its_metrics_beside_the_weights(self, lora_job):
        result, _ = lora_job
        assert json.loads((result.artifacts_dir / "metrics.json").read_text())["steps"] == result.metrics["steps"] == 40


class TestAFullJob:
    def test_trains_all_weights_with_a_falling_loss(self, tiny, workdir):
        result = train(tiny, PROMPT_COMPLETION, TrainSpec(method="full", max_steps=15, **FAST), workdir / "full")
        history = result.metrics["loss_history"]
        assert result.metrics["trainable_parameters"] == result.metrics["total_parameters"]
        assert history[-1][1] < history[0][1] / 2
        assert (result.artifacts_dir / "model.safetensors").is_file()


class TestReproducibility:
    def test_the_same_seed_gives_the_same_loss_history(self, reference_runs):
        _, first, second = reference_runs
        assert first.metrics["loss_history"] == second.metrics["loss_history"]
        assert len(first.metrics["loss_history"]) == 6


class TestResumingFromACheckpoint:
    def test_continues_to_max_steps_with_the_loss_history_of_an_uninterrupted_run(self, reference_runs, tiny, workdir):
        spec, first, _ = reference_runs
        checkpoint = first.artifacts_dir.parent / "checkpoint-3"
        hooks = RecordingHooks()
        resumed = train(tiny, PROMPT_COMPLETION, spec, workdir / "resumed", resume_from=checkpoint, hooks=hooks)
        assert resumed.status == "completed"
        assert [p.step for p in hooks.progress] == [4, 5, 6]
        assert resumed.metrics["resumed_from_step"] == 3
        assert resumed.metrics["loss_history"] == first.metrics["loss_history"]

    def test_a_paused_run_checkpoints_its_step_and_resumes_from_it_like_an_uninterrupted_run(
        self, reference_runs, tiny, workdir
    ):
        spec, first, _ = reference_runs  # a checkpoint every 3 of 6 steps
        hooks = RecordingHooks(pause_after=3)  # asked after step 3, so it pauses at step 4
        paused = train(tiny, PROMPT_COMPLETION, spec, workdir / "paused", hooks=hooks)
        assert paused.status == "paused" and paused.metrics["steps"] == 4
        assert [step for step, _, _ in hooks.checkpoints] == [3, 4]
        assert not (paused.artifacts_dir / "adapter_model.safetensors").exists()
        checkpoint = hooks.checkpoints[-1][1]
        resumed = train(tiny, PROMPT_COMPLETION, spec, workdir / "unpaused", resume_from=checkpoint)
        assert resumed.metrics["resumed_from_step"] == 4
        assert resumed.metrics["loss_history"] == first.metrics["loss_history"]

    def test_announces_each_checkpoint_once_it_is_complete(self, tiny, workdir):
        hooks = RecordingHooks()
        spec = TrainSpec(**{**FAST, "checkpoint_every": 2}, max_steps=4)
        train(tiny, PROMPT_COMPLETION, spec, workdir / "ckpt", hooks=hooks)
        assert [(step, path.name) for step, path, _ in hooks.checkpoints] == [(2, "checkpoint-2"), (4, "checkpoint-4")]
        assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"} <= set(
            hooks.checkpoints[0][2]
        )

    def test_refuses_a_directory_that_is_no_checkpoint(self, tiny, workdir):
        with pytest.raises(TrainingError, match="not a training checkpoint"):
            train(tiny, PROMPT_COMPLETION, TrainSpec(**FAST), workdir / "x", resume_from=workdir)


class TestCancellingAJob:
    def test_stops_at_the_next_step_and_saves_no_weights(self, tiny, workdir):
        hooks = RecordingHooks(stop_after=2)
        result = train(tiny, PROMPT_COMPLETION, TrainSpec(max_steps=50, **FAST), workdir / "cancel", hooks=hooks)
        assert result.status == "cancelled"
        assert result.metrics["steps"] == 3
        assert not (result.artifacts_dir / "adapter_model.safetensors").exists()


class TestChatExamples:
    def test_train_through_the_chat_template(self, tiny, workdir):
        chats = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in PAIRS]
        result = train(tiny, chats, TrainSpec(max_steps=2, **FAST), workdir / "chat")
        assert result.status == "completed"
        assert len(result.metrics["loss_history"]) == 2


class TestRefusedJobs:
    def test_qlora_without_cuda(self, tiny, workdir):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
        with pytest.raises(TrainingError, match="qlora needs a CUDA device"):
            train(tiny, PROMPT_COMPLETION, TrainSpec(method="qlora"), workdir / "q")

    def test_no_examples(self, tiny, workdir):
        with pytest.raises(TrainingError, match="no training examples"):
            train(tiny, [], TrainSpec(), workdir / "empty")

    def test_examples_of_mixed_shapes(self, tiny, workdir):
        with pytest.raises(TrainingError, match="mix shapes"):
            train(tiny, [*PROMPT_COMPLETION, {"text": "plain text"}], TrainSpec(), workdir / "mixed")

    def test_examples_of_no_known_shape(self, tiny, workdir):
        with pytest.raises(TrainingError, match="needs 'text'"):
            train(tiny, [{"input": "a", "output": "b"}], TrainSpec(), workdir / "unknown")

    def test_merging_a_full_job(self, tiny, workdir):
        with pytest.raises(TrainingError, match="lora only"):
            train(tiny, PROMPT_COMPLETION, TrainSpec(method="full", merge=True), workdir / "merge")


class TestTrainingInAChildProcess:
    """``train_in_process``: the same training as ``train``, its hooks relayed from the child."""

    def test_gives_the_loss_history_of_an_in_process_run_and_relays_progress_and_checkpoints(
        self, reference_runs, tiny, workdir
    ):
        spec, first, _ = reference_runs
        hooks = RecordingHooks()
        result = train_in_process(tiny, PROMPT_COMPLETION, spec, workdir / "child", hooks=hooks, threads=1)
        assert result.status == "completed"
        assert result.metrics["loss_history"] == first.metrics["loss_history"]
        assert [p.step for p in hooks.progress] == [1, 2, 3, 4, 5, 6]
        assert [(step, path.name) for step, path, _ in hooks.checkpoints] == [(3, "checkpoint-3"), (6, "checkpoint-6")]
        assert "optimizer.pt" in hooks.checkpoints[0][2]  # complete when announced: the child waits for the hook
        assert (result.artifacts_dir / "adapter_model.safetensors").is_file()

    def test_reads_its_examples_from_a_file_and_trains_on_every_one(self, reference_runs, tiny, workdir):
        # the worker streams a split to a file rather than holding it: the same loss curve shows every example came
        spec, first, _ = reference_runs
        examples = workdir / "examples.jsonl"
        examples.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in PROMPT_COMPLETION))
        result = train_in_process(tiny, examples, spec, workdir / "child-file", threads=1)
        assert result.metrics["loss_history"] == first.metrics["loss_history"]

    def test_stops_when_the_hooks_say_so(self, tiny, workdir):
        hooks = RecordingHooks(stop_after=2)
        spec = TrainSpec(max_steps=500, **FAST)
        result = train_in_process(tiny, PROMPT_COMPLETION, spec, workdir / "child-cancel", hooks=hooks, threads=1)
        assert result.status == "cancelled" and result.metrics["steps"] < 500

    def test_raises_the_childs_training_error_with_its_message(self, tiny, workdir):
        with pytest.raises(TrainingError, match="needs 'text'"):
            train_in_process(tiny, [{"input": "a", "output": "b"}], TrainSpec(), workdir / "child-bad")

    def test_a_killed_child_fails_with_the_signal_named(self, tiny, workdir):
        class KillAtStep2(RecordingHooks):
            def on_progress(self, progress: Progress) -> None:
                super().on_progress(progress)
                if progress.step == 2:
                    for child in multiprocessing.active_children():
                        if child.name == "llmops-training":
                            os.kill(child.pid, signal.SIGKILL)

        hooks = KillAtStep2()
        with pytest.raises(TrainingProcessError, match="killed by SIGKILL, perhaps out of memory"):
            train_in_process(tiny, PROMPT_COMPLETION, TrainSpec(max_steps=500, **FAST), workdir / "oom", hooks=hooks)
        assert 2 <= len(hooks.progress) < 500
