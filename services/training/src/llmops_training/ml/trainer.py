"""Supervised fine-tuning (full, LoRA, QLoRA) of a local Hugging Face causal LM with TRL's SFTTrainer.

Pure machine learning: reads a model directory, writes checkpoints and artifacts to a local directory, and reports
through ``Hooks``; no Kafka, database or object store here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from llmops_training.examples import TrainingError, check_examples

if TYPE_CHECKING:
    import torch

__all__ = [
    "Hooks",
    "Method",
    "Progress",
    "TrainResult",
    "TrainSpec",
    "TrainingError",
    "find_target_modules",
    "train",
]

Method = Literal["full", "lora", "qlora"]
ARTIFACTS = "artifacts"
MERGED = "merged"


@dataclass(frozen=True)
class TrainSpec:
    """How to fine-tune: method, schedule, LoRA settings, sequence length, seed and checkpointing."""

    method: Method = "lora"
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation: int = 1
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: every linear layer but the output head
    max_seq_length: int = 256
    seed: int = 42
    checkpoint_every: int = 50  # optimizer steps; 0 turns checkpoints off
    bf16: bool = False
    merge: bool = False  # LoRA only: also save the base model with the adapter merged in
    modules_to_save: tuple[str, ...] | None = None  # LoRA/QLoRA: modules trained in full, e.g. ("lm_head",)
    gradient_checkpointing: bool = False  # trades compute for memory on large models
    keep_checkpoints: int | None = None  # newest checkpoints kept on disk; None keeps all


@dataclass(frozen=True)
class Progress:
    """A snapshot after one optimizer step; ``tokens`` counts the whole job, the rate only this call."""

    step: int
    max_steps: int
    epoch: float
    loss: float | None
    learning_rate: float | None
    tokens: int
    tokens_per_second: float
    eta_seconds: float | None


class Hooks(Protocol):
    """What the caller hears during training and how it cancels."""

    def on_progress(self, progress: Progress) -> None:
        """Called after every optimizer step (the caller throttles)."""

    def should_stop(self) -> bool:
        """Checked after every step; True stops training at that step (cancelled: no weights saved)."""

    def should_pause(self) -> bool:
        """Checked after every step; True saves a checkpoint at that step and stops (paused: resume from it)."""

    def on_checkpoint(self, step: int, directory: Path) -> None:
        """Called once a checkpoint directory is complete on disk."""


@dataclass
class TrainResult:
    """Outcome of ``train``: status, where the artifacts are, and the metrics also written to ``metrics.json``."""

    status: Literal["completed", "cancelled", "paused"]
    artifacts_dir: Path
    metrics: dict = field(default_factory=dict)


def find_target_modules(model: Any) -> list[str]:
    """Names (last path component) of all linear layers except the output head, sorted: LoRA's default targets."""
    import torch

    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head  # bitsandbytes' Linear4bit is a Linear too
    }
    return sorted(names)


def _check_spec(spec: TrainSpec) -> None:
    import torch

    if spec.method not in ("full", "lora", "qlora"):
        raise TrainingError(f"unknown method {spec.method!r}; use full, lora or qlora")
    if spec.method == "qlora" and not torch.cuda.is_available():
        raise TrainingError("qlora needs a CUDA device; this worker has none")
    if spec.merge and spec.method != "lora":
        raise TrainingError("merge is supported for lora only")
    if spec.max_steps is not None and spec.max_steps <= 0:
        raise TrainingError("max_steps must be positive")
    if spec.max_steps is None and spec.epochs <= 0:
        raise TrainingError("epochs must be positive")
    if spec.batch_size <= 0 or spec.gradient_accumulation <= 0 or spec.max_seq_length <= 0:
        raise TrainingError("batch_size, gradient_accumulation and max_seq_length must be positive")


def _load_model(model_dir: Path, spec: TrainSpec) -> torch.nn.Module:
    import torch
    from transformers import AutoModelForCausalLM

    # Full fine-tuning keeps fp32 master weights; bf16 then only means autocast.
    dtype = torch.bfloat16 if spec.bf16 and spec.method != "full" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if spec.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load a causal language model from {model_dir}: {exc}") from exc
    if spec.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    return model


def _lora_config(model: Any, spec: TrainSpec) -> Any:
    from peft import LoraConfig

    targets = list(spec.target_modules) if spec.target_modules else find_target_modules(model)
    if not targets:
        raise TrainingError("the model has no linear layers for LoRA to adapt")
    return LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=targets,
        modules_to_save=list(spec.modules_to_save) if spec.modules_to_save else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def sft_config(spec: TrainSpec, output_dir: Path) -> Any:
    """The ``SFTConfig`` for a spec: per-step logging, no reporting or bars, checkpoints every ``checkpoint_every``."""
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps if spec.max_steps is not None else -1,
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation,
        max_length=spec.max_seq_length,
        seed=spec.seed,
        data_seed=spec.seed,
        bf16=spec.bf16,  # TRL defaults it to True
        fp16=False,
        activation_checkpointing=spec.gradient_checkpointing,  # TRL turns gradient checkpointing on by default
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="steps" if spec.checkpoint_every > 0 else "no",
        save_steps=max(spec.checkpoint_every, 1),
        save_total_limit=spec.keep_checkpoints,
        include_num_input_tokens_seen="non_padding",  # kept in the trainer state, so it survives a resume
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def _callback(hooks: Hooks | None) -> Any:
    """A TrainerCallback bridging Trainer events to ``hooks`` (defined here so transformers loads lazily)."""
    from transformers import TrainerCallback

    class HooksCallback(TrainerCallback):
        def __init__(self) -> None:
            self.cancelled = self.paused = False
            self.started = 0.0
            self.first_step = 0
            self.first_tokens = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()
            self.first_step, self.first_tokens = state.global_step, state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kwargs):
            if hooks is None:
                return control
            if hooks.should_stop():
                self.cancelled = True
                control.should_training_stop = True
            elif hooks.should_pause():
                self.paused = True
                control.should_save = control.should_training_stop = True  # the Trainer saves, then stops
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if hooks is None or not logs or "loss" not in logs:
                return
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            done = state.global_step - self.first_step
            eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
            hooks.on_progress(
                Progress(
                    step=state.global_step,
                    max_steps=state.max_steps,
                    epoch=float(state.epoch or 0.0),
                    loss=float(logs["loss"]),
                    learning_rate=logs.get("learning_rate"),
                    tokens=int(state.num_input_tokens_seen),
                    tokens_per_second=(state.num_input_tokens_seen - self.first_tokens) / elapsed,
                    eta_seconds=eta,
                )
            )

        def on_save(self, args, state, control, **kwargs):
            if hooks is not None:
                hooks.on_checkpoint(state.global_step, Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return HooksCallback()


def _check_resume(resume_from: Path | None) -> None:
    if resume_from is not None and not (Path(resume_from) / "trainer_state.json").is_file():
        raise TrainingError(f"{resume_from} is not a training checkpoint (no trainer_state.json)")


def build_trainer(
    model_dir: Path, examples: Sequence[dict], spec: TrainSpec, output_dir: Path, callbacks: list | None = None
) -> Any:
    """An ``SFTTrainer`` ready to train: model loaded per method, LoRA applied, data validated and tokenized."""
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback
    from trl import SFTTrainer

    _check_spec(spec)
    shape, rows = check_examples(examples)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load a tokenizer from {model_dir}: {exc}") from exc
    conversational = shape == "messages" or (shape == "prompt_completion" and isinstance(rows[0]["prompt"], list))
    if conversational and not tokenizer.chat_template:
        raise TrainingError("chat-format examples need a model with a chat template; this one has none")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _load_model(model_dir, spec)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(spec, output_dir),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=_lora_config(model, spec) if spec.method != "full" else None,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm=True swaps the bar for print() of every log
    return trainer


def train(
    model_dir: Path,
    examples: Sequence[dict],
    spec: TrainSpec,
    output_dir: Path,
    *,
    resume_from: Path | None = None,
    hooks: Hooks | None = None,
) -> TrainResult:
    """Fine-tune the model in ``model_dir`` on ``examples`` and save the result under ``output_dir/artifacts``.

    Checkpoints go to ``output_dir/checkpoint-<step>`` every ``spec.checkpoint_every`` steps; ``resume_from`` (such a
    directory) continues exactly from its step. ``hooks`` hear progress and checkpoints and can cancel or pause; a
    cancelled job returns status ``cancelled`` with metrics but no weights, a paused one ``paused`` once the checkpoint
    of its last step is saved (and announced), to resume from. Raises ``TrainingError`` for unusable data or specs.
    """
    from llmops.ml_runtime import quiet_libraries

    quiet_libraries()
    output_dir = Path(output_dir)
    _check_resume(resume_from)
    callback = _callback(hooks)
    trainer = build_trainer(model_dir, examples, spec, output_dir, callbacks=[callback])
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    runtime = time.perf_counter() - started

    status: Literal["completed", "cancelled", "paused"] = (
        "cancelled" if callback.cancelled else "paused" if callback.paused else "completed"
    )
    artifacts_dir = output_dir / ARTIFACTS
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    if status == "completed":
        _save_artifacts(trainer, artifacts_dir, spec)
    metrics = _metrics(trainer, spec, status, output.global_step, runtime, callback.first_step, callback.first_tokens)
    (artifacts_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return TrainResult(status=status, artifacts_dir=artifacts_dir, metrics=metrics)


def _save_artifacts(trainer: Any, artifacts_dir: Path, spec: TrainSpec) -> None:
    trainer.save_model(str(artifacts_dir))  # adapter or full weights (safetensors) and the tokenizer
    (artifacts_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the spec is in metrics.json
    if spec.merge:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(artifacts_dir / MERGED))
        trainer.processing_class.save_pretrained(str(artifacts_dir / MERGED))


def _metrics(
    trainer: Any, spec: TrainSpec, status: str, step: int, runtime: float, first_step: int, first_tokens: int
) -> dict:
    state = trainer.state
    history = [[entry["step"], entry["loss"]] for entry in state.log_history if "loss" in entry]
    tokens = int(state.num_input_tokens_seen)
    model = trainer.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    peft_config = getattr(model, "peft_config", {}).get("default")
    targets = sorted(peft_config.target_modules) if peft_config is not None else None
    losses = [loss for _, loss in history if math.isfinite(loss)]
    return {
        "status": status,
        "method": spec.method,
        "steps": step,
        "max_steps": state.max_steps,
        "epochs": float(state.epoch or 0.0),
        "resumed_from_step": first_step or None,
        "train_loss": sum(losses) / len(losses) if losses else None,
        "final_loss": history[-1][1] if history else None,
        "loss_history": history,
        "tokens": tokens,
        "tokens_this_run": tokens - first_tokens,
        "tokens_per_second": (tokens - first_tokens) / runtime if runtime > 0 else 0.0,
        "runtime_seconds": runtime,
        "target_modules": targets,
        "trainable_parameters": trainable,
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "spec": {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(spec).items()},
    }
